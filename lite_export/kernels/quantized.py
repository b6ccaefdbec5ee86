"""A quantized catalog: int8 or fp8 item rows with per-row scales, ranked with an exact re-rank.

:func:`quantize_catalog` stores ``W [N, d]`` as ``q`` with one fp32 scale per row and keeps the
bias in fp32:

* ``"int8"``: symmetric, ``scale = absmax / qmax`` (``qmax`` 127 by default; 63 gives the 7-bit
  weights ONNX Runtime's u8s8 kernels need on AVX2 machines), round to nearest, so each element
  is within half a step of ``W``;
* ``"fp8"``: ``float8_e4m3fn``, ``scale = absmax / 448`` (e4m3's largest value), round to nearest
  even, so each element is within ``2^-4`` of its own value (3 mantissa bits) or ``2^-10`` (the
  subnormal half-step) of ``W / scale``.

An all-zero row gets scale 0 (it is exact, so its bound is 0). :func:`rank_quantized` scores that table in fp32 arithmetic and then
re-ranks the few candidates that can still be in the top-k *exactly* against the full-precision
rows.

Why it is exact (no tuned candidate multiplier)
------------------------------------------------
Write ``s(r) = h . W_r + b_r`` and ``s_q(r) = scale_r * (h . q_r) + b_r``. In real arithmetic
``|s_q(r) - s(r)| <= sum_j |h_j| |W_rj - scale_r q_rj|``, which is at most
``scale_r / 2 * sum_j |h_j|`` for int8 and at most
``scale_r * (2^-4 * ||h||_2 ||q_r||_2 + 2^-10 * sum_j |h_j|)`` for fp8 (Cauchy-Schwarz on the
relative part). :func:`error_bounds` widens this by the fp32 rounding of *both* evaluations
(``gamma_n = n u / (1 - n u)``, ``u = 2^-24``, covering any summation order) and of the
comparisons. The bound has the form ``e(q, r) = sum_t slack[q, t] * rows[r, t] + beta_r``: one
term for int8 (``slack = c_d * sum_j |h_j|``, ``rows = scale``, ``c_d = 0.5 + 127 (2 gamma_{d+3}
+ 16 u)``, 0.5011 at d = 64), two for fp8 (``||h||_2`` against ``scale_r ||q_r||_2``, and
``sum_j |h_j|`` against ``scale_r``), and ``beta_r = 16 u |b_r|`` plus an underflow term. So
``L_r = s_q(r) - e <= s_hat(r) <= s_q(r) + e = U_r`` for the fp32 score ``s_hat`` of *any*
evaluation order -- :func:`~lite_export.kernels.reference.rank_cpu`'s and the re-rank's own. Let
``T`` be the k-th largest ``L`` over the non-excluded items: ``k`` items have ``s_hat >= T``, so
an item with ``U_r < T`` cannot be in the top-k. Every item with ``U_r >= T`` is a candidate (at
least ``k`` of them: the items whose ``L`` reaches ``T``); the candidates are re-scored in fp32
from ``W`` and the best ``k`` returned. The result is the top-k of the full-precision fp32
scores, the same ids as ``rank_cpu`` on ``W`` up to scores equal within fp32 rounding.

The pass over the table never writes ``[B, N]``: like ``rank_cpu`` it walks the items in chunks,
keeps a per-query candidate pool and a lower bound of ``T`` (the k-th ``L`` of the pool, which only
rises), and skips every group of items whose upper bound (group max of ``s_q`` + group maxima of
the per-row terms) is below it.

Memory: ``q`` is a quarter of an fp32 table (plus 4-8 bytes per row), but the exact re-rank reads
rows of the full-precision ``W``, so the saving is real only where ``W`` is not kept in RAM
(e.g. a memory-mapped file: ``safetensors.torch.load_file`` maps it, and only the candidates'
pages are read). Without ``W`` the results are the quantized scores' top-k: *not*
exact.

Speed (torch 2.13 CPU, 2 cores, a 16,384 x 64 chunk for 64 queries): dequantising int8 into a
reused fp32 buffer + MKL fp32 GEMM 1.1 ms against 1.0 ms for the fp32 table's GEMM; torch's int8
CPU matmuls were far slower on that machine (``torch._int_mm`` 40 ms, int8 ``matmul`` 7.6 ms), so
the scores are computed in fp32. Whole calls at N = 1M, d = 64, k = 10 against ``rank_cpu`` on
the fp32 table: 1.6x at B = 1 (a quarter of the bytes), 0.86x at B = 16, 0.78x at B = 64 (the
copy, a scale pass and the candidate bookkeeping on top of the same GEMM). fp8 -> fp32 has no
vectorised CPU conversion in torch (about 7x int8's copy time), so on a CPU fp8 saves memory but
not time; it is the format of GPUs with fp8 tensor cores. ``benchmarks/bench_topk_cpu.py``
measures both beside the fp32 paths.

This module imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lite_export.kernels.reference import (
    ExcludeLike,
    _exclude_pairs,
    _select_chunk,
    check_ranking_inputs,
    chunk_plan,
    normalize_exclude,
)

__all__ = [
    "PRECISIONS",
    "QuantizedCatalog",
    "error_bounds",
    "quantize_catalog",
    "rank_quantized",
]

#: Precisions :func:`quantize_catalog` builds, and the storage dtype of each.
PRECISIONS = ("int8", "fp8")
DTYPES = {"int8": torch.int8, "fp8": torch.float8_e4m3fn}

_QMAX = 127
_FP8_MAX = 448.0  # float8_e4m3fn's largest finite value
_FP8_REL = 2.0**-4  # half a step of a 3-bit mantissa, relative to the rounded value
_FP8_SUB = 2.0**-10  # half of e4m3's subnormal step 2^-9
_U = 2.0**-24  # fp32 unit roundoff
_TINY = 2.0**-126  # smallest normal fp32: the smallest scale (keeps W / scale accurate)
_NEG = -torch.finfo(torch.float32).max
#: Largest fp32 block of dequantized rows rank_quantized writes at once (bytes).
_DEQUANT_BYTES = 4 * 2**20
#: Largest ``[rows, d]`` fp32 block quantize_catalog / the re-rank allocate at once (elements).
_BLOCK_ELEMS = 1 << 22


@dataclass
class QuantizedCatalog:
    """An item table stored as int8 or fp8 rows with per-row scales.

    ``q`` ``[N, d]``, int8 or ``float8_e4m3fn``; ``scales`` fp32 ``[N]`` (row ``r`` is
    ``q[r] * scales[r]``); ``bias`` fp32 ``[N]`` or ``None`` (kept exact, not quantized);
    ``precision`` ``"int8"`` or ``"fp8"``, from ``q``'s dtype. All plain tensors:
    :meth:`state_dict` / :meth:`from_state_dict` round-trip through ``safetensors`` (no pickle).
    """

    q: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None = None
    precision: str | None = None
    #: Per-catalog terms of the bound, cached by rank_quantized (keyed on the tensors' versions,
    #: so an in-place change of ``q``, ``scales`` or ``bias`` recomputes them).
    _terms: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.q, torch.Tensor) or self.q.ndim != 2:
            raise TypeError(f"q must be a tensor [N, d], got {_describe(self.q)}")
        stored = next((p for p, dt in DTYPES.items() if dt == self.q.dtype), None)
        if stored is None:
            raise TypeError(
                f"q must be int8 or float8_e4m3fn (the precisions {PRECISIONS}), got "
                f"{_describe(self.q)}"
            )
        if self.precision is None:
            self.precision = stored
        elif self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        elif self.precision != stored:
            raise TypeError(f"precision {self.precision!r} needs q as {DTYPES[self.precision]}")
        N = self.q.shape[0]
        if (
            not isinstance(self.scales, torch.Tensor)
            or self.scales.dtype != torch.float32
            or tuple(self.scales.shape) != (N,)
        ):
            raise TypeError(f"scales must be float32 [N={N}], got {_describe(self.scales)}")
        if self.bias is not None and (
            not isinstance(self.bias, torch.Tensor)
            or self.bias.dtype != torch.float32
            or tuple(self.bias.shape) != (N,)
        ):
            raise TypeError(f"bias must be None or float32 [N={N}], got {_describe(self.bias)}")
        for name, t in (("scales", self.scales), ("bias", self.bias)):
            if t is not None and t.device != self.q.device:
                raise ValueError(f"{name} is on {t.device} but q is on {self.q.device}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, d)``."""
        return (int(self.q.shape[0]), int(self.q.shape[1]))

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors (``q``, ``scales`` and ``bias``)."""
        n = self.q.numel() * self.q.element_size() + self.scales.numel() * 4
        return n + (0 if self.bias is None else self.bias.numel() * 4)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors for ``safetensors.torch.save_file`` (the precision is in the dtypes)."""
        out = {"q": self.q.contiguous(), "scales": self.scales.contiguous()}
        if self.bias is not None:
            out["bias"] = self.bias.contiguous()
        return out

    @classmethod
    def from_state_dict(cls, tensors: dict[str, torch.Tensor]) -> QuantizedCatalog:
        """The inverse of :meth:`state_dict`."""
        return cls(q=tensors["q"], scales=tensors["scales"], bias=tensors.get("bias"))


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} {tuple(t.shape)}"
    return type(t).__name__


