"""The int8 ranking head in ONNX Runtime: its bound holds, and its top-K is the fp32 top-K --
settled by the integer pass or rescued in full precision -- on random and adversarial tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lite_export.exporters import quantized_graph as QG  # noqa: E402
from lite_export.kernels import rank_cpu  # noqa: E402

# fp32 scores of the same inputs in different summation orders: ids may differ only where the
# float64 scores are equal within this relative tolerance of the row's largest |score|.
RTOL = 1e-5


def _inputs(B, N, d, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g)
    W = torch.randn(N, d, generator=g)
    b = torch.randn(N, generator=g) * 0.3 if bias else torch.zeros(N)
    return h, W, b


def _session(model, optimized=False):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    level = "ORT_ENABLE_EXTENDED" if optimized else "ORT_DISABLE_ALL"
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _exclude(B, N, width, seed):
    """``[B, width]`` random excluded ids padded with N (the graphs' pad id)."""
    g = torch.Generator().manual_seed(seed)
    ex = torch.randint(0, N, (B, width), generator=g)
    ex[:, width // 2 :][torch.rand(B, width - width // 2, generator=g) < 0.3] = N
    return ex


def run_head(W, b, h, k, M, exclude=None, *, optimized=False, debug=False):
    t = QG.head_tables(W, b)
    sess = _session(QG.head_model(t, k, M, debug=debug), optimized)
    B, N = h.shape[0], W.shape[0]
    ex = torch.full((B, 1), N) if exclude is None else exclude
    names = ["scores", "indices", "quantized_settled"] + (["quantized_bounds"] if debug else [])
    return sess.run(names, {"user_vectors": h.numpy(), "exclude_ids": ex.numpy()})


def assert_fp32_topk(h, W, b, k, scores, ids, exclude=None):
    """``(scores, ids)`` is the top-k of the float64 scores of ``h . W + b`` (excluded at -inf):
    ids distinct and valid, each score its id's score, and the k-th value the true k-th value,
    all within fp32 rounding; where fewer than k items are left, the tail is -inf."""
    B, N = h.shape[0], W.shape[0]
    full = h.double() @ W.double().T + b.double()
    if exclude is not None:
        for r in range(B):
            ex = exclude[r][exclude[r] < N]
            full[r, ex] = float("-inf")
    ids_t = torch.from_numpy(ids)
    assert ids.shape == (B, k) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert bool(((ids_t >= 0) & (ids_t < N)).all())
    assert all(len(set(row)) == k for row in ids.tolist())
    ref = torch.topk(full, k, dim=1).values
    got = full.gather(1, ids_t)
    scale = full[torch.isfinite(full)].abs().max().clamp(min=1e-30)
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got), fin), "finite entries differ from the reference"
    assert torch.allclose(got[fin], ref[fin], rtol=0, atol=RTOL * float(scale))
    assert np.allclose(scores[fin.numpy()], ref[fin].numpy(), rtol=0, atol=RTOL * float(scale))
    assert np.isneginf(scores[~fin.numpy()]).all()


