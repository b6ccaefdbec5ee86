"""The ranking head of an int8 catalog in ONNX: integer matmul, exact re-rank, full-precision rescue.

``lite export --catalog-precision int8`` writes ``model.onnx`` with this head on the user
encoder. Per call, for user vectors ``h [B, d]`` and ``exclude_ids [B, H]`` (pad = N):

1. **Upper bounds from an integer matmul.** ``DynamicQuantizeLinear(h)`` (uint8, one scale per
   batch) times a 7-bit copy of the head (``q [N, d]`` int8 in [-63, 63], one scale per row,
   :func:`~lite_export.kernels.quantize_catalog` with ``qmax=63``) by ``MatMulInteger``, then
   ``Cast`` / ``Mul`` / ``Add``: the pattern ONNX Runtime fuses into one ``DynamicQuantizeMatMul``
   (u8s8 GEMM; 7-bit weights because the AVX2 u8s8 kernel sums pairs of products in int16, which
   8-bit weights can saturate -- ONNX Runtime's ``reduce_range`` advice). The added vector makes
   each entry an *upper bound* ``UB`` of the item's fp32 score (below).
2. **Candidates.** Excluded ids get ``-inf``; the ``M + 1`` largest bounds are found by a block-max
   pre-selection (``ReduceMax`` over blocks of 32 items, ``TopK`` over the block maxima, ``TopK``
   inside the chosen blocks: every top item lies in a top block), far cheaper than a ``TopK`` over
   ``[B, N]``.
3. **Exact re-rank.** The first ``M`` candidates' rows of ``W`` (the export precision) are gathered
   and scored in fp32, and ``TopK(K)`` of those is the answer -- *if* the K-th exact score is at
   least the ``(M + 1)``-th bound (every item left out has a score at most its bound, so at most
   that). The graph's third output ``quantized_settled [B]`` says where it held.
4. **Rescue.** Rows where it did not hold are ranked again in full precision (an ``If`` around a
   ``Loop`` over chunks of ``W``: no second copy of the table, no ``[B, N]`` write), so the output
   is always the fp32 top-K of ``h . W_r + b_r`` up to scores equal within fp32 rounding, whatever
   ``M`` is. ``M`` (``--catalog-candidates``) only trades the re-rank's cost against how often the
   rescue runs; the export picks it from probe users (:func:`calibrate_candidates`).

The bound (real arithmetic, then widened for fp32)
---------------------------------------------------
``h_j = hs (a_j - z) + delta_j`` with ``|delta_j| <= hs (1/2 + 2^-12)`` (``DynamicQuantizeLinear``:
the grid covers ``[min(h, 0), max(h, 0)]`` in 255 steps of ``hs``); ``W_rj = s_r q_rj + eps_rj``
with ``|eps_rj| <= s_r (1/2 + 2^-16)``. The integer matmul gives ``A_r = hs s_r sum_j (a_j - z)
q_rj + b_r`` and

``|h . W_r + b_r - A_r| <= s_r [hs (c_d Q1_r + 2 d c_d c_e) + c_e sum_j |h_j|]``

(``Q1_r = sum_j |q_rj|``, ``c_d = 1/2 + 2^-12``, ``c_e = 1/2 + 2^-16``). fp32 rounding of the
graph's own arithmetic and of any fp32 evaluation of the exact score (``gamma_{d+1}``, ``u =
2^-24``) adds ``s_r sum_j |h_j| (1024 u + 128 gamma_{d+1}) + |b_r| (gamma_{d+1} + 4 u)``, and the
whole is widened by ``2^-10``. ``hs`` is bounded from above by ``(max(h, 0) - min(h, 0)) / 255``
and ``sum_j |h_j|`` by its largest value in the batch, so the added vector is one ``[N]`` vector
per call: ``hs_up * alpha + l1_max * gamma + (b + beta)`` with ``alpha``, ``gamma``, ``beta``
constants of the graph (:func:`bound_vectors`).

ONNX Runtime only: ``DynamicQuantizeLinear`` and ``MatMulInteger`` have no TensorRT importers (the
static check in the manifest says so), so ``--format tensorrt`` refuses an int8 catalog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "BLOCK",
    "QuantizedHead",
    "attach_head",
    "bound_vectors",
    "build_head",
    "calibrate_candidates",
    "calibrate_on_vectors",
    "head_model",
    "head_tables",
]

#: Items per block of the block-max pre-selection (as ``rank_cpu``'s ``CPU_GROUP``).
BLOCK = 32
#: 7-bit weights: the largest |q| for which ONNX Runtime's AVX2 u8s8 kernel cannot saturate.
QMAX = 63
#: Items per chunk of the full-precision rescue loop.
RESCUE_CHUNK = 65536
#: Prefix of every name the head adds to the encoder's graph.
PREFIX = "rank_q/"

_U = 2.0**-24
_C_DELTA = 0.5 + 2.0**-12
_C_EPS = 0.5 + 2.0**-16
_WIDEN = 1 + 2.0**-10


def _gamma(n: int) -> float:
    return n * _U / (1 - n * _U)


@dataclass
class QuantizedHead:
    """The constants of the head graph, padded to ``n_pad`` columns (a multiple of
    :data:`BLOCK`, at least ``N + 1``: column ``N`` takes the pad id of ``exclude_ids``)."""

    qT: np.ndarray  # int8 [d, n_pad], 7-bit
    scales: np.ndarray  # fp32 [n_pad]
    alpha: np.ndarray  # fp32 [n_pad]: times the batch's quantization step
    gamma: np.ndarray  # fp32 [n_pad]: times the batch's largest sum |h|
    rowb: np.ndarray  # fp32 [n_pad]: bias + its rounding term; -inf on pad columns
    weight: np.ndarray  # [n_pad, d] in the export dtype (zero pad rows): the re-rank's rows
    bias: np.ndarray  # fp32 [n_pad], -inf on pad columns
    num_items: int

    @property
    def n_pad(self) -> int:
        return int(self.scales.shape[0])

    @property
    def d(self) -> int:
        return int(self.qT.shape[0])


def bound_vectors(
    q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, gamma, b + beta)`` of the module docstring's bound, each ``[N]`` fp32, for a
    7-bit catalog ``q [N, d]`` with ``scales [N]`` and fp32 ``bias [N]``."""
    d = q.shape[1]
    g = _gamma(d + 1)
    s = scales.double()
    q1 = q.double().abs().sum(dim=1)
    alpha = s * (_C_DELTA * q1 + 2 * d * _C_DELTA * _C_EPS) * _WIDEN
    gamma = s * (_C_EPS + 1024 * _U + 128 * g) * _WIDEN
    b = bias.double()
    beta = b.abs() * (g + 4 * _U) * _WIDEN + 2.0**-140
    rowb = torch.where(torch.isfinite(b), b + beta, b)
    return (
        _up(alpha).numpy(),
        _up(gamma).numpy(),
        _up(rowb).numpy(),
    )


