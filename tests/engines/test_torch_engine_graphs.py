"""The PyTorch engine's bucketed whole-request path (static buffers, CUDA graphs) against its eager
path. On CPU the bucketed path runs eagerly (``graph="static"``): the same function of static
tensors a CUDA graph captures, so padding, buckets and packing are checked here; ``gpu`` tests
replay the captured graphs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lite_export.catalog import ItemCatalog
from lite_export.engines.torch_engine import TorchEngine, encode, history_buckets
from lite_export.kernels import dispatch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (NVIDIA)")
N_ITEMS, MAX_HIST = 300, 40


@pytest.fixture(scope="module")
def model():
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    cat = ItemCatalog(
        ids=[f"i{i}" for i in range(N_ITEMS)], titles=[f"t{i}" for i in range(N_ITEMS)]
    )
    cfg = LiteConfig.from_name("sasrec", d_model=32, d_ff=64, max_history=MAX_HIST)
    return LiteLLM4Rec.build(cfg, cat, seed=0).eval()


def _histories(B: int, lengths, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [f"i{j}" for j in rng.integers(0, N_ITEMS, lengths[r % len(lengths)])] for r in range(B)
    ]


# history lengths: empty, below the smallest bucket, on a bucket, between buckets, max_history,
# and longer than max_history (truncated; its exclusion list is wider than any history bucket)
LENGTHS = [0, 3, 8, 13, 40, 70]


def _assert_same(a, b, what):
    assert a.ids == b.ids, what
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5, err_msg=str(what))
    assert a.fallback == b.fallback


@pytest.mark.parametrize("B", [1, 3, 5, 8, 11])
def test_static_buckets_give_the_eager_results(model, B):
    eager = TorchEngine.from_model(model, k=20, device="cpu", graph="off")
    static = TorchEngine.from_model(
        model, k=20, device="cpu", graph="static", batch_buckets=(1, 4, 8), history_buckets=(8, 16)
    )
    assert static.history_buckets == (8, 16, MAX_HIST)
    for seed, lengths in enumerate([LENGTHS, [5], [40], [2, 17]]):
        hists = _histories(B, lengths, seed)
        for exclude_seen in (True, False):
            for k in (5, 20):
                what = (B, lengths, exclude_seen, k)
                _assert_same(
                    static.recommend(hists, k, exclude_seen),
                    eager.recommend(hists, k, exclude_seen),
                    what,
                )
    # B = 11 runs as 8 + 3; B = 5 pads to 8 and reuses the rows the earlier calls left there
    keys = static._graphs.keys()
    assert all(b in (1, 4, 8) and lb in static.history_buckets for b, lb, _, _ in keys), keys
    if len(LENGTHS) <= B:  # the 70-item history's exclusion list has its own bucket
        assert any(hb == 128 for _, _, hb, _ in keys), keys


def test_the_engine_agrees_with_the_model(model):
    hists = _histories(9, LENGTHS, 5)
    ref = model.recommend(hists, k=20)
    for mode in ("off", "static"):
        top = TorchEngine.from_model(model, k=20, device="cpu", graph=mode).recommend(hists, k=20)
        _assert_same(top, ref, mode)


def test_encode_with_a_4d_mask_equals_the_frozen_encoder(model):
    from lite_export.exporters.onnx import FrozenUserEncoder

    enc = FrozenUserEncoder.from_model(model, torch.float32)
    ids = torch.randint(0, N_ITEMS, (4, 12))
    ids[0, :5] = N_ITEMS  # left padding
    ids[1, :11] = N_ITEMS
    with torch.inference_mode():
        torch.testing.assert_close(encode(enc, ids), enc(ids), rtol=1e-5, atol=1e-5)
        # left-padding further (a longer bucket) changes nothing
        wider = torch.cat([torch.full((4, 20), N_ITEMS), ids], dim=1)
        torch.testing.assert_close(encode(enc, wider), enc(ids), rtol=1e-5, atol=1e-5)


def test_buckets_and_graph_cache_size(model, caplog):
    assert history_buckets(200) == (8, 16, 32, 64, 128, 200)
    assert history_buckets(50) == (8, 16, 32, 50)
    eng = TorchEngine.from_model(model, k=20, device="cpu", graph="static")
    # every (batch, history) bucket with and without exclusion, twice (a second k, long lists)
    assert eng._graphs.capacity == 9 * len(history_buckets(MAX_HIST)) * 4
    assert eng.bucket_key(3, 13, 13, 10) == (4, 16, 16, 16)
    assert eng.bucket_key(3, 13, 0, 10) == (4, 16, 0, 16)
    assert eng.bucket_key(3, 40, 70, 20) == (4, 40, 128, 20)  # k bucket capped at max_k
    small = TorchEngine.from_model(model, k=20, device="cpu", graph="static", graph_cache=2)
    hists = _histories(2, [5], 1)
    with caplog.at_level(logging.WARNING, logger="lite_export.kernels"):
        for k in (3, 5, 10, 3):  # k buckets 4, 8, 16, 4: the third evicts, the fourth recaptures
            small.recommend(hists, k)
    assert "torch engine request graphs (cpu): cache full at 2 graphs, evicted (2, 8, 8, 4)" in (
        caplog.text
    )
    assert "pass graph_cache=N" in caplog.text and small._graphs.evictions == 2


def test_options_are_checked(model):
    with pytest.raises(ValueError, match="graph='capture' needs a CUDA device.*graph='static'"):
        TorchEngine.from_model(model, device="cpu", graph="capture")
    with pytest.raises(ValueError, match="graph must be one of"):
        TorchEngine.from_model(model, device="cpu", graph="cudagraph")
    with pytest.raises(ValueError, match="ranker must be one of"):
        TorchEngine.from_model(model, device="cpu", ranker="faiss")


def test_unsettled_rows_are_re_ranked(model, monkeypatch):
    """A row the filter path could not settle (ok = False) is re-ranked from the graph's h."""
    import lite_export.kernels as kernels

    real = kernels.rank_static

    def unsettle_row_1(h, W, b, k, ex, method):
        scores, ids, ok = real(h, W, b, k, ex, method)
        if h.shape[0] > 1:
            ok = ok.clone()
            ok[1] = False
            ids = ids.clone()
            ids[1] = 0  # garbage the engine must not return
        return scores, ids, ok

    monkeypatch.setattr(kernels, "rank_static", unsettle_row_1)
    hists = _histories(3, [6, 9], 2)
    static = TorchEngine.from_model(model, k=20, device="cpu", graph="static")
    eager = TorchEngine.from_model(model, k=20, device="cpu", graph="off")
    _assert_same(static.recommend(hists, 10), eager.recommend(hists, 10), "unsettled")