# --------------------------------------------------------------------------------------------
# the bound
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["random", "scales 1e-6..1e6", "one loud user", "zero rows", "integer ties"]
)
def test_bounds_are_upper_bounds_of_every_score(case):
    """Every entry of the debug output is >= the item's float64 score (the bound the
    certificate rests on), and not vacuous: within a few quantization steps."""
    B, N, d = 6, 3001, 40
    h, W, b = _inputs(B, N, d, seed=1)
    g = torch.Generator().manual_seed(2)
    if case == "scales 1e-6..1e6":
        W *= (10.0 ** torch.randint(-6, 7, (N, 1), generator=g)).float()
        b = b * 10.0 ** torch.randint(-6, 4, (N,), generator=g).float()
    elif case == "one loud user":
        h[0] *= 1e4
    elif case == "zero rows":
        W[::3] = 0
    elif case == "integer ties":
        W = torch.randint(-3, 4, (N, d), generator=g).float()
        h = torch.randint(-3, 4, (B, d), generator=g).float()
    *_, bounds = run_head(W, b, h, 10, 64, debug=True)
    exact = (h.double() @ W.double().T + b.double()).numpy()
    assert bounds.shape == (B, -(-(N + 1) // QG.BLOCK) * QG.BLOCK)
    assert np.isneginf(bounds[:, N:]).all()  # pad columns
    gap = bounds[:, :N].astype(np.float64) - exact
    assert (gap >= 0).all(), f"{int((gap < 0).sum())} bounds below the exact score"
    step = (W.abs().amax(dim=1) / QG.QMAX).double().numpy() * float(h.abs().sum(dim=1).max())
    assert (gap <= 4 * step + 1e-3 * np.abs(exact) + 1e-30).all()


# --------------------------------------------------------------------------------------------
# the answer: the fp32 top-K
# --------------------------------------------------------------------------------------------

SHAPES = [  # (B, N, d, k, M): N below, at and past a block; M at k and far above it
    (1, 40, 8, 1, 1),
    (3, 63, 16, 5, 20),
    (7, 1000, 24, 10, 64),
    (2, 4096, 64, 100, 512),
    (16, 10_007, 32, 10, 128),
]


@pytest.mark.parametrize(("B", "N", "d", "k", "M"), SHAPES)
@pytest.mark.parametrize("optimized", [False, True], ids=["plain", "ort-fused"])
def test_topk_equals_fp32_topk(B, N, d, k, M, optimized):
    h, W, b = _inputs(B, N, d, seed=N + k)
    ex = _exclude(B, N, 12, seed=N)
    scores, ids, settled = run_head(W, b, h, k, M, ex, optimized=optimized)
    assert_fp32_topk(h, W, b, k, scores, ids, ex)
    assert settled.dtype == bool and settled.shape == (B,)
    ref_v, ref_i = rank_cpu(h, W, b, k, torch.where(ex < N, ex, -1))
    assert np.allclose(scores, ref_v.numpy(), rtol=RTOL, atol=RTOL)


def test_ort_fuses_the_integer_matmul():
    _, W, b = _inputs(1, 2000, 16)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = "/dev/null"
    model = QG.head_model(QG.head_tables(W, b), 10, 64)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = f"{tmp}/opt.onnx"
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        ops = {n.op_type for n in onnx.load(f"{tmp}/opt.onnx").graph.node}
    assert "DynamicQuantizeMatMul" in ops and "MatMulInteger" not in ops


def test_unsettled_rows_are_rescued_in_full_precision():
    """M = k on a table of near-ties: the integer pass cannot settle most rows; the rescue
    loop (several chunks) still returns the fp32 top-K, beside settled rows of the batch."""
    B, N, d, k = 9, 3 * QG.RESCUE_CHUNK // 64 + 77, 32, 20
    h, W, b = _inputs(B, N, d, seed=5)
    W = W[:50].repeat(N // 50 + 1, 1)[:N] + 1e-3 * W  # near-duplicates: bounds overlap
    # user 0 has k items far ahead of the rest (which the others score near 0): settled at once
    h[0], h[1:, 0], W[:k] = 0, 0, 0
    h[0, 0], W[:k, 0] = 3, 50
    ex = _exclude(B, N, 30, seed=6)
    orig = QG.RESCUE_CHUNK
    try:
        QG.RESCUE_CHUNK = 1024  # several loop trips at this size
        scores, ids, settled = run_head(W, b, h, k, k, ex)
    finally:
        QG.RESCUE_CHUNK = orig
    assert not settled.all() and settled.any()
    assert_fp32_topk(h, W, b, k, scores, ids, ex)


def test_ties_and_a_zero_table():
    h, W, b = _inputs(4, 2048, 16, bias=False)
    W[:] = W[:8].repeat(256, 1)
    scores, ids, _ = run_head(W, b, h, 40, 100)
    assert_fp32_topk(h, W, b, 40, scores, ids)
    Z = torch.zeros(500, 16)
    scores, ids, settled = run_head(Z, torch.zeros(500), h, 50, 60)
    assert (scores == 0).all() and all(len(set(r)) == 50 for r in ids.tolist())


def test_fewer_than_k_items_left():
    """Rows excluding all but 3..9 items: finite scores first, then -inf on excluded ids."""
    B, N, d, k = 4, 700, 12, 10
    h, W, b = _inputs(B, N, d, seed=8)
    g = torch.Generator().manual_seed(9)
    ex = torch.full((B, N), N)
    keep = []
    for r in range(B):
        perm = torch.randperm(N, generator=g)
        keep.append(perm[: 3 + 2 * r])
        ex[r, : N - len(keep[r])] = perm[len(keep[r]) :]
    scores, ids, settled = run_head(W, b, h, k, 64, ex)
    assert settled.all()
    assert_fp32_topk(h, W, b, k, scores, ids, ex)
    for r in range(B):
        n = len(keep[r])
        assert set(ids[r, :n].tolist()) == set(keep[r].tolist())


def test_half_precision_head():
    """An fp16 export: bounds from the fp16 rows, the re-rank in fp32 of the fp16 rows."""
    h, W, b = _inputs(5, 3000, 32, seed=10)
    W16 = W.half()
    scores, ids, _ = run_head(W16, b, h, 25, 200, _exclude(5, 3000, 8, 1))
    assert_fp32_topk(h, W16.float(), b, 25, scores, ids, _exclude(5, 3000, 8, 1))
    with pytest.raises(TypeError, match="fp32 or fp16"):
        QG.head_tables(W.bfloat16(), b)


def test_candidates_must_fit_the_catalog():
    _, W, b = _inputs(1, 100, 8)
    t = QG.head_tables(W, b)
    with pytest.raises(ValueError, match=r"candidates must be in \[k=10, N - 1 = 99\]"):
        QG.build_head(t, 10, 100)
    with pytest.raises(ValueError, match="candidates"):
        QG.build_head(t, 10, 5)


def test_calibration_picks_enough_candidates():
    """calibrate_candidates reads the debug bounds: with its M every probe row settles."""
    B, N, d, k = 32, 20_000, 32, 10
    h, W, b = _inputs(B, N, d, seed=12)
    *_, bounds = run_head(W, b, h, k, k, debug=True)
    kth = rank_cpu(h, W, b, k)[0][:, -1].numpy()
    res = QG.calibrate_candidates([bounds], [kth], k, N)
    assert k <= res["needed_max"] <= res["candidates"] <= N - 1
    _, _, settled = run_head(W, b, h, k, res["candidates"])
    assert settled.all()