def quantize_catalog(
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    precision: str = "int8",
    *,
    qmax: int = _QMAX,
) -> QuantizedCatalog:
    """Quantize ``W [N, d]`` (fp32/fp16/bf16, finite) to int8 or fp8 rows with per-row scales.

    ``"int8"``: ``scales[r] = max_j |W[r, j]| / qmax`` (``qmax`` in 1..127; 127 by default),
    ``q = round(W / scale)`` to nearest, so ``|W[r, j] - q[r, j] * scales[r]| <= scales[r] *
    (1/2 + 127 u)`` (``u = 2^-24``: the fp32 division's rounding). ``"fp8"``: ``scales[r] =
    max_j |W[r, j]| / 448`` and ``q = float8_e4m3fn(W / scale)`` (round to nearest even), so the
    error is at most ``scales[r] * ((2^-4 + 2u) |q[r, j]| + 2^-10 (1 + 2u))``. Scales are at
    least the smallest normal fp32, 2^-126 (so ``W / scale`` stays accurate); an all-zero row
    gets 0 (it is stored exactly). ``b [N]`` is stored as fp32, unquantized. Works chunk by chunk, so the temporary
    memory is a few MiB whatever ``N``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(qmax, bool) or not isinstance(qmax, int) or not 1 <= qmax <= _QMAX:
        raise ValueError(f"qmax must be an int in [1, {_QMAX}], got {qmax!r}")
    if precision == "fp8" and qmax != _QMAX:
        raise ValueError("qmax applies to int8 only (fp8's range is fixed by e4m3: 448)")
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise TypeError(f"W must be a 2-D tensor [N, d], got {_describe(W)}")
    if W.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"W must be float32, float16 or bfloat16, got {W.dtype}")
    N, d = W.shape
    if N == 0 or d == 0:
        raise ValueError(f"W must have at least one item and d >= 1, got shape {(N, d)}")
    if b is not None:
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (N,):
            raise ValueError(f"b must be a tensor [N={N}] or None, got {_describe(b)}")
        if not b.is_floating_point():
            raise TypeError(f"b must be a float tensor, got {b.dtype}")
    top = float(qmax) if precision == "int8" else _FP8_MAX
    q = torch.empty((N, d), dtype=DTYPES[precision], device=W.device)
    scales = torch.empty(N, dtype=torch.float32, device=W.device)
    step = max(1, _BLOCK_ELEMS // d)
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        w = W[lo:hi].float()
        if not bool(torch.isfinite(w).all()):
            bad = int(lo + (~torch.isfinite(w)).any(dim=1).nonzero()[0, 0])
            raise ValueError(f"W must be finite; row {bad} holds inf or nan")
        absmax = w.abs().amax(dim=1)
        sc = torch.clamp(absmax / top, min=_TINY)
        x = (w / sc.unsqueeze(1)).clamp_(-top, top)
        sc = torch.where(absmax == 0, torch.zeros_like(sc), sc)  # exact: no error to bound
        q[lo:hi] = torch.round(x).to(torch.int8) if precision == "int8" else x.to(q.dtype)
        scales[lo:hi] = sc
    bias = None if b is None else b.detach().to(device=W.device, dtype=torch.float32).contiguous()
    return QuantizedCatalog(q=q, scales=scales, bias=bias)


#: Rounding unit allowed for a GPU tensor-core dot product with fp32 accumulation: 4 u. NVIDIA's
#: tensor cores are not IEEE round-to-nearest (products are exact, additions may truncate after
#: aligning to the largest exponent of a group: Fasi et al., "Numerical behavior of NVIDIA tensor
#: cores", PeerJ CS 2021), so the fused kernel's bound allows two more bits per addition.
GPU_DOT_UNIT = 4 * _U


def _gamma(n: int, unit: float = _U) -> float:
    return n * unit / (1 - n * unit)


def error_bounds(
    h: torch.Tensor, cat: QuantizedCatalog
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms of the per-(query, item) bound ``e = slack @ rows.T + beta``.

    Returns ``(slack [B, T], rows [N, T], beta [N])`` (``T`` = 1 for int8, 2 for fp8; all
    non-negative) with ``|s_q(r) - s_hat(r)| <= e[q, r]`` for the fp32 score ``s_hat`` of any
    evaluation order, including the fp32 rounding of the comparisons that use ``e`` (see the
    module docstring).
    """
    return _slack(h, cat), _row_terms(cat), _beta(cat)


