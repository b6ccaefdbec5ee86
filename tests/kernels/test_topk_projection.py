"""The fused Triton ranking kernel against the torch reference.

On CPU these run under ``TRITON_INTERPRET=1`` (set by conftest.py) with tiny shapes; on a CUDA
machine the same tests launch the compiled kernel. ``@pytest.mark.gpu`` tests need CUDA.
"""

from __future__ import annotations

import os

import pytest
import torch
from kernel_checks import TOLERANCES, assert_topk_valid, full_scores

tp = pytest.importorskip("lite_export.kernels.fused", reason="needs triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRETED else "cpu"
needs_cuda = pytest.mark.skipif(
    DEVICE != "cuda", reason="needs a CUDA GPU (NVIDIA, compiled Triton; not the interpreter)"
)


def _inputs(B, N, d, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g).to(dtype).to(DEVICE)
    W = torch.randn(N, d, generator=g).to(dtype).to(DEVICE)
    b = torch.randn(N, generator=g).to(dtype).to(DEVICE) if bias else None
    return h, W, b


def _integer_inputs(B, N, d, seed=0):
    """fp32 h [B, d] and W [N, d] with small integer values: every dot product is exact, so
    duplicated rows tie exactly (random floats tie only up to the accumulation order, which
    differs between tile positions in the interpreter's BLAS)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(-3, 4, (B, d), generator=g).float().to(DEVICE)
    W = torch.randint(-3, 4, (N, d), generator=g).float().to(DEVICE)
    return h, W


def _check(h, W, b, k, exclude=None, **kw):
    scores, ids = tp.topk_projection(h, W, b, k, exclude, **kw)
    ex_list = exclude.tolist() if isinstance(exclude, torch.Tensor) else exclude
    assert_topk_valid(scores, ids, full_scores(h, W, b, ex_list), k, W.dtype, ex_list)
    return scores, ids


# B=1/2 take the CUDA-core path; N is never a multiple of the tile; k=1, k not a power of two,
# k = N, k > tile (padded merge), d < 16 and d > one d-block.
SHAPES = [
    # (B, N, d, k)
    (1, 100, 16, 1),
    (2, 257, 33, 7),
    (5, 300, 70, 10),
    (16, 129, 8, 100),
    (19, 77, 24, 77),
    (40, 200, 32, 13),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("B", "N", "d", "k"), SHAPES)
def test_matches_reference(B, N, d, k, dtype):
    h, W, b = _inputs(B, N, d, dtype, bias=True, seed=B * 1000 + N)
    _check(h, W, b, k)


@pytest.mark.parametrize(
    ("B", "N", "d", "k"), [(1, 100, 16, 3), (16, 129, 8, 100), (40, 200, 32, 13)]
)
def test_without_bias(B, N, d, k):
    h, W, _ = _inputs(B, N, d, torch.float32, bias=False)
    _check(h, W, None, k)


def test_negative_and_infinite_scores_keep_their_order():
    """Negative scores, -0.0/+0.0 and -inf bias exercise the order-preserving float->int key."""
    h, W, b = _inputs(4, 150, 16, torch.float32)
    b = b * 100 - 300  # every score negative
    b[::7] = float("-inf")
    b[3] = 0.0
    W[3] = 0.0
    _check(h, W, b, 20)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exclusion_never_returns_excluded_items(dtype):
    B, N, d, k = 5, 240, 16, 12
    h, W, b = _inputs(B, N, d, dtype)
    full = full_scores(h, W, b, None)
    # Exclude each row's current top 15 plus padding (-1, N+3) and duplicates, in random order.
    top = torch.topk(full, 15, dim=1).indices
    ex = torch.cat([top, torch.full((B, 2), -1), torch.full((B, 1), N + 3), top[:, :2]], dim=1)
    ex = ex[:, torch.randperm(ex.shape[1])].to(DEVICE)
    _check(h, W, b, k, ex)


def test_all_but_k_excluded_returns_exactly_the_rest():
    B, N, d, k = 3, 90, 16, 6
    h, W, b = _inputs(B, N, d, torch.float32)
    keep = [sorted(torch.randperm(N)[:k].tolist()) for _ in range(B)]
    exclude = [[i for i in range(N) if i not in set(row)] for row in keep]
    scores, ids = _check(h, W, b, k, exclude)
    assert [sorted(r) for r in ids.tolist()] == keep
    assert bool(torch.isfinite(scores).all())


def test_fewer_than_k_left_gives_minus_inf_tail():
    B, N, d, k = 2, 40, 16, 10
    h, W, b = _inputs(B, N, d, torch.float32)
    exclude = torch.arange(4, N).repeat(B, 1).to(torch.int32).to(DEVICE)  # only 0..3 remain
    scores, ids = _check(h, W, b, k, exclude)
    assert bool(torch.isfinite(scores[:, :4]).all())
    assert bool(torch.isneginf(scores[:, 4:]).all())
    assert [sorted(r[:4]) for r in ids.tolist()] == [[0, 1, 2, 3]] * B


def test_ties_prefer_lower_ids():
    """Duplicated W rows give exact ties: ids stay valid and distinct, lower ids first.

    Integer-valued inputs make every dot product exact in fp32, so duplicated rows tie exactly
    whatever order a tile (or the interpreter's BLAS) accumulates in."""
    B, N, d, k = 3, 130, 16, 9
    h, W = _integer_inputs(B, 10, d)
    W = W.repeat(N // 10, 1)
    # every score appears at least 13 times
    scores, ids = _check(h, W, None, k)
    for r in range(B):
        best = torch.argmax(full_scores(h, W, None, None)[r]).item()  # the first of the maxima
        assert ids[r, 0].item() == best, "among equal scores the lowest id must come first"
    h2, W2, _ = _inputs(2, 100, 16, torch.float32, bias=False)
    W2[:] = W2[0]
    _, ids2 = _check(h2, W2, None, 5)
    assert ids2.tolist() == [[0, 1, 2, 3, 4]] * 2


@pytest.mark.parametrize("chunks", [1, 3, 1000])
def test_chunk_counts(chunks):
    """One chunk, an uneven split and one tile per chunk give the same answer."""
    h, W, b = _inputs(4, 333, 24, torch.float32)
    _check(h, W, b, 17, chunks=chunks)


def test_always_merge_config_matches():
    h, W, b = _inputs(17, 200, 40, torch.float32)
    cfg = tp.heuristic_config(17, 40, 10, torch.float32, tp._arch(h.device))
    from dataclasses import replace

    _check(h, W, b, 10, config=replace(cfg, skip=False))


@pytest.mark.parametrize(("B", "k"), [(1, 600), (3, 600)])
def test_large_k_cuda_core_path(B, k):
    h, W, b = _inputs(B, 700, 16, torch.float32)
    _check(h, W, b, k)


def test_out_of_resources_falls_back_to_small_tiles(monkeypatch):
    """A GPU smaller than the tables assume gets a warning and a small-tile config, same answer."""
    from triton.runtime.errors import OutOfResources

    real = tp._launch

    def launch(h, W, b, k, ex, plan, bound=None, quant=None):
        if plan.config.reason != "OutOfResources fallback":
            raise OutOfResources(300_000, 232_448, "shared memory")
        return real(h, W, b, k, ex, plan, bound, quant)

    monkeypatch.setattr(tp, "_launch", launch)
    monkeypatch.setattr(tp.torch.cuda, "get_device_name", lambda *a: "small GPU")
    h, W, b = _inputs(5, 300, 40, torch.float32)
    with pytest.warns(RuntimeWarning, match="does not fit this GPU"):
        _check(h, W, b, 10)
    cfg = tp.heuristic_config(5, 40, 10, torch.float32, tp._arch(h.device))
    with pytest.raises(OutOfResources):  # a forced config is not second-guessed
        tp.topk_projection(h, W, b, 10, config=cfg)


def test_empty_batch():
    h, W, b = _inputs(0, 50, 8, torch.float32)
    scores, ids = tp.topk_projection(h, W, b, 5)
    assert scores.shape == (0, 5) and ids.shape == (0, 5) and ids.dtype == torch.int64


# ---- filter path (sampled bound + atomic append; exact path for rows it cannot settle) ----------


def _filter(h, W, b, k, exclude=None, stride=4, expect_fallback_rows=0):
    before = dict(tp.STATS)
    scores, ids = _check(h, W, b, k, exclude, method="filter", sample_stride=stride)
    assert tp.STATS["filter_calls"] == before["filter_calls"] + 1
    fell_back = tp.STATS["filter_fallback_rows"] - before["filter_fallback_rows"]
    assert fell_back == expect_fallback_rows, f"{fell_back} rows fell back to the exact path"
    return scores, ids


FILTER_SHAPES = [
    # (B, N, d, k): B=1 (15 padded rows), B not a multiple of 16, several row blocks, k=1,
    # k not a power of two, k > the sampled rank (16), N not a multiple of the tile.
    (1, 1000, 16, 1),
    (5, 777, 40, 10),
    (17, 1500, 24, 37),
    (40, 900, 8, 5),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("B", "N", "d", "k"), FILTER_SHAPES)
def test_filter_path_matches_reference(B, N, d, k, dtype):
    h, W, b = _inputs(B, N, d, dtype, seed=N + k)
    _filter(h, W, b, k)


def test_filter_path_without_bias_and_with_exclusion():
    B, N, d, k = 6, 1200, 16, 20
    h, W, _ = _inputs(B, N, d, torch.float32, bias=False)
    full = full_scores(h, W, None, None)
    top = torch.topk(full, 25, dim=1).indices  # the current winners are all excluded
    ex = torch.cat([top, torch.full((B, 3), -1)], dim=1).to(DEVICE)
    _filter(h, W, None, k, ex)


def test_filter_path_hands_unsettled_rows_to_the_exact_path():
    """Bound too high (sampled items win): fewer than k pass -> exact path, same answer."""
    B, N, d, k, stride = 4, 1000, 16, 30, 8
    h, W, b = _inputs(B, N, d, torch.float32)
    b[::stride] += 100.0  # only the 16 best sampled items clear the bound, k = 30
    _filter(h, W, b, k, stride=stride, expect_fallback_rows=B)


def test_filter_path_overflow_falls_back_and_keeps_tie_order():
    """Every score ties: all N items pass, the buffer overflows -> exact path, lowest ids first."""
    B, N, d, k = 3, 5000, 16, 8
    h, W = _integer_inputs(B, 1, d)
    W = W.repeat(N, 1)  # integer values: the ties are exact whatever the accumulation order
    _, ids = _filter(h, W, None, k, stride=16, expect_fallback_rows=B)
    assert ids.tolist() == [list(range(k))] * B


def test_filter_path_fewer_than_k_left_gives_minus_inf_tail():
    B, N, d, k = 2, 600, 16, 10
    h, W, b = _inputs(B, N, d, torch.float32)
    exclude = torch.arange(4, N).repeat(B, 1).to(DEVICE)  # only 0..3 remain
    scores, ids = _filter(h, W, b, k, exclude, expect_fallback_rows=B)
    assert bool(torch.isneginf(scores[:, 4:]).all())
    assert [sorted(r[:4]) for r in ids.tolist()] == [[0, 1, 2, 3]] * B


def test_both_paths_agree_exactly_including_nan():
    """NaN scores rank first on both paths (as in torch.topk); ties break the same way."""
    B, N, d, k = 3, 2000, 16, 12
    h, W, b = _inputs(B, N, d, torch.float32)
    W[1234] = float("nan")
    W[100:110] = W[99]  # ties
    se, ie = tp.topk_projection(h, W, b, k, method="exact")
    sf, i_f = tp.topk_projection(h, W, b, k, method="filter", sample_stride=4)
    assert torch.equal(ie, i_f)
    assert ie[:, 0].tolist() == [1234] * B
    assert torch.equal(se.isnan(), sf.isnan()) and torch.equal(se[~se.isnan()], sf[~sf.isnan()])


def test_auto_method_picks_filter_for_large_catalogs():
    assert tp.FILTER_MIN_N <= 1 << 16
    h, W, b = _inputs(1, 50, 8, torch.float32)
    before = tp.STATS["exact_calls"]
    tp.topk_projection(h, W, b, 3)
    assert tp.STATS["exact_calls"] == before + 1  # N < FILTER_MIN_N: exact
    with pytest.raises(ValueError, match=r"method must be one of \('exact', 'filter'\)"):
        tp.topk_projection(h, W, b, 3, method="fast")


def test_sample_bound_capacity_and_rank():
    h, W, b = _inputs(2, 100_000, 8, torch.float32)
    thr, cap = tp.sample_bound(h, W, b, 10)
    s = (h @ W[::64].T + b[::64]).float()  # 1563 sampled items per row
    per = s.shape[1] // 64
    group_max = s[:, : 64 * per].reshape(2, 64, per).amax(dim=2)
    want = torch.topk(group_max, 16, dim=1).values[:, -1]  # 16th best of 64 group maxima
    assert torch.allclose(thr, want, atol=1e-5, rtol=1e-5), (thr, want)
    # never above the 16th best sample, so at least as many items pass as with it
    assert bool((thr <= torch.topk(s, 16, dim=1).values[:, -1] + 1e-5).all())
    assert cap == 4096  # next_pow2(3 * 1.25 * 16 * 64 + 10): ~1.3k expected per row, 3x headroom
    passed = ((h @ W.T + b) >= thr[:, None]).sum(1)
    assert bool(((passed >= 10) & (passed <= cap)).all()), passed
    # a small sample (S < 8j) takes the j-th best sample directly
    h, W, b = _inputs(2, 4000, 8, torch.float32)
    thr, _ = tp.sample_bound(h, W, b, 10)
    s = (h @ W[::62].T + b[::62]).float()  # stride min(64, 4000 // 64) = 62: 65 samples
    assert torch.allclose(thr, torch.topk(s, 16, dim=1).values[:, -1], atol=1e-5, rtol=1e-5)


# ---- input checks ------------------------------------------------------------------------------


def _ok():
    return _inputs(2, 50, 8, torch.float32)


@pytest.mark.parametrize(
    ("mutate", "exc", "match"),
    [
        (lambda h, W, b: (h[0], W, b, 5), ValueError, r"h must be 2-D \[B, d\], got shape \(8,\)"),
        (lambda h, W, b: (h, W[:, :4], b, 5), ValueError, r"d=8.*d=4.*must match"),
        (lambda h, W, b: (h, W, b[:10], 5), ValueError, r"b must be \[N=50\].*\(10,\)"),
        (
            lambda h, W, b: (h.double(), W.double(), b, 5),
            TypeError,
            r"float32, float16 or bfloat16",
        ),
        (lambda h, W, b: (h, W.half(), b, 5), TypeError, r"same dtype"),
        (lambda h, W, b: (h, W, b, 0), ValueError, r"k must be in \[1, min\(N=50, 1024\)\].*k=0"),
        (lambda h, W, b: (h, W, b, 51), ValueError, r"k=51"),
        (lambda h, W, b: (h, W, b, 2.0), TypeError, r"k must be an int"),
        (lambda h, W, b: ([[1.0]], W, b, 5), TypeError, r"h must be a torch.Tensor, got list"),
    ],
)
def test_bad_inputs_raise_clear_errors(mutate, exc, match):
    h, W, b = _ok()
    with pytest.raises(exc, match=match):
        tp.topk_projection(*mutate(h, W, b))


def test_k_above_1024_is_rejected():
    h, W, b = _inputs(1, 2000, 8, torch.float32)
    with pytest.raises(ValueError, match=r"min\(N=2000, 1024\)\] = \[1, 1024\], got k=1025"):
        tp.topk_projection(h, W, b, 1025)


@pytest.mark.parametrize(
    ("exclude", "exc", "match"),
    [
        (torch.zeros(3, 4, dtype=torch.int64), ValueError, r"exclude must be \[B=2, H\]"),
        (torch.zeros(2, 4), TypeError, r"exclude must be int32 or int64"),
        ([[1, 2]], ValueError, r"exclude has 1 rows but h has B=2"),
        ("abc", TypeError, r"exclude must be None, an int tensor"),
    ],
)
def test_bad_exclude_raises(exclude, exc, match):
    h, W, b = _ok()
    if isinstance(exclude, torch.Tensor):
        exclude = exclude.to(DEVICE)
    with pytest.raises(exc, match=match):
        tp.topk_projection(h, W, b, 5, exclude)


@pytest.mark.skipif(INTERPRETED is False and DEVICE == "cuda", reason="CPU-only check")
def test_cpu_tensors_without_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    h, W, b = _inputs(1, 20, 8, torch.float32)
    with pytest.raises(ValueError, match=r"runs on CUDA tensors, got tensors on cpu.*rank_cpu"):
        tp.topk_projection(h.cpu(), W.cpu(), b.cpu(), 3)


# ---- launch planning (pure) --------------------------------------------------------------------


def test_plan_fills_the_chip_for_small_batches():
    cfg = tp.heuristic_config(1, 1024, 100, torch.bfloat16, "hopper")
    plan = tp.plan_launch(1, 1_000_000, 1024, 100, cfg, num_sms=132)
    assert plan.chunks >= 132, plan
    assert plan.chunks * plan.tiles_per_chunk >= plan.n_tiles
    assert (plan.chunks - 1) * plan.tiles_per_chunk < plan.n_tiles  # no empty chunk


def test_plan_uses_fewer_bigger_chunks_for_large_k():
    cfg = tp.heuristic_config(16, 64, 1024, torch.bfloat16, "hopper")
    small = tp.plan_launch(16, 200_000, 64, 1024, cfg, num_sms=132)
    assert small.tiles_per_chunk * small.block_n >= 4 * 1024, small
    assert small.chunks * small.tiles_per_chunk >= small.n_tiles


def test_configs_have_reasons_for_each_arch():
    for arch in ("hopper", "ampere", "interpreter"):
        for method in tp.METHODS:
            cfgs = tp.get_autotune_configs(arch, method)
            assert cfgs and all(c.reason for c in cfgs)
            for B in (1, 2, 3, 16, 17, 33, 256):
                for k in (1, 10, 100, 200, 1024):
                    for dtype in (torch.bfloat16, torch.float32):
                        for d in (64, 1024):
                            cfg = tp.heuristic_config(B, d, k, dtype, arch, method)
                            assert any(c.key()[1:] == cfg.key()[1:] for c in cfgs)
                            assert cfg.block_b == tp.block_b_for(B, k, method)
                            assert arch == "interpreter" or tp._fits(cfg, B, k, method)
    with pytest.raises(ValueError, match="arch must be one of"):
        tp.get_autotune_configs("volta")


# ---- GPU only ------------------------------------------------------------------------------------


GPU_CASES = [
    # (B, N, d, k, dtype): compiled paths for every B bucket, k=1 (running max), k > 128 (8 warps,
    # padded merge), k = 1024 (CUDA-core path), fp32 (IEEE dot), fp16, d from 64 to 4096.
    (1, 300_001, 1024, 100, torch.bfloat16),
    (16, 1_000_003, 64, 10, torch.bfloat16),
    (256, 100_003, 256, 100, torch.bfloat16),
    (7, 50_000, 4096, 1024, torch.bfloat16),
    (64, 65_537, 128, 1, torch.bfloat16),
    (16, 200_003, 256, 100, torch.float16),
    (3, 100_003, 128, 37, torch.float16),
    (16, 100_003, 64, 100, torch.float32),
    (1, 100_003, 1024, 10, torch.float32),
    (40, 50_001, 96, 300, torch.float32),
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["auto", "exact"])
@pytest.mark.parametrize(("B", "N", "d", "k", "dtype"), GPU_CASES)
def test_gpu_matches_reference(B, N, d, k, dtype, method):
    h, W, b = _inputs(B, N, d, dtype, seed=N)
    before = dict(tp.STATS)
    _check(h, W, b, k, method=method)
    if method == "auto":  # every GPU case is >= FILTER_MIN_N: the filter path, settled in one go
        assert tp.STATS["filter_calls"] == before["filter_calls"] + 1
        assert tp.STATS["filter_fallback_rows"] == before["filter_fallback_rows"]


@pytest.mark.gpu
@needs_cuda
def test_gpu_cuda_graph_replays_match_eager_runs():
    """Graphs padded to power-of-two batches and exclusion widths; in-place W updates show."""
    N, d, k = 100_003, 64, 20
    h, W, b = _inputs(16, N, d, torch.bfloat16)
    for B, H in [(1, 0), (3, 5), (4, 7), (16, 33), (3, 2)]:  # (3, 2) replays the (3, 5) graph
        ex = torch.randint(0, N, (B, H), device=DEVICE) if H else None
        got = tp.topk_projection(h[:B], W, b, k, ex)
        want = tp.topk_projection(h[:B], W, b, k, ex, cuda_graph=False)
        assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0]), (B, H)
        _check(h[:B], W, b, k, ex)
    W[7] = 50.0  # in place: the captured graph must see it
    _, ids = tp.topk_projection(h[:2], W, b, k)
    assert ids[:, 0].tolist() == [7, 7] or bool((h[:2].float() @ W[7].float() < 0).any())


@pytest.mark.gpu
@needs_cuda
def test_gpu_filter_overflow_falls_back():
    B, N, d, k = 4, 200_003, 64, 16
    h, W, _ = _inputs(B, N, d, torch.bfloat16, bias=False)
    W[:] = W[0]  # every score ties: all items pass the bound
    before = tp.STATS["filter_fallback_rows"]
    _, ids = _check(h, W, None, k)
    assert tp.STATS["filter_fallback_rows"] == before + B
    assert ids.tolist() == [list(range(k))] * B


@pytest.mark.gpu
@needs_cuda
def test_gpu_rank_dispatches_cuda_tensors_to_the_kernel(monkeypatch):
    from lite_export import kernels

    h, W, b = _inputs(4, 10_000, 64, torch.bfloat16)
    calls = []
    real = tp.topk_projection
    monkeypatch.setattr(tp, "topk_projection", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    scores, ids = kernels.rank(h, W, b, 10, method="filter")
    assert calls and scores.device.type == "cuda" and ids.device.type == "cuda"
    # "auto" runs the kernel exactly when the rank table picks one of its paths for the shape
    calls.clear()
    kernels.rank(h, W, b, 10)
    fused = kernels.resolve_method("auto", h, W, 10) in ("filter", "exact")
    assert bool(calls) == fused


@pytest.mark.gpu
@needs_cuda
def test_gpu_tune_caches_the_fastest_config():
    h, W, b = _inputs(16, 100_003, 64, torch.bfloat16)
    pool = [c for c in tp.get_autotune_configs("hopper") if c.block_b == 16][:2]
    best, times = tp.tune_topk_projection(h, W, b, 10, configs=pool, rep_ms=20)
    assert best in pool and set(times) == {c.short() for c in pool}
    _check(h, W, b, 10)  # now runs the cached config


@pytest.mark.gpu
@needs_cuda
def test_gpu_exclusion_large_catalog():
    B, N, d, k = 8, 2_000_003, 64, 50
    h, W, b = _inputs(B, N, d, torch.bfloat16)
    full = full_scores(h, W, b, None)
    top = torch.topk(full, 60, dim=1).indices
    ex = torch.cat([top, torch.full((B, 5), -1)], dim=1)
    _check(h, W, b, k, ex.to(DEVICE))


@pytest.mark.gpu
@needs_cuda
def test_gpu_ids_beyond_2_pow_24_are_exact():
    """fp32 cannot hold every int above 2**24; ids travel as ints, so planted winners come back."""
    N, d, k = 2**24 + 1000, 16, 4
    g = torch.Generator(device="cuda").manual_seed(0)
    W = torch.rand(N, d, device="cuda", generator=g, dtype=torch.float32).to(torch.bfloat16)
    h = torch.ones(2, d, device="cuda", dtype=torch.bfloat16)
    planted = [N - 1, N - 2, 2**24 + 1, 2**24 - 1]
    for rank_, item in enumerate(planted):
        W[item] = 100.0 - rank_
    _, ids = tp.topk_projection(h, W, None, k)
    assert ids.tolist() == [planted, planted]


@pytest.mark.gpu
@needs_cuda
def test_gpu_catalog_of_2_pow_31_items():
    """N = 2**31 (the limit): item offsets need int64 and ids the full 31 bits."""
    N, d = 2**31, 2
    free, _ = torch.cuda.mem_get_info()
    if free < 2 * N * d * 2 + (1 << 30):
        pytest.skip(
            f"needs ~{2 * N * d * 2 / 2**30:.0f} GiB free GPU memory, {free / 2**30:.0f} GiB free"
        )
    W = torch.empty(N, d, device="cuda", dtype=torch.bfloat16).uniform_(-1.0, 1.0)
    h = torch.ones(1, d, device="cuda", dtype=torch.bfloat16)
    planted = [N - 1, N - 3, 2**31 - 2**20, 5]
    for rank_, item in enumerate(planted):
        W[item] = 50.0 - rank_
    _, ids = tp.topk_projection(h, W, None, 4)
    assert ids[0].tolist() == planted
    del W
    torch.cuda.empty_cache()


@pytest.mark.gpu
@needs_cuda
def test_gpu_noncontiguous_inputs():
    h, W, b = _inputs(16, 50_001, 128, torch.bfloat16)
    Wt = W.T.contiguous().T  # same values, column-major
    _check(h[:, :], Wt, b, 32)


def test_tolerances_cover_every_dtype():
    assert set(TOLERANCES) == set(DTYPES)
