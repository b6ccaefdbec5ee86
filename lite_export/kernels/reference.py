"""Ranking the whole catalog: the torch reference and the CPU ranking path.

Both compute ``top-k(h @ W.T + b)`` per row with the row's history items excluded:

* :func:`topk_projection_reference` is the plain fp32 torch definition the fused Triton kernel
  (:mod:`lite_export.kernels.topk_projection`) and :func:`rank_cpu` are tested against. It writes
  the whole ``[B, N]`` score matrix, so keep it to test-sized catalogs.
* :func:`rank_cpu` is the path the engines use on CPU. It never materialises ``[B, N]``: it walks
  ``W`` in chunks of items whose ``[B, chunk]`` score block stays in the L2/L3 cache, and reduces
  each block at once with an exact block-max pre-selection (see :func:`rank_cpu`). Chosen by
  ``benchmarks/bench_topk_cpu.py`` (results in ``benchmarks/results/topk_cpu.md``).

The ``exclude`` format (shared with the fused kernel)
------------------------------------------------------
``exclude`` is ``None``, an integer tensor ``[B, H]`` (int32 or int64), or a sequence of ``B``
sequences of ints. Row ``r`` lists the item ids to exclude for query ``r`` (its history), in any
order, duplicates allowed. Entries that are negative or ``>= N`` are padding and are ignored, so
ragged histories are written as a rectangle padded with ``-1``. Excluded items get the score
``-inf``; when a row has fewer than ``k`` items left, the tail of its result holds ``-inf`` scores
with excluded ids (the same as ``torch.topk`` on the ``-inf``-masked score matrix).

This module imports only torch (and onnxruntime lazily, for nothing on the default path), so it is
safe to import anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "MAX_ITEMS",
    "EXCLUDE_SENTINEL",
    "check_ranking_inputs",
    "normalize_exclude",
    "rank_cpu",
    "topk_projection_reference",
]

#: Largest catalog the kernel and the CPU path accept: item ids must fit in 31 bits because the
#: fused kernel packs them beside a 32-bit score key into one int64.
MAX_ITEMS = 2**31

#: Value that pads a normalised exclude tensor: larger than any item id, sorts last.
EXCLUDE_SENTINEL = 2**62

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INT_DTYPES = (torch.int32, torch.int64)

ExcludeLike = torch.Tensor | Sequence[Sequence[int]] | None


def check_ranking_inputs(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    exclude: ExcludeLike,
    *,
    max_k: int | None = None,
) -> None:
    """Validate ``h [B, d]``, ``W [N, d]``, ``b [N] | None``, ``k`` and ``exclude``.

    Raises ``TypeError`` for a wrong type or dtype and ``ValueError`` for a wrong shape, range or
    device; each message names what was passed and what is expected.
    """
    for name, t in (("h", h), ("W", W)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if h.ndim != 2:
        raise ValueError(f"h must be 2-D [B, d], got shape {tuple(h.shape)}")
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D [N, d] (one row per item), got shape {tuple(W.shape)}")
    B, d = h.shape
    N, d_w = W.shape
    if d != d_w:
        raise ValueError(
            f"h is [B={B}, d={d}] but W is [N={N}, d={d_w}]: the hidden sizes must match"
        )
    if d == 0:
        raise ValueError("h and W have hidden size d=0; expected d >= 1")
    if N == 0:
        raise ValueError("W has N=0 items; expected at least 1 item")
    if N > MAX_ITEMS:
        raise ValueError(f"W has N={N} items; at most 2**31 = {MAX_ITEMS} are supported")
    if h.dtype not in _FLOAT_DTYPES or W.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"h and W must be float32, float16 or bfloat16, got h {h.dtype} and W {W.dtype}"
        )
    if h.dtype != W.dtype:
        raise TypeError(
            f"h ({h.dtype}) and W ({W.dtype}) must have the same dtype; cast h with h.to(W.dtype)"
        )
    if h.device != W.device:
        raise ValueError(f"h is on {h.device} but W is on {W.device}; put them on one device")
    if b is not None:
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"b must be a torch.Tensor or None, got {type(b).__name__}")
        if b.ndim != 1 or b.shape[0] != N:
            raise ValueError(f"b must be [N={N}] (one bias per item), got shape {tuple(b.shape)}")
        if b.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"b must be float32, float16 or bfloat16, got {b.dtype}")
        if b.device != W.device:
            raise ValueError(f"b is on {b.device} but W is on {W.device}; put them on one device")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__} ({k!r})")
    hi = N if max_k is None else min(N, max_k)
    if not 1 <= k <= hi:
        limit = f"min(N={N}, {max_k})" if max_k is not None else f"N={N}"
        raise ValueError(f"k must be in [1, {limit}] = [1, {hi}], got k={k}")
    if exclude is None:
        return
    if isinstance(exclude, torch.Tensor):
        if exclude.ndim != 2 or exclude.shape[0] != B:
            raise ValueError(
                f"exclude must be [B={B}, H] (item ids per row, padded with -1), "
                f"got shape {tuple(exclude.shape)}"
            )
        if exclude.dtype not in _INT_DTYPES:
            raise TypeError(f"exclude must be int32 or int64, got {exclude.dtype}")
        if exclude.device != W.device:
            raise ValueError(
                f"exclude is on {exclude.device} but W is on {W.device}; put them on one device"
            )
        return
    if not isinstance(exclude, Sequence) or isinstance(exclude, str | bytes):
        raise TypeError(
            "exclude must be None, an int tensor [B, H] or a list of B lists of item ids, "
            f"got {type(exclude).__name__}"
        )
    if len(exclude) != B:
        raise ValueError(f"exclude has {len(exclude)} rows but h has B={B} rows")
    for r, row in enumerate(exclude):
        if not isinstance(row, Sequence) or isinstance(row, str | bytes):
            raise TypeError(f"exclude[{r}] must be a sequence of ints, got {type(row).__name__}")


def normalize_exclude(
    exclude: ExcludeLike, B: int, N: int, device: torch.device
) -> torch.Tensor | None:
    """Turn any accepted ``exclude`` into the kernel's form, or ``None`` when nothing is excluded.

    Returns int64 ``[B, H + 1]`` on ``device``: each row's valid ids sorted ascending, every
    padding entry (negative or ``>= N``) replaced by :data:`EXCLUDE_SENTINEL`, and one extra
    sentinel column so a cursor walking a row never runs off its end.
    """
    if exclude is None:
        return None
    if not isinstance(exclude, torch.Tensor):
        width = max((len(row) for row in exclude), default=0)
        if width == 0:
            return None
        padded = [list(row) + [-1] * (width - len(row)) for row in exclude]
        exclude = torch.tensor(padded, dtype=torch.int64)
    if exclude.shape[1] == 0:
        return None
    ex = exclude.to(device=device, dtype=torch.int64)
    ex = torch.where((ex < 0) | (ex >= N), torch.full_like(ex, EXCLUDE_SENTINEL), ex)
    ex = torch.sort(ex, dim=1).values
    pad = torch.full((B, 1), EXCLUDE_SENTINEL, dtype=torch.int64, device=device)
    return torch.cat([ex, pad], dim=1).contiguous()


def _exclude_pairs(ex: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, items) of every valid entry of a normalised exclude tensor, sorted by item."""
    if ex is None:
        return None
    valid = ex < EXCLUDE_SENTINEL
    rows = torch.arange(ex.shape[0], device=ex.device).unsqueeze(1).expand_as(ex)[valid]
    items = ex[valid]
    order = torch.argsort(items, stable=True)
    return rows[order], items[order]