def _round_up(c: float) -> float:
    """A bound constant widened past the fp32 rounding of the products it enters."""
    return c * (1 + 1e-6)


def _slack(h: torch.Tensor, cat: QuantizedCatalog, dot_unit: float = _U) -> torch.Tensor:
    """``[B, T]``: the query's part of each term of the bound, computed in float64, rounded up.

    ``dot_unit``: the rounding unit of the quantized score's dot product (``GPU_DOT_UNIT`` for
    the fused kernel's tensor cores); the exact re-rank's is IEEE fp32's."""
    d = cat.shape[1]
    # both fp32 evaluations and the comparisons
    rounding = _gamma(d + 3, dot_unit) + _gamma(d + 3) + 16 * _U
    l1 = h.double().abs().sum(dim=1)
    if cat.precision == "int8":  # |q| <= 127 whatever qmax: a safe bound of the rounding part
        return (l1 * _round_up(0.5 + _QMAX * rounding)).float().unsqueeze(1)
    rel = _FP8_REL + 2 * _U + rounding * (1 + _FP8_REL)
    sub = _FP8_SUB * (1 + 2 * _U) * (1 + rounding)
    l2 = h.double().square().sum(dim=1).sqrt()
    return torch.stack([l2 * _round_up(rel), l1 * _round_up(sub)], dim=1).float()