def test_requests_run_under_the_engines_device_guard(model, monkeypatch):
    seen = []
    real = dispatch.device_guard
    monkeypatch.setattr(dispatch, "device_guard", lambda t: seen.append(t) or real(t))
    eng = TorchEngine.from_model(model, k=20, device="cpu", graph="static")
    seen.clear()
    eng.recommend(_histories(2, [4], 0), 5)
    assert seen and seen[0] == eng.device


# ---- GPU only ------------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("ranker", ["auto", "torch", "exact", "filter"])
def test_gpu_graph_replays_match_eager(model, ranker):
    eager = TorchEngine.from_model(model, k=20, device="cuda", graph="off", ranker=ranker)
    graph = TorchEngine.from_model(
        model, k=20, device="cuda", graph="capture", ranker=ranker, batch_buckets=(1, 4, 8, 64)
    )
    assert graph.graph_mode == "capture"
    for B in (1, 3, 8, 11, 64):
        for seed, lengths in enumerate([LENGTHS, [40], [2, 17]]):
            hists = _histories(B, lengths, seed + B)
            for exclude_seen in (True, False):
                for _ in range(2):  # capture, then replay with the same and other data
                    _assert_same(
                        graph.recommend(hists, 10, exclude_seen),
                        eager.recommend(hists, 10, exclude_seen),
                        (ranker, B, lengths, exclude_seen),
                    )


@pytest.mark.gpu
@needs_cuda
def test_gpu_one_copy_each_way_per_call(model):
    """After capture, a call is one host-to-device copy, one replay, one device-to-host copy."""
    from torch.profiler import ProfilerActivity, profile

    eng = TorchEngine.from_model(model, k=20, device="cuda", graph="capture")
    hists = _histories(4, [30], 3)
    eng.recommend(hists, 10)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        eng.recommend(hists, 10)
    names = [e.name for e in prof.events()]
    if not names:
        pytest.skip("the CUDA profiler recorded nothing here (no CUPTI)")
    h2d = [n for n in names if "Memcpy HtoD" in n]
    d2h = [n for n in names if "Memcpy DtoH" in n]
    assert len(h2d) == 1 and len(d2h) == 1, (h2d, d2h, names[:40])


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_gpu_engine_on_the_second_gpu(model):
    torch.cuda.set_device(0)
    eng = TorchEngine.from_model(model, k=20, device="cuda:1", graph="capture")
    ref = TorchEngine.from_model(model, k=20, device="cpu", graph="off")
    hists = _histories(5, LENGTHS, 9)
    for _ in range(2):
        _assert_same(eng.recommend(hists, 10), ref.recommend(hists, 10), "cuda:1")
    assert eng.weight.device == torch.device("cuda", 1) and torch.cuda.current_device() == 0


@pytest.mark.gpu
@needs_cuda
def test_gpu_graph_cache_eviction_and_recapture(model):
    eng = TorchEngine.from_model(model, k=20, device="cuda", graph="capture", graph_cache=2)
    ref = TorchEngine.from_model(model, k=20, device="cuda", graph="off")
    for B in (1, 3, 9, 1, 3):
        hists = _histories(B, [12], B)
        _assert_same(eng.recommend(hists, 10), ref.recommend(hists, 10), B)
    assert eng._graphs.evictions >= 3 and len(eng._graphs) == 2