def _up(x: torch.Tensor) -> torch.Tensor:
    """float64 -> float32 rounded towards +inf (a bound stays a bound)."""
    f = x.float()
    return torch.where(f.double() < x, torch.nextafter(f, torch.tensor(float("inf"))), f)


def head_tables(weight: torch.Tensor, bias: torch.Tensor) -> QuantizedHead:
    """The graph constants for the head ``weight [N, d]`` (the export dtype) and ``bias [N]``."""
    from lite_export.kernels import quantize_catalog

    N, d = weight.shape
    b32 = bias.detach().float()
    cat = quantize_catalog(weight.detach(), b32, "int8", qmax=QMAX)
    alpha, gamma, rowb = bound_vectors(cat.q, cat.scales, b32)
    n_pad = -(-(N + 1) // BLOCK) * BLOCK
    pad = n_pad - N

    def ext(a: np.ndarray, fill: float) -> np.ndarray:
        return np.concatenate([a, np.full(pad, fill, dtype=a.dtype)]).astype(a.dtype)

    if weight.dtype not in (torch.float32, torch.float16):
        raise TypeError(
            f"the int8 ranking graph keeps the head in fp32 or fp16 (ONNX Runtime's CPU kernels), "
            f"got {weight.dtype}"
        )
    wnp = weight.detach().contiguous().numpy()
    return QuantizedHead(
        qT=np.ascontiguousarray(np.concatenate([cat.q.numpy(), np.zeros((pad, d), np.int8)]).T),
        scales=ext(cat.scales.numpy(), 1.0),
        alpha=ext(alpha, 0.0),
        gamma=ext(gamma, 0.0),
        rowb=ext(rowb, -np.inf),
        weight=np.concatenate([wnp, np.zeros((pad, d), wnp.dtype)]),
        bias=ext(b32.numpy(), -np.inf),
        num_items=N,
    )


class _Builder:
    """Nodes, constants and value names of one graph, every name under a prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def const(self, hint: str, value) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def i64(self, *values: int) -> str:
        return self.const("i64", np.array(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, n_out: int = 1, out=None, **attrs):
        from onnx import helper

        outs = out if out is not None else [self.name(op_type.lower()) for _ in range(n_out)]
        outs = [outs] if isinstance(outs, str) else list(outs)
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if len(outs) == 1 else outs


def _neg_inf_like(g: _Builder, x: str) -> str:
    from onnx import TensorProto, helper

    shape = g.op("Shape", x)
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [float("-inf")])
    return g.op("ConstantOfShape", shape, value=value)


def _mask(g: _Builder, scores: str, ids: str) -> str:
    """``scores`` with ``-inf`` written at every ``ids`` entry of its row."""
    return g.op("ScatterElements", scores, ids, _neg_inf_like(g, ids), axis=1)


def _rescue_loop(g: _Builder, t: QuantizedHead, k: int, h: str, ex: str, w: str, b: str):
    """``(scores [F, k], ids [F, k])``: the full-precision top-k of rows ``h [F, d]`` with
    ``ex [F, H]`` excluded, by a ``Loop`` over chunks of ``w``; no ``[F, N]`` write."""
    from onnx import TensorProto, helper

    N = t.num_items
    chunk = max(k, min(RESCUE_CHUNK, N))
    trips = -(-N // chunk)
    body = _Builder(g.prefix + "rescue/")
    it, cond_in, bv, bi = (body.name(n) for n in ("iter", "cond", "best_v", "best_i"))
    lo = body.op("Mul", it, body.const("chunk", np.array(chunk, dtype=np.int64)))
    hi = body.op(
        "Min", body.op("Add", lo, body.const("c", np.int64(chunk))), body.const("n", np.int64(N))
    )
    lo1, hi1 = body.op("Unsqueeze", lo, body.i64(0)), body.op("Unsqueeze", hi, body.i64(0))
    rows = body.op("Cast", body.op("Slice", w, lo1, hi1, body.i64(0)), to=TensorProto.FLOAT)
    s = body.op("Gemm", h, rows, body.op("Slice", b, lo1, hi1, body.i64(0)), transB=1)
    n = body.op("Sub", hi, lo)  # items in this chunk
    rel = body.op("Sub", ex, lo)
    inside = body.op(
        "And",
        body.op("GreaterOrEqual", rel, body.const("z", np.int64(0))),
        body.op("Less", rel, n),
    )
    idx = body.op("Where", inside, rel, n)  # outside ids -> the spare column n
    zero_col = body.op(
        "ConstantOfShape",
        body.op(
            "Concat",
            body.op("Slice", body.op("Shape", s), body.i64(0), body.i64(1)),
            body.i64(1),
            axis=0,
        ),
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
    )
    masked = _mask(body, body.op("Concat", s, zero_col, axis=1), idx)
    masked = body.op(
        "Slice", masked, body.i64(0), body.op("Unsqueeze", n, body.i64(0)), body.i64(1)
    )
    kc = body.op("Unsqueeze", body.op("Min", n, body.const("k", np.int64(k))), body.i64(0))
    v, j = body.op("TopK", masked, kc, n_out=2, axis=1)
    ids = body.op("Add", j, lo)
    # new entries first: among -inf ties TopK keeps the lower position, so the initial
    # (-inf, 0) entries are never kept while real (excluded) ids are available
    mv, mi = body.op("Concat", v, bv, axis=1), body.op("Concat", ids, bi, axis=1)
    nv, jj = body.op("TopK", mv, body.i64(k), n_out=2, axis=1)
    ni = body.op("GatherElements", mi, jj, axis=1)
    cond_out = body.op("Identity", cond_in)
    graph = helper.make_graph(
        body.nodes,
        "rescue_chunk",
        [
            helper.make_tensor_value_info(it, TensorProto.INT64, []),
            helper.make_tensor_value_info(cond_in, TensorProto.BOOL, []),
            helper.make_tensor_value_info(bv, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(bi, TensorProto.INT64, None),
        ],
        [
            helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
            helper.make_tensor_value_info(nv, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(ni, TensorProto.INT64, None),
        ],
        body.inits,
    )
    rows_k = g.op("Concat", g.op("Slice", g.op("Shape", h), g.i64(0), g.i64(1)), g.i64(k), axis=0)
    init_v = g.op(
        "ConstantOfShape",
        rows_k,
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [float("-inf")]),
    )
    init_i = g.op(
        "ConstantOfShape", rows_k, value=helper.make_tensor("v", TensorProto.INT64, [1], [0])
    )
    true = g.const("true", np.array(True))
    return g.op(
        "Loop", g.const("trips", np.int64(trips)), true, init_v, init_i, n_out=2, body=graph
    )


def build_head(
    t: QuantizedHead,
    k: int,
    candidates: int,
    *,
    h_name: str = "user_vectors",
    h_dtype=None,
    debug: bool = False,
):
    """Nodes and initializers of the head: ``(nodes, initializers, outputs)``.

    Reads ``h_name`` (the encoder's ``[B, d]`` output, of ONNX element type ``h_dtype``, float by
    default) and the graph input ``exclude_ids``; writes ``scores`` [B, k] float32, ``indices``
    [B, k] int64 and ``quantized_settled`` [B] bool. ``candidates`` is ``M`` (``k <= M < N``).
    ``debug`` adds the masked bounds ``[B, n_pad]`` as a fourth output, ``quantized_bounds``
    (:func:`calibrate_candidates` reads it).
    """
    from onnx import TensorProto, helper

    N = t.num_items
    M = int(candidates)
    if not k <= M <= N - 1:
        raise ValueError(
            f"candidates must be in [k={k}, N - 1 = {N - 1}] for an int8 catalog of {N} items, "
            f"got {M}"
        )
    g = _Builder(PREFIX)
    h = h_name
    if h_dtype not in (None, TensorProto.FLOAT):
        h = g.op("Cast", h_name, to=TensorProto.FLOAT)
    # 1. bounds: the integer matmul in the pattern ONNX Runtime fuses (its bias, b + beta, is a
    # constant; the per-call part of the bound is added to block maxima and candidates only)
    hq, hs, hz = g.op("DynamicQuantizeLinear", h, n_out=3)
    qz = g.const("q_zero", np.zeros(t.n_pad, np.int8))
    acc = g.op("MatMulInteger", hq, g.const("qT", t.qT), hz, qz)
    ms = g.op("Mul", hs, g.const("scales", t.scales))
    approx = g.op("Mul", g.op("Cast", acc, to=TensorProto.FLOAT), ms)
    approx = _mask(g, g.op("Add", approx, g.const("rowb", t.rowb)), "exclude_ids")  # [B, n_pad]
    zero = g.const("zero", np.float32(0))
    top = g.op("Max", g.op("ReduceMax", h, keepdims=0), zero)
    low = g.op("Min", g.op("ReduceMin", h, keepdims=0), zero)
    hs_up = g.op("Mul", g.op("Sub", top, low), g.const("step", np.float32(_WIDEN / 255)))
    l1 = g.op("ReduceSum", g.op("Abs", h), g.i64(1), keepdims=0)
    l1_up = g.op("Mul", g.op("ReduceMax", l1, keepdims=0), g.const("widen", np.float32(_WIDEN)))

    def shift(alpha: str, gamma: str) -> str:  # hs_up * alpha + l1_up * gamma
        return g.op("Add", g.op("Mul", hs_up, alpha), g.op("Mul", l1_up, gamma))

    # 2. the M + 1 largest bounds, through the blocks that can hold them: a block's bound is its
    # max of approx + the block maxima of alpha and gamma
    n_blocks = t.n_pad // BLOCK
    alpha, gamma = g.const("alpha", t.alpha), g.const("gamma", t.gamma)
    a_max = t.alpha.reshape(n_blocks, BLOCK).max(axis=1)
    c_max = t.gamma.reshape(n_blocks, BLOCK).max(axis=1)
    blocks = g.op(
        "ReduceMax", g.op("Reshape", approx, g.i64(0, n_blocks, BLOCK)), g.i64(-1), keepdims=0
    )
    blocks = g.op("Add", blocks, shift(g.const("alpha_bmax", a_max), g.const("gamma_bmax", c_max)))
    n_top = min(M + 1, n_blocks)
    if n_top < n_blocks:  # the best block left out bounds every item in the blocks left out
        block_v, top_blocks = g.op("TopK", blocks, g.i64(n_top + 1), n_out=2, axis=1)
        top_blocks = g.op("Slice", top_blocks, g.i64(0), g.i64(n_top), g.i64(1))
        block_next = g.op(
            "Squeeze", g.op("Slice", block_v, g.i64(n_top), g.i64(n_top + 1), g.i64(1)), g.i64(1)
        )
    else:
        _, top_blocks = g.op("TopK", blocks, g.i64(n_top), n_out=2, axis=1)
        block_next = None
    items = g.op(
        "Add",
        g.op("Unsqueeze", g.op("Mul", top_blocks, g.const("block", np.int64(BLOCK))), g.i64(-1)),
        g.const("offsets", np.arange(BLOCK, dtype=np.int64)),
    )
    items = g.op("Reshape", items, g.i64(0, -1))
    item_ub = g.op(
        "Add",
        g.op("GatherElements", approx, items, axis=1),
        shift(g.op("Gather", alpha, items, axis=0), g.op("Gather", gamma, items, axis=0)),
    )
    cand_ub, j = g.op("TopK", item_ub, g.i64(M + 1), n_out=2, axis=1)
    cand_all = g.op("GatherElements", items, j, axis=1)
    cand = g.op("Slice", cand_all, g.i64(0), g.i64(M), g.i64(1))  # [B, M]
    ub_m = g.op("Slice", cand_ub, g.i64(0), g.i64(M), g.i64(1))
    next_bound = g.op("Squeeze", g.op("Slice", cand_ub, g.i64(M), g.i64(M + 1), g.i64(1)), g.i64(1))
    if block_next is not None:
        next_bound = g.op("Max", next_bound, block_next)
    bounds = approx  # for the debug output (without the per-call shift)
    # 3. exact re-rank of the candidates in fp32 from the export-precision rows
    weight, bias = g.const("weight", t.weight), g.const("bias", t.bias)
    rows = g.op("Gather", weight, cand, axis=0)  # [B, M, d]
    if t.weight.dtype != np.float32:
        rows = g.op("Cast", rows, to=TensorProto.FLOAT)
    exact = g.op("Squeeze", g.op("MatMul", rows, g.op("Unsqueeze", h, g.i64(-1))), g.i64(-1))
    exact = g.op("Add", exact, g.op("Gather", bias, cand, axis=0))
    excluded = g.op("IsInf", ub_m, detect_positive=0)
    exact = g.op("Where", excluded, _neg_inf_like(g, ub_m), exact)
    top_v, jj = g.op("TopK", exact, g.i64(k), n_out=2, axis=1)
    top_i = g.op("GatherElements", cand, jj, axis=1)
    kth = g.op("Squeeze", g.op("Slice", top_v, g.i64(k - 1), g.i64(k), g.i64(1)), g.i64(1))
    settled = g.op(
        "Or",
        g.op("GreaterOrEqual", kth, next_bound),
        g.op("IsInf", next_bound, detect_positive=0),
        out="quantized_settled",
    )
    # 4. the rescue of unsettled rows, in full precision
    unsettled = g.op("Not", settled)
    any_unsettled = g.op(
        "Cast",
        g.op("ReduceMax", g.op("Cast", unsettled, to=TensorProto.INT32), keepdims=0),
        to=TensorProto.BOOL,
    )
    rb = _Builder(PREFIX + "if/")
    rows_idx = rb.op("Transpose", rb.op("NonZero", unsettled), perm=[1, 0])  # [F, 1]
    flat = rb.op("Squeeze", rows_idx, rb.i64(1))
    hf, exf = rb.op("Gather", h, flat, axis=0), rb.op("Gather", "exclude_ids", flat, axis=0)
    fv, fi = _rescue_loop(rb, t, k, hf, exf, weight, bias)
    out_v = rb.op("ScatterND", top_v, rows_idx, fv)
    out_i = rb.op("ScatterND", top_i, rows_idx, fi)
    then_graph = helper.make_graph(
        rb.nodes,
        "rescue",
        [],
        [
            helper.make_tensor_value_info(out_v, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(out_i, TensorProto.INT64, None),
        ],
        rb.inits,
    )
    eb = _Builder(PREFIX + "else/")
    ev, ei = eb.op("Identity", top_v), eb.op("Identity", top_i)
    else_graph = helper.make_graph(
        eb.nodes,
        "settled",
        [],
        [
            helper.make_tensor_value_info(ev, TensorProto.FLOAT, None),
            helper.make_tensor_value_info(ei, TensorProto.INT64, None),
        ],
    )
    g.op(
        "If",
        any_unsettled,
        out=["scores", "indices"],
        then_branch=then_graph,
        else_branch=else_graph,
    )
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", k]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, ["batch", k]),
        helper.make_tensor_value_info("quantized_settled", TensorProto.BOOL, ["batch"]),
    ]
    if debug:
        g.op("Add", bounds, shift(alpha, gamma), out="quantized_bounds")
        outputs.append(
            helper.make_tensor_value_info("quantized_bounds", TensorProto.FLOAT, ["batch", t.n_pad])
        )
    return g.nodes, g.inits, outputs


def attach_head(encoder, t: QuantizedHead, k: int, candidates: int, *, debug: bool = False):
    """The ranking model: ``encoder`` (the ``user_encoder.onnx`` ModelProto: ``item_ids`` ->
    ``user_vectors``) with the head appended and ``exclude_ids`` added as an input. Returns a new
    ModelProto; ``encoder`` is not changed."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(encoder)
    graph = model.graph
    (out,) = [o for o in graph.output if o.name == "user_vectors"]
    h_dtype = out.type.tensor_type.elem_type
    nodes, inits, outputs = build_head(t, k, candidates, h_dtype=h_dtype, debug=debug)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.input.append(
        helper.make_tensor_value_info("exclude_ids", TensorProto.INT64, ["batch", "exclude"])
    )
    del graph.output[:]
    graph.output.extend(outputs)
    return model


def head_model(t: QuantizedHead, k: int, candidates: int, *, opset: int = 18, debug=False):
    """The head alone as a model: inputs ``user_vectors [B, d]`` (float32) and ``exclude_ids``,
    the outputs of :func:`build_head` (tests, ``benchmarks/bench_topk_cpu.py``)."""
    from onnx import TensorProto, helper

    nodes, inits, outputs = build_head(t, k, candidates, debug=debug)
    graph = helper.make_graph(
        nodes,
        "quantized_head",
        [
            helper.make_tensor_value_info("user_vectors", TensorProto.FLOAT, ["batch", t.d]),
            helper.make_tensor_value_info("exclude_ids", TensorProto.INT64, ["batch", "exclude"]),
        ],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def calibrate_candidates(bounds: list[np.ndarray], kth: list[np.ndarray], k: int, N: int) -> dict:
    """How many candidates probe batches needed: per row, the number of items whose bound
    (``bounds``: a ``debug`` graph's ``quantized_bounds`` per batch) reaches the row's exact k-th
    score (``kth``, e.g. from PyTorch). Returns ``{"needed_max", "needed_p99", "candidates"}``:
    ``candidates`` is twice the largest need rounded up to a power of two, in ``[k, N - 1]``."""
    needed = []
    for ub, t in zip(bounds, kth, strict=True):
        cnt = (ub >= t[:, None]).sum(axis=1)
        needed.extend(int(c) for c, f in zip(cnt, np.isfinite(t), strict=True) if f)
    top = max(needed, default=k)
    want = 1 << max(0, math.ceil(math.log2(max(1, 2 * top))))
    return {
        "needed_max": top,
        "needed_p99": float(np.percentile(needed, 99)) if needed else 0.0,
        "candidates": int(min(N - 1, max(k, want))),
    }


def calibrate_on_vectors(t: QuantizedHead, h: np.ndarray, kth: np.ndarray, k: int) -> dict:
    """:func:`calibrate_candidates` for user vectors ``h [B, d]`` (fp32) with exact k-th scores
    ``kth [B]``: runs the head's debug graph in ONNX Runtime (benchmarks on random vectors)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    model = head_model(t, k, k, debug=True)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    pad = np.full((h.shape[0], 1), t.num_items, np.int64)
    bounds = sess.run(["quantized_bounds"], {"user_vectors": h, "exclude_ids": pad})
    return calibrate_candidates(bounds, [kth], k, t.num_items)