def _row_terms(cat: QuantizedCatalog) -> torch.Tensor:
    """``[N, T]``: each row's part of the bound (``scale``; for fp8 also ``scale * ||q_r||_2``)."""
    if cat.precision == "int8":
        return cat.scales.unsqueeze(1)
    n2 = torch.empty(cat.shape[0], dtype=torch.float64, device=cat.device)
    step = max(1, _BLOCK_ELEMS // cat.shape[1])
    for lo in range(0, cat.shape[0], step):
        n2[lo : lo + step] = cat.q[lo : lo + step].double().square().sum(dim=1).sqrt()
    rel = (cat.scales.double() * n2 * (1 + 1e-6)).float()
    return torch.stack([rel, cat.scales], dim=1)


def _beta(cat: QuantizedCatalog) -> torch.Tensor:
    """The per-item part of the bound: ``16 u |b_r|`` plus an underflow allowance."""
    eta = (cat.shape[1] + 16) * 2.0**-149  # underflow: half the smallest subnormal per operation
    if cat.bias is None:
        return torch.full((cat.shape[0],), eta, dtype=torch.float32, device=cat.device)
    b = cat.bias.abs()
    return torch.where(torch.isfinite(b), b * (16 * _U) + eta, torch.zeros_like(b))


def _catalog_terms(cat: QuantizedCatalog, group: int):
    """``(beta, rowb = bias + beta, rows [N, T], group max of rows, group max of rowb)``,
    cached."""
    key = (
        group,
        cat.q.data_ptr(),
        cat.q._version,
        cat.scales.data_ptr(),
        cat.scales._version,
        None if cat.bias is None else (cat.bias.data_ptr(), cat.bias._version),
    )
    if key not in cat._terms:
        N = cat.shape[0]
        beta = _beta(cat)
        rowb = beta if cat.bias is None else cat.bias + beta
        rows = _row_terms(cat)
        n_blocks = N // group
        rows_bmax = rows[: n_blocks * group].view(n_blocks, group, -1).amax(dim=1)
        rowb_bmax = rowb[: n_blocks * group].view(n_blocks, group).amax(dim=1)
        cat._terms.clear()
        cat._terms[key] = (beta, rowb, rows, rows_bmax, rowb_bmax)
    return cat._terms[key]


def _err(slack_sel: torch.Tensor, rows_sel: torch.Tensor) -> torch.Tensor:
    """``sum_t slack[.., t] * rows[.., t]`` for gathered terms: ``slack_sel [M, T]`` against
    ``rows_sel [M, w, T]`` -> ``[M, w]``."""
    if rows_sel.shape[-1] == 1:
        return rows_sel[..., 0] * slack_sel[:, :1]
    return (rows_sel * slack_sel.unsqueeze(1)).sum(dim=-1)


def _dense(
    qq: torch.Tensor, v: torch.Tensor, ids: torch.Tensor, B: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat (query, value, id) triples -> ``[B, width]`` values (-inf padding) and ids (0)."""
    dev = v.device
    if qq.numel() == 0:
        return (
            torch.full((B, 0), float("-inf"), device=dev),
            torch.zeros((B, 0), dtype=torch.int64, device=dev),
        )
    order = torch.argsort(qq, stable=True)
    qq, v, ids = qq[order], v[order], ids[order]
    counts = torch.bincount(qq, minlength=B)
    width = int(counts.max())
    pos = torch.arange(qq.shape[0], device=dev) - (torch.cumsum(counts, 0) - counts)[qq]
    dv = torch.full((B, width), float("-inf"), device=dev)
    di = torch.zeros((B, width), dtype=torch.int64, device=dev)
    dv[qq, pos] = v
    di[qq, pos] = ids
    return dv, di


def _kth_lower(
    pv: torch.Tensor, pi: torch.Tensor, slack: torch.Tensor, rows, beta, k: int
) -> torch.Tensor:
    """Per query, the k-th largest ``L = s_q - e`` over the pool (``-inf`` if it holds < k)."""
    B, w = pv.shape
    if w < k:
        return torch.full((B,), float("-inf"), device=pv.device)
    low = pv - _err(slack, rows[pi]) - beta[pi]
    return torch.topk(low, k, dim=1, sorted=False).values.amin(dim=1)


def _prune(pv, pi, slack, rows, beta, thr):
    """Keep the pool entries whose upper bound ``U = s_q + e`` reaches ``thr``, compacted."""
    up = pv + _err(slack, rows[pi]) + beta[pi]
    keep = up >= thr.unsqueeze(1)  # thr >= -FLT_MAX, so -inf padding never passes
    if bool(keep.all()):
        return pv, pi
    qq, j = keep.nonzero().unbind(1)
    return _dense(qq, pv[qq, j], pi[qq, j], pv.shape[0])


def rank_quantized(
    h: torch.Tensor,
    cat: QuantizedCatalog,
    k: int = 10,
    exclude: ExcludeLike = None,
    W: torch.Tensor | None = None,
    *,
    chunk_items: int | None = None,
    group: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``h @ W.T + bias`` per row, history excluded, reading the quantized table.

    ``W [N, d]`` (fp32/fp16/bf16, the rows ``cat`` was quantized from) is needed for exactness:
    the candidates the proven bound leaves (module docstring) are re-scored in fp32 from it, so
    the ids equal :func:`~lite_export.kernels.reference.rank_cpu`'s on ``W`` up to scores equal
    within fp32 rounding, and the scores are the full-precision fp32 scores. The table saves
    memory only where ``W`` is not kept in RAM (memory-mapped: only the candidates' rows are
    read). **With ``W=None`` the result is the top-k of the quantized scores -- inexact** (items
    within ``scale / 2 * sum |h|`` of each other may swap).

    ``chunk_items`` / ``group``: as in ``rank_cpu``. Returns ``(scores [B, k] float32,
    ids [B, k] int64)``, best first; a row with fewer than ``k`` non-excluded items ends with
    ``-inf`` scores on excluded ids. ``exclude``: see :mod:`lite_export.kernels.reference`. Pure
    torch; tuned for CPU (on CUDA, ``rank(..., catalog=)`` runs the fused kernel's quantized
    filter path, ``fused.topk_quantized``). int8 and fp8 catalogs alike.
    """
    if not isinstance(cat, QuantizedCatalog):
        raise TypeError(f"cat must be a QuantizedCatalog, got {type(cat).__name__}")
    N, d = cat.shape
    if isinstance(h, torch.Tensor) and h.is_floating_point():
        stand_in = torch.zeros((), dtype=h.dtype, device=cat.device).expand(N, d)
    else:
        stand_in = torch.zeros((), device=cat.device).expand(N, d)
    check_ranking_inputs(h, stand_in, cat.bias, k, exclude)
    if W is not None:
        if not isinstance(W, torch.Tensor) or tuple(W.shape) != (N, d):
            raise ValueError(
                f"W must be the full-precision table [N={N}, d={d}] the catalog was quantized "
                f"from, got {_describe(W)}"
            )
        if W.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"W must be float32, float16 or bfloat16, got {W.dtype}")
        if W.device != cat.device:
            raise ValueError(f"W is on {W.device} but the catalog is on {cat.device}")
    B = h.shape[0]
    dev = h.device
    if B == 0:
        return torch.empty((0, k), device=dev), torch.empty((0, k), dtype=torch.int64, device=dev)
    group, chunk = chunk_plan(B, N, k, chunk_items, group)

    hf = h.float()
    hT = hf.T.contiguous()  # [d, B]
    scales, bias = cat.scales, cat.bias
    slack = _slack(h, cat)  # [B, T]
    # e = slack @ rows.T + beta; rowb = bias + beta (the part of U = s_q + e that does not
    # depend on the query); group maxima for the skip test. Cached on the catalog.
    beta, rowb, rows, rows_bmax, rowb_bmax = _catalog_terms(cat, group)
    slackT = slack.T.contiguous()  # [T, B]
    pairs = _exclude_pairs(normalize_exclude(exclude, B, N, dev))
    if pairs is not None:
        ex_rows, ex_items = pairs
        bounds = torch.searchsorted(ex_items, torch.arange(0, N + chunk, chunk, device=dev))
        bounds = bounds.tolist()
    # Dequantize in slices of at most _DEQUANT_BYTES (the [chunk, B] score block can be long
    # when B is small: the whole catalog at B = 1, as in rank_cpu).
    sub = max(group, min(chunk, _DEQUANT_BYTES // (4 * d)))
    wbuf = torch.empty((sub, d), dtype=torch.float32, device=dev)
    sbuf = torch.empty((chunk, B), dtype=torch.float32, device=dev)
    pv = torch.full((B, 0), float("-inf"), device=dev)
    pi = torch.zeros((B, 0), dtype=torch.int64, device=dev)
    thr = None
    ar = torch.arange(group, device=dev)
    new_q, new_v, new_i = [], [], []  # candidates not yet in the pool
    pending = 0
    n_chunks = -(-N // chunk)
    for c, lo in enumerate(range(0, N, chunk)):
        hi = min(N, lo + chunk)
        n = hi - lo
        s = sbuf[:n]
        for a in range(lo, hi, sub):
            z = min(hi, a + sub)
            w = wbuf[: z - a]
            w.copy_(cat.q[a:z])  # exact -> fp32 (a mixed-dtype mul is 25% slower here)
            torch.mm(w, hT, out=s[a - lo : z - lo])  # q . h, items-major
        s *= scales[lo:hi].unsqueeze(1)  # s_q without the bias
        if pairs is not None and bounds[c + 1] > bounds[c]:
            sl = slice(bounds[c], bounds[c + 1])
            s[ex_items[sl] - lo, ex_rows[sl]] = float("-inf")
        if thr is None:  # first chunk: the threshold is the k-th lower bound L of this chunk
            if bias is not None:
                s += bias[lo:hi].unsqueeze(1)
            e = torch.addmm(beta[lo:hi].unsqueeze(1), rows[lo:hi], slackT)
            v, _ = _select_chunk(s - e, k, group)
            thr = v.amin(dim=1) if v.shape[1] == k else torch.full((B,), _NEG, device=dev)
            thr = thr.clamp(min=_NEG)  # -inf -> -FLT_MAX: -inf scores never pass, all others do
            r, qq = (s + e >= thr.unsqueeze(0)).nonzero().unbind(1)
            pv, pi = _dense(qq, s[r, qq], r + lo, B)
            continue
        n_full = n - n % group
        if n_full:
            nb = n_full // group
            b0 = lo // group
            bound = s[:n_full].view(nb, group, B).amax(dim=1)  # [nb, B]
            bound.addmm_(rows_bmax[b0 : b0 + nb], slackT)
            bound += rowb_bmax[b0 : b0 + nb].unsqueeze(1)
            hot = (bound >= thr.unsqueeze(0)).T.nonzero()  # [M, 2] (query, block)
            if hot.shape[0]:
                q, blk = hot[:, 0], hot[:, 1]
                idx = blk.unsqueeze(1) * group + (ar + lo)  # [M, group] item ids
                vals = s[idx - lo, q.unsqueeze(1)]  # s_q without bias
                up = vals + rowb[idx]
                up += _err(slack[q], rows[idx])
                m, g = (up >= thr[q].unsqueeze(1)).nonzero().unbind(1)
                if m.shape[0]:
                    pending += m.shape[0]
                    ids = idx[m, g]
                    v = vals[m, g]
                    new_q.append(q[m])
                    new_v.append(v if bias is None else v + bias[ids])
                    new_i.append(ids)
        if n_full < n:  # ragged tail of the last chunk
            ids_t = torch.arange(lo + n_full, hi, device=dev)
            tail = s[n_full:]  # [t, B]
            if bias is not None:
                tail = tail + bias[ids_t].unsqueeze(1)
            up = tail + torch.addmm(beta[ids_t].unsqueeze(1), rows[ids_t], slackT)
            r, qq = (up >= thr.unsqueeze(0)).nonzero().unbind(1)
            pending += qq.shape[0]
            new_q.append(qq)
            new_v.append(tail[r, qq])
            new_i.append(ids_t[r])
        # Fold the new candidates into the pool and raise the threshold: after the chunks 1, 2, 4,
        # 8, ... (the threshold settles early), when many are pending, and at the end.
        last = c == n_chunks - 1
        if new_q and (last or (c & (c + 1)) == 0 or pending > 4 * B * k):
            nv, ni = _dense(torch.cat(new_q), torch.cat(new_v), torch.cat(new_i), B)
            new_q, new_v, new_i = [], [], []
            pending = 0
            pv, pi = torch.cat([pv, nv], dim=1), torch.cat([pi, ni], dim=1)
            thr = torch.maximum(thr, _kth_lower(pv, pi, slack, rows, beta, k))
            if pv.shape[1] > 4 * k + 64:  # prune only when the pool has grown
                pv, pi = _prune(pv, pi, slack, rows, beta, thr)
    # pv / pi hold every item whose U reaches the final threshold T (a lower bound of the k-th
    # best score): a superset of the top-k, padded with -inf.
    pv, pi = _prune(pv, pi, slack, rows, beta, thr)
    finite = pv > float("-inf")
    if W is not None:
        pv = _rescore(hf, W, bias, pi, finite)
    return _finish(pv, pi, finite, k, N, B, dev)


def _rescore(hf, W, bias, pi, finite):
    """fp32 ``h . W[id] + bias[id]`` for every pool entry (padding stays -inf)."""
    B, w = pi.shape
    out = torch.full((B, w), float("-inf"), device=hf.device)
    if w == 0:
        return out
    step = max(1, _BLOCK_ELEMS // max(1, w * W.shape[1]))
    for lo in range(0, B, step):
        hi = min(B, lo + step)
        rows = W[pi[lo:hi]].float()  # [b, w, d]
        sc = torch.bmm(rows, hf[lo:hi].unsqueeze(2)).squeeze(2)
        if bias is not None:
            sc = sc + bias[pi[lo:hi]]
        out[lo:hi] = torch.where(finite[lo:hi], sc, out[lo:hi])
    return out


def _finish(pv, pi, finite, k, N, B, dev):
    """Best ``k`` of the pool per row; a row with < k finite entries ends with -inf scores on
    ids outside its pool (excluded or -inf-bias items), like ``rank_cpu``."""
    vals = torch.where(finite, pv, torch.full_like(pv, float("-inf")))
    if vals.shape[1] < k:
        pad = torch.full((B, k - vals.shape[1]), float("-inf"), device=dev)
        vals = torch.cat([vals, pad], dim=1)
        pi = torch.cat([pi, torch.zeros((B, pad.shape[1]), dtype=torch.int64, device=dev)], 1)
    top_v, j = torch.topk(vals, k, dim=1)  # finite entries come first
    top_i = torch.gather(pi, 1, j)
    counts = finite.sum(dim=1)
    for r in (counts < k).nonzero().flatten().tolist():
        c = int(counts[r])
        taken = torch.zeros(N, dtype=torch.bool, device=dev)
        taken[top_i[r, :c]] = True
        top_i[r, c:] = (~taken).nonzero().flatten()[: k - c]
        top_v[r, c:] = float("-inf")
    return top_v, top_i