def topk_projection_reference(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(h @ W.T + b, k)`` in fp32 with excluded items at ``-inf``.

    Returns ``(scores [B, k] float32, ids [B, k] int64)``, best first. Writes the whole
    ``[B, N]`` score matrix: for tests and small catalogs only.
    """
    check_ranking_inputs(h, W, b, k, exclude)
    scores = h.float() @ W.float().T  # [B, N]
    if b is not None:
        scores = scores + b.float()
    ex = normalize_exclude(exclude, h.shape[0], W.shape[0], h.device)
    pairs = _exclude_pairs(ex)
    if pairs is not None:
        rows, items = pairs
        scores[rows, items] = float("-inf")
    vals, ids = torch.topk(scores, k, dim=1)
    return vals, ids


# --------------------------------------------------------------------------------------------
# CPU ranking path
# --------------------------------------------------------------------------------------------

#: Items per chunk of the CPU path. The [B, chunk] fp32 score block for B=64 at 8192 items is
#: 2 MiB, which stays in L2/L3 between the matmul that writes it and the selection that reads it.
#: Measured on 2 AMD EPYC (Zen 4) cores, B=64, d=64, N=1M: 4096 -> 98 ms, 8192 -> 86 ms,
#: 16384 -> 88 ms, 32768 -> 106 ms for the chunked matmul alone (benchmarks/bench_topk_cpu.py).
CPU_CHUNK_ITEMS = 8192

#: Items per block of the block-max pre-selection (see rank_cpu).
CPU_GROUP = 32


def rank_cpu(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    chunk_items: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``h @ W.T + b`` per row on CPU, history excluded, never writing ``[B, N]``.

    Placeholder: replaced by the benchmarked implementation below.
    """
    raise NotImplementedError
