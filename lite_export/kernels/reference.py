"""Ranking the whole catalog: the torch reference and the CPU ranking path.

Both compute ``top-k(h @ W.T + b)`` per row with the row's history items excluded:

* :func:`topk_projection_reference` is the plain fp32 torch definition the fused Triton kernel
  (:mod:`lite_export.kernels.fused`) and :func:`rank_cpu` are tested against. It writes
  the whole ``[B, N]`` score matrix, so keep it to test-sized catalogs.
* :func:`rank_torch` is matmul + ``torch.topk`` with fp32 scores: the plain GPU path that
  ``kernels.rank`` picks where it measured faster than the fused kernel (small catalogs, small d).
* :func:`rank_cpu` is the path the engines use on CPU. It never materialises ``[B, N]``: it walks
  ``W`` in chunks of items whose ``[chunk, B]`` score block stays in cache, and reduces each block
  at once with exact block-max bounds against a running per-query threshold (see
  :func:`rank_cpu`). Pure torch (no ONNX Runtime needed). Chosen by
  ``benchmarks/bench_topk_cpu.py`` (results in ``benchmarks/results/topk_cpu.md``).

The ``exclude`` format (shared with the fused kernel)
------------------------------------------------------
``exclude`` is ``None``, an integer tensor ``[B, H]`` (int32 or int64), or a sequence of ``B``
sequences of ints. Row ``r`` lists the item ids to exclude for query ``r`` (its history), in any
order, duplicates allowed. Entries that are negative or ``>= N`` are padding and are ignored, so
ragged histories are written as a rectangle padded with ``-1``. Excluded items get the score
``-inf``; when a row has fewer than ``k`` items left, the tail of its result holds ``-inf`` scores
with excluded ids (the same as ``torch.topk`` on the ``-inf``-masked score matrix).

This module imports only torch, so it is safe to import anywhere.
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
    "rank_torch",
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
    exclude: ExcludeLike, B: int, N: int, device: torch.device, sort: bool = True
) -> torch.Tensor | None:
    """Turn any accepted ``exclude`` into the kernel's form, or ``None`` when nothing is excluded.

    Returns int64 ``[B, H + 1]`` on ``device``: each row's valid ids sorted ascending, every
    padding entry (negative or ``>= N``) replaced by :data:`EXCLUDE_SENTINEL`, and one extra
    sentinel column so a cursor walking a row never runs off its end. ``sort=False`` leaves the
    rows in their given order (the matmul + topk path only scatters them; the sort of a short
    int64 row is one of the slowest kernels of a small request on a GPU).
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
    if sort:
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
# matmul + topk (the plain GPU path)
# --------------------------------------------------------------------------------------------

#: Largest fp32 score block ``[B, chunk]`` :func:`rank_torch` writes at once (bytes); bigger
#: ``B * N`` is ranked chunk by chunk over the items and the chunks' top-k merged.
TORCH_BLOCK_BYTES = 1 << 30

#: How half-precision tables are multiplied per (device type, dtype): "out_dtype" (cuBLAS
#: accumulates in fp32 and writes fp32 scores: ``torch.mm(..., out_dtype=torch.float32)``) or
#: "upcast" (both operands cast to fp32 first: correct everywhere, slower). Probed once per key.
_MM_MODE: dict[tuple[str, torch.dtype], str] = {}


def _mm_mode(h: torch.Tensor, W: torch.Tensor) -> str:
    key = (h.device.type, W.dtype)
    if key not in _MM_MODE:
        mode = "upcast"
        if h.device.type == "cuda" and W.dtype in (torch.float16, torch.bfloat16):
            try:  # torch >= 2.8 on CUDA; a probe, so a torch without it falls back quietly
                probe = torch.mm(h[:1], W[:2].T, out_dtype=torch.float32)
                ref = h[:1].float() @ W[:2].float().T
                if probe.dtype == torch.float32 and torch.allclose(probe, ref, 1e-3, 1e-3):
                    mode = "out_dtype"
            except (TypeError, RuntimeError):
                pass
        _MM_MODE[key] = mode
    return _MM_MODE[key]


