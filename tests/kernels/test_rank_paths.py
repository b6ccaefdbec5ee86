"""``kernels.rank``'s paths and dispatch, the static (capturable) form, the device guard, and the
bounded graph caches. On CPU the fused paths run under ``TRITON_INTERPRET=1`` (conftest.py)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import pytest
import torch
from kernel_checks import assert_topk_valid, full_scores

from lite_export import kernels
from lite_export.kernels import dispatch, rank, rank_static, rank_torch
from lite_export.kernels.graph_cache import GraphCache

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRETED else "cpu"
needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU (NVIDIA)")
FUSED = ("filter", "exact") if kernels.triton_available() else ()


def _inputs(B, N, d, dtype=torch.float32, bias=True, seed=0, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g).to(dtype).to(device)
    W = torch.randn(N, d, generator=g).to(dtype).to(device)
    b = torch.randn(N, generator=g).to(dtype).to(device) if bias else None
    return h, W, b


def _exclusion(B, N, H, seed=0, device=DEVICE):
    """[B, H] ids with padding (-1 and N), duplicates and one row that excludes nothing."""
    g = torch.Generator().manual_seed(seed)
    ex = torch.randint(0, N, (B, H), generator=g)
    ex[:, -2] = -1
    ex[:, -1] = N
    ex[:, 1] = ex[:, 0]
    ex[-1] = N  # a row of padding only
    return ex.to(device)


@pytest.mark.parametrize("method", ["torch", "cpu", *FUSED])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_every_path_matches_the_reference(method, dtype):
    B, N, d, k = 5, 700, 24, 13
    h, W, b = _inputs(B, N, d, dtype, seed=7)
    ex = _exclusion(B, N, 9)
    scores, ids = rank(h, W, b, k, ex, method=method)
    ex_list = ex.tolist()
    assert_topk_valid(scores, ids, full_scores(h, W, b, ex_list), k, dtype, ex_list)
    # list-of-lists exclusion and no exclusion
    lists = [[7, 8, 8], [], [699], [0, 1, 2], []]
    scores, ids = rank(h, W, None, k, lists, method=method)
    assert_topk_valid(scores, ids, full_scores(h, W, None, lists), k, dtype, lists)
    scores, ids = rank(h, W, b, k, None, method=method)
    assert_topk_valid(scores, ids, full_scores(h, W, b, None), k, dtype)


def test_rank_torch_in_item_chunks_equals_one_block():
    B, N, d, k = 3, 1000, 16, 20
    h, W, b = _inputs(B, N, d)
    ex = kernels.normalize_exclude(_exclusion(B, N, 30), B, N, h.device)
    one = kernels.reference._rank_torch(h, W, b, k, ex)
    chunked = kernels.reference._rank_torch(h, W, b, k, ex, block_bytes=4 * B * 64)  # 64 items
    assert torch.equal(one[1], chunked[1]) and torch.equal(one[0], chunked[0])
    assert_topk_valid(*chunked, full_scores(h, W, b, ex.tolist()), k, torch.float32, ex.tolist())


def test_rank_torch_all_but_few_excluded_gives_minus_inf_tail():
    B, N, d, k = 2, 40, 8, 10
    h, W, b = _inputs(B, N, d)
    ex = torch.arange(4, N).repeat(B, 1).to(DEVICE)
    scores, ids = rank_torch(h, W, b, k, ex)
    assert bool(torch.isfinite(scores[:, :4]).all()) and bool(torch.isneginf(scores[:, 4:]).all())
    assert [sorted(r[:4]) for r in ids.tolist()] == [[0, 1, 2, 3]] * B


def test_resolve_method_and_bad_method():
    h, W, _ = _inputs(2, 50, 8, device="cpu")
    assert kernels.resolve_method("auto", h, W, 5) == "cpu"
    assert kernels.resolve_method("torch", h, W, 5) == "torch"
    with pytest.raises(
        ValueError, match=r"method must be one of \('auto', 'filter'.*got 'fastest'"
    ):
        rank(h, W, None, 5, method="fastest")
    assert kernels.auto_path(4, 10_000, 64, 10, torch.float32, False, torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("method", ["torch", "cpu", *FUSED])
def test_rank_static_matches_rank(method):
    B, N, d, k = 4, 600, 16, 9
    h, W, b = _inputs(B, N, d, seed=3)
    ex = _exclusion(B, N, 6, seed=3)
    with dispatch.device_guard(h):
        scores, ids, ok = rank_static(h, W, b, k, ex, method)
    assert ok.dtype == torch.bool and bool(ok.all())
    want = rank(h, W, b, k, ex, method=method)
    assert torch.equal(ids, want[1]) and torch.allclose(scores, want[0])


@pytest.mark.skipif("filter" not in FUSED, reason="needs triton")
def test_rank_static_filter_reports_unsettled_rows_without_a_sync(monkeypatch):
    """Rows the filter path cannot settle come back with ok=False (no host sync, no fallback
    inside); re-ranking them exactly gives the reference answer."""
    from lite_export.kernels import fused

    B, N, d, k = 3, 1000, 16, 30
    h, W, b = _inputs(B, N, d)
    b[::15] += 100.0  # the sampled items (stride 15 at N=1000) win: only 16 clear the bound < k
    syncs = []
    for name in ("__bool__", "__int__", "__float__", "item", "tolist", "cpu", "numpy"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda t, *a, _r=real, _n=name, **kw: syncs.append(_n) or _r(t, *a, **kw),
        )
    with dispatch.device_guard(h):
        scores, ids, ok = rank_static(h, W, b, k, None, "filter")
    monkeypatch.undo()
    assert not syncs, f"rank_static read device values on the host: {syncs}"
    assert ok.tolist() == [False] * B
    s2, i2 = rank(h, W, b, k, None, method="exact")
    assert_topk_valid(s2, i2, full_scores(h, W, b, None), k, torch.float32)
    assert fused.STATS["filter_calls"] > 0


# ---- the device guard -------------------------------------------------------------------------


@pytest.mark.skipif(not FUSED, reason="needs triton")
@pytest.mark.parametrize("method", ["filter", "exact", "torch"])
def test_every_launch_runs_under_the_guard_of_the_tensors_device(monkeypatch, method):
    """Each Triton launch happens inside ``device_guard(h)``, with the guard built from ``h`` --
    the CPU stand-in for "a tensor on cuda:1 while cuda:0 is current"."""
    from lite_export.kernels import fused

    entered, depth = [], [0]

    @contextmanager
    def guard(t):
        entered.append(getattr(t, "device", t))
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1

    real_launch = fused._launch

    def launch(*args, **kw):
        assert depth[0] > 0, "a Triton launch outside the device guard"
        return real_launch(*args, **kw)

    monkeypatch.setattr(dispatch, "device_guard", guard)
    monkeypatch.setattr(fused, "_launch", launch)
    h, W, b = _inputs(3, 500, 16)
    rank(h, W, b, 5, [[1], [], [2, 3]], method=method)
    assert entered and all(dev == h.device for dev in entered), entered
    if method != "torch":
        entered.clear()
        fused.topk_projection(h, W, b, 5, method=method)
        assert entered == [h.device]


# ---- graph caches -------------------------------------------------------------------------------


def test_graph_cache_is_lru_bounded_and_logs_evictions(caplog):
    cache = GraphCache(2, "test graphs", hint="raise it", limit=3)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    with caplog.at_level(logging.WARNING, logger="lite_export.kernels"):
        cache.put("c", 3)
    assert cache.keys() == ["a", "c"] and cache.evictions == 1
    assert "test graphs: cache full at 2 graphs, evicted b (1 evictions so far)" in caplog.text
    assert "raise it" in caplog.text
    assert cache.get("b") is None and cache.get("b", "gone") == "gone"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lite_export.kernels"):
        assert cache.reserve(10) == 3  # bounded by the limit, and says so
        assert cache.reserve(1) == 3  # never shrinks
    assert "asked to keep 10 graphs, keeping 3" in caplog.text
    with caplog.at_level(logging.WARNING, logger="lite_export.kernels"):
        assert cache.resize(1) == 1
    assert cache.keys() == ["c"] and "evicted a" in caplog.text


@pytest.mark.skipif(not FUSED, reason="needs triton")
def test_kernel_graph_cache_is_sized_for_server_buckets():
    from lite_export.kernels import fused

    # batches 1..64 (7 power-of-two buckets) x exclusion widths none, 1..256 (10): 70 shapes
    assert fused.graph_buckets(64, 200) == 7 * 10
    assert fused._GRAPHS.capacity >= fused.graph_buckets(256, 1024) > 32
    before = fused._GRAPHS.capacity
    try:
        assert fused.reserve_graph_cache(256, 1024, tables=2) == 2 * fused.graph_buckets(256, 1024)
        assert fused.set_graph_cache_size(10**6) == fused.MAX_GRAPHS  # bounded
    finally:
        fused.set_graph_cache_size(before)


# ---- GPU only ------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape", [(1, 3706, 64, 10), (64, 3706, 64, 10), (256, 1_000_003, 64, 10)])
def test_gpu_auto_runs_the_table_choice_correctly(shape):
    B, N, d, k = shape
    h, W, b = _inputs(B, N, d, torch.bfloat16, seed=N)
    path = kernels.resolve_method("auto", h, W, k)
    table, _ = dispatch.table_for(h.device)
    assert path == table.choose(B, N, d, k, torch.bfloat16, False, dispatch.PATHS)
    scores, ids = rank(h, W, b, k)
    assert_topk_valid(scores, ids, full_scores(h, W, b, None), k, torch.bfloat16)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("method", ["auto", "filter", "exact", "torch"])
def test_gpu_tensor_on_another_device_than_the_current_one(method):
    """A tensor on cuda:1 while cuda:0 is current: the launch, the graph and the result are on
    cuda:1, and right."""
    torch.cuda.set_device(0)
    h, W, b = _inputs(4, 200_003, 64, torch.bfloat16, device="cuda:1")
    ex = _exclusion(4, 200_003, 20, device="cuda:1")
    for _ in range(2):  # the second call replays the filter path's graph
        scores, ids = rank(h, W, b, 10, ex, method=method)
        assert scores.device == ids.device == torch.device("cuda", 1)
        ex_list = ex.tolist()
        assert_topk_valid(scores, ids, full_scores(h, W, b, ex_list), 10, torch.bfloat16, ex_list)
    assert torch.cuda.current_device() == 0


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["torch", "exact", "filter"])
def test_gpu_rank_static_replays_from_a_cuda_graph(method):
    """rank_static captured inside a user's graph: replays equal eager calls on new inputs."""
    B, N, d, k = 8, 100_003, 64, 20
    h, W, b = _inputs(B, N, d, torch.bfloat16)
    ex = _exclusion(B, N, 16)
    static_h, static_ex = h.clone(), ex.clone()
    with dispatch.device_guard(h):
        rank_static(static_h, W, b, k, static_ex, method)  # warm-up: compile, probe
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = rank_static(static_h, W, b, k, static_ex, method)
    for seed in range(3):
        h2, _, _ = _inputs(B, N, d, torch.bfloat16, seed=100 + seed)
        ex2 = _exclusion(B, N, 16, seed=seed)
        static_h.copy_(h2)
        static_ex.copy_(ex2)
        g.replay()
        want = rank_static(h2, W, b, k, ex2, method)
        assert torch.equal(out[2], want[2])
        ok = out[2]
        assert torch.equal(out[1][ok], want[1][ok]) and torch.equal(out[0][ok], want[0][ok])


@pytest.mark.gpu
@needs_cuda
def test_gpu_tuner_on_a_tiny_grid_writes_the_table_auto_reads(tmp_path, monkeypatch):
    from lite_export.kernels.tuning import Grid, tune_and_save

    monkeypatch.setenv("LITE_EXPORT_CACHE", str(tmp_path))
    dispatch.use_table(None)
    grid = Grid(N=(50_000,), d=(64,), B=(1, 64), k=(10,), exclude=(0, 20))
    try:
        table, path = tune_and_save(grid, rep_ms=5, budget_s=60, log=None)
        assert path.parent == tmp_path / "rank_tables" and path.is_file()
        assert len(table.rows) == 4 and all("torch" in r.ms for r in table.rows)
        assert dispatch.table_for(torch.device("cuda"))[1] == str(path)
        h, W, b = _inputs(64, 50_000, 64, torch.bfloat16)
        best = next(r.best for r in table.rows if r.B == 64 and not r.exclude)
        assert kernels.resolve_method("auto", h, W, 10) == best
    finally:
        dispatch.use_table(None)