def _scores_fp32(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``h @ W.T + b`` as fp32 ``[B, n]`` with fp32 accumulation, whatever the table dtype."""
    if W.dtype == torch.float32:
        if b is not None and b.dtype == torch.float32:
            return torch.addmm(b, h, W.T)  # one cuBLAS / MKL call
        s = h @ W.T
    elif _mm_mode(h, W) == "out_dtype":
        s = torch.mm(h, W.T, out_dtype=torch.float32)
    else:
        s = h.float() @ W.float().T
    if b is not None:
        s += b.float()
    return s


def _mask_excluded(s: torch.Tensor, ex: torch.Tensor | None, lo: int) -> None:
    """Set ``s [B, n]`` (items ``lo .. lo + n``) to ``-inf`` at every excluded id, in place.

    ``ex`` is a normalised exclude tensor (rows in any order, padding = ``EXCLUDE_SENTINEL``).
    No host sync and a fixed shape, so it can be captured in a CUDA graph: padding entries are
    pointed at an id the row excludes anyway (or, in a row that excludes nothing here, write
    back the score already there), so one ``scatter_`` does it.
    """
    if ex is None:
        return
    n = s.shape[1]
    rel = ex - lo
    valid = (rel >= 0) & (rel < n)  # [B, H]
    any_valid = valid.any(dim=1, keepdim=True)
    first = rel.gather(1, valid.to(torch.int32).argmax(dim=1, keepdim=True))  # a valid id, if any
    idx = torch.where(valid, rel, torch.where(any_valid, first, torch.zeros_like(first)))
    val = torch.where(any_valid, torch.full_like(s[:, :1], float("-inf")), s.gather(1, idx))
    s.scatter_(1, idx, val.expand(idx.shape))


def merge_topk(vals: list[torch.Tensor], ids: list[torch.Tensor], k: int):
    """The top-``k`` of per-chunk top-k lists (``vals`` / ``ids``, each ``[B, k_i]``)."""
    v, j = torch.topk(torch.cat(vals, dim=1), k, dim=1)
    return v, torch.gather(torch.cat(ids, dim=1), 1, j)


def _rank_torch(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    ex: torch.Tensor | None,
    block_bytes: int = TORCH_BLOCK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rank_torch` on checked inputs and a normalised ``ex`` (rows in any order; no host
    sync)."""
    B = h.shape[0]
    N = W.shape[0]
    step = max(k, block_bytes // (4 * max(B, 1)))
    if step >= N:
        s = _scores_fp32(h, W, b)
        if ex is None:
            return torch.topk(s, k, dim=1)
        # one spare column takes every padding entry, so one scatter excludes a whole batch
        s = torch.cat([s, s.new_zeros((B, 1))], dim=1)
        s.scatter_(1, ex.clamp(max=N), float("-inf"))
        return torch.topk(s[:, :N], k, dim=1)
    vals, ids = [], []
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        s = _scores_fp32(h, W[lo:hi], None if b is None else b[lo:hi])
        _mask_excluded(s, ex, lo)
        v, i = torch.topk(s, min(k, hi - lo), dim=1)
        vals.append(v)
        ids.append(i + lo)
    return merge_topk(vals, ids, k)


def rank_torch(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``h @ W.T + b`` per row by matmul + ``torch.topk``, history excluded.

    The scores are fp32 with fp32 accumulation for every table dtype (half tables through
    ``torch.mm(..., out_dtype=torch.float32)`` on CUDA where torch has it, else upcast), so the
    results agree with the fused kernel and :func:`topk_projection_reference` within the same
    tolerances. Writes ``[B, N]`` fp32 scores, in item chunks of at most
    :data:`TORCH_BLOCK_BYTES`. No host sync: it can be captured in a CUDA graph. Returns
    ``(scores [B, k] float32, ids [B, k] int64)``, best first (order among equal scores is
    ``torch.topk``'s). ``exclude``: see the module docstring.
    """
    check_ranking_inputs(h, W, b, k, exclude)
    B = h.shape[0]
    if B == 0:
        dev = h.device
        return torch.empty((0, k), device=dev), torch.empty((0, k), dtype=torch.int64, device=dev)
    ex = normalize_exclude(exclude, B, W.shape[0], h.device, sort=False)
    return _rank_torch(h, W, b, k, ex)


# --------------------------------------------------------------------------------------------
# CPU ranking path
# --------------------------------------------------------------------------------------------

#: Target bytes of one chunk's fp32 score block [chunk, B] (B=64: 16384 items). Measured on 2
#: AMD EPYC (Zen 4) cores, B=64, d=64, N=1M, k=10, best of 9 calls (a shared machine, so medians
#: are noisy): 8192 items 92-93 ms, 16384 78-81 ms, 32768 75-80 ms, 65536 81-115 ms; ONNX
#: Runtime's MatMul+Add+TopK 91 ms in the same run (/tmp tuning run, see topk_cpu.md for the
#: committed comparison). Smaller blocks pay ~20 small torch ops per chunk; bigger ones spill L2.
CPU_BLOCK_BYTES = 4 * 2**20

#: Items per block of the block-max pre-selection; 16, 32 and 64 were within noise of each other
#: (same run as above); 32 keeps the per-chunk gather of hot blocks small.
CPU_GROUP = 32


def _auto_chunk(B: int, N: int) -> int:
    items = max(CPU_GROUP * 64, CPU_BLOCK_BYTES // (4 * max(B, 1)))
    items = (items // CPU_GROUP) * CPU_GROUP
    return min(N, items)


def chunk_plan(B: int, N: int, k: int, chunk_items, group) -> tuple[int, int]:
    """(items per block, items per chunk) of the chunked CPU paths, checked: the first chunk
    holds k items and chunks start on block boundaries (``bias_block_max``)."""
    group = CPU_GROUP if group is None else int(group)
    if group < 1:
        raise ValueError(f"group must be >= 1 item, got {group}")
    chunk = _auto_chunk(B, N) if chunk_items is None else int(chunk_items)
    if chunk < 1:
        raise ValueError(f"chunk_items must be >= 1 item, got {chunk_items}")
    return group, min(N, -(-max(chunk, k) // group) * group)


def _select_chunk(s: torch.Tensor, k: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k per column of one items-major score block ``s [n, B]``: (values [B, k'], rows [B, k']).

    Exact block-max pre-selection: cut the ``n`` items into blocks of ``group`` and take the ``k``
    blocks with the largest maxima. Every top-k item lies in those blocks (up to ties): an item
    outside them is <= the max of its block <= each chosen block's max, i.e. it is beaten by ``k``
    distinct items. So one cheap vectorised ``amax`` pass over the block replaces a ``topk`` over
    all ``n`` items, and the real ``topk`` runs on ``k * group`` candidates.
    """
    n, B = s.shape
    kk = min(k, n)
    if n % group == 0 and n // group > 2 * kk:
        blocks = s.view(n // group, group, B).amax(dim=1)  # [n/group, B]
        top_blocks = torch.topk(blocks, kk, dim=0, sorted=False).indices  # [kk, B]
        offs = torch.arange(group, device=s.device).view(1, group, 1)
        rows = (top_blocks.unsqueeze(1) * group + offs).reshape(kk * group, B)  # [kk*group, B]
        vals, j = torch.topk(torch.gather(s, 0, rows), kk, dim=0, sorted=False)
        return vals.T, torch.gather(rows, 0, j).T
    vals, j = torch.topk(s, kk, dim=0, sorted=False)
    return vals.T, j.T


def _merge_above_threshold(
    s: torch.Tensor,
    bias: torch.Tensor | None,
    bias_block_max: torch.Tensor | None,
    lo: int,
    group: int,
    best_v: torch.Tensor,
    best_i: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold the items of ``s [n, B]`` (ids ``lo + row``) that beat each column's current k-th best.

    ``s`` holds ``W_chunk @ h.T`` *without* the bias; ``bias_block_max`` is the bias's max over
    each block of ``group`` items (precomputed once per call for all of ``W``). ``best_v``/
    ``best_i`` [B, k] hold the running top-k, sorted best first, so ``best_v[:, -1]`` is the
    admission threshold. A block can only hold a new winner for query q if
    ``max(s[block, q]) + max(bias[block])`` beats q's threshold -- an upper bound of every exact
    score in it, so skipping the others is exact. After the first chunk such blocks are few
    (about ``k * chunk / items_seen`` per query): the work past one ``amax`` pass is a gather of
    those blocks (bias added there), a filter to the items that beat the threshold, and one
    small ``topk`` over ``[B, k + survivors]``.
    """
    n, B = s.shape
    k = best_v.shape[1]
    n_full = n - n % group
    thr = best_v[:, -1]  # [B]
    parts_v, parts_i = [best_v], [best_i]
    if n_full:
        bound = s[:n_full].view(n_full // group, group, B).amax(dim=1)  # [n/group, B]
        if bias_block_max is not None:
            bound += bias_block_max[lo // group : (lo + n_full) // group].unsqueeze(1)
        hot = (bound > thr).T.nonzero()  # [M, 2] (query, block), sorted by query
        if hot.shape[0]:
            q, blk = hot[:, 0], hot[:, 1]
            rows = blk.unsqueeze(1) * group + torch.arange(group, device=s.device)  # [M, group]
            vals = s[rows, q.unsqueeze(1)]
            if bias is not None:
                vals += bias[rows + lo].float()
            # Keep only the items that beat the threshold (about one per hot block).
            m, g = (vals > thr[q].unsqueeze(1)).nonzero().unbind(1)  # sorted by query
            if m.shape[0]:
                qq = q[m]
                counts = torch.bincount(qq, minlength=B)
                width = int(counts.max())
                pos = (
                    torch.arange(qq.shape[0], device=s.device)
                    - (torch.cumsum(counts, 0) - counts)[qq]
                )
                dense_v = torch.full((B, width), float("-inf"), device=s.device)
                dense_i = torch.zeros((B, width), dtype=torch.int64, device=s.device)
                dense_v[qq, pos] = vals[m, g]
                dense_i[qq, pos] = rows[m, g] + lo
                parts_v.append(dense_v)
                parts_i.append(dense_i)
    if n_full < n:  # the ragged tail of the last chunk: take it whole
        tail = s[n_full:].T
        if bias is not None:
            tail = tail + bias[lo + n_full : lo + n].float()
        parts_v.append(tail)
        parts_i.append((torch.arange(n_full, n, device=s.device) + lo).expand(B, n - n_full))
    if len(parts_v) == 1:
        return best_v, best_i
    return merge_topk(parts_v, parts_i, k)


def rank_cpu(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    chunk_items: int | None = None,
    group: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``h @ W.T + b`` per row, history excluded, never writing ``[B, N]``.

    Walks ``W`` in chunks of items (``chunk_items``, default: an fp32 score block of
    :data:`CPU_BLOCK_BYTES`, rounded to whole groups) and computes each block items-major,
    ``W_chunk @ h.T`` (``W`` read in its own row-major order; 1.5x faster with MKL than
    ``h @ W_chunk.T`` here), so the ``[chunk, B]`` block stays in cache. (ONNX Runtime's MLAS
    GEMM is 10-40% faster than MKL on these chunks in isolation, but called per chunk between
    torch ops its thread pool and torch's fight over the cores: 101 vs 83 ms at the target
    point on 2 cores, so the GEMM stays torch.) The first chunk is
    reduced exactly with :func:`_select_chunk` and sets each query's threshold (its k-th best);
    every later chunk costs one ``amax`` pass over its groups of ``group`` items plus work on the
    few groups whose upper bound (group max of ``W h`` + group max of ``b``) beats the threshold
    (:func:`_merge_above_threshold`). The bias is added only where scores are kept. Math is fp32
    (fp16/bf16 tables are upcast chunk by chunk). Pure torch: it also runs on CUDA tensors (the
    fallback when Triton is missing). ``benchmarks/bench_topk_cpu.py`` (results in
    ``benchmarks/results/topk_cpu.md``): at the issue's point (N=1M, d=64, B=64, k=10, 2 cores)
    it ran 0.96-1.29x ONNX Runtime's MatMul+TopK over five runs on a shared VM, ~2.5x torch and
    ~4x faiss; ORT's graph is faster at B=1, k=100 and small d=256 catalogs (MLAS beats MKL).

    Returns ``(scores [B, k] float32, ids [B, k] int64)``, best first (order among exactly equal
    scores unspecified). ``exclude``: see the module docstring.
    """
    check_ranking_inputs(h, W, b, k, exclude)
    B, _ = h.shape
    N = W.shape[0]
    dev = h.device
    if B == 0:
        return torch.empty((0, k), device=dev), torch.empty((0, k), dtype=torch.int64, device=dev)
    group, chunk = chunk_plan(B, N, k, chunk_items, group)
    hT = h.float().T.contiguous()  # [d, B]
    pairs = _exclude_pairs(normalize_exclude(exclude, B, N, dev))
    if pairs is not None:
        ex_rows, ex_items = pairs
        starts = torch.arange(0, N + chunk, chunk, device=dev)
        bounds = torch.searchsorted(ex_items, starts).tolist()
    buf = torch.empty((chunk, B), dtype=torch.float32, device=dev)
    bias_block_max = None
    n_blocks = N // group
    if b is not None and n_blocks > 0:
        bias_block_max = b[: n_blocks * group].float().view(n_blocks, group).amax(dim=1)
    best_v = best_i = None
    for c, lo in enumerate(range(0, N, chunk)):
        hi = min(N, lo + chunk)
        s = buf[: hi - lo]  # [n, B]
        w = W[lo:hi]
        torch.mm(w if w.dtype == torch.float32 else w.float(), hT, out=s)
        if pairs is not None and bounds[c + 1] > bounds[c]:
            sl = slice(bounds[c], bounds[c + 1])
            s[ex_items[sl] - lo, ex_rows[sl]] = float("-inf")
        if best_v is None:  # first chunk (>= k items): exact scores, block-max top-k
            if b is not None:
                s += b[lo:hi].float().unsqueeze(1)
            v, i = _select_chunk(s, k, group)
            best_v, j = torch.sort(v, dim=1, descending=True)
            best_i = torch.gather(i, 1, j)
        else:
            best_v, best_i = _merge_above_threshold(s, b, bias_block_max, lo, group, best_v, best_i)
    return best_v, best_i
