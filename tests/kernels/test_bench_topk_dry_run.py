"""A CPU dry run of ``benchmarks/bench_topk_projection.py``'s GPU code (Triton's interpreter,
CUDA calls stubbed, tiny shapes), so the one GPU run does not die on a Python error: every
provider row, the ``auto`` rows and their comparison with the best other path are produced."""

from __future__ import annotations

import json
import os
import sys
import time
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="CPU dry run (interpreter)"
)


@pytest.fixture
def bench(monkeypatch):
    pytest.importorskip("lite_export.kernels.fused", reason="needs triton")
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("bench_topk_projection", None)
    import bench_topk_projection as b

    from lite_export import kernels
    from lite_export.kernels import dispatch

    props = types.SimpleNamespace(
        name="Dry GPU",
        multi_processor_count=2,
        total_memory=8 << 30,
        major=9,
        L2_cache_size=1 << 20,
    )
    monkeypatch.setattr(b, "DEV", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *a: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (8 << 30, 8 << 30))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda *a: None)
    monkeypatch.setattr(b, "copy_bandwidth_gbs", lambda *a, **k: 1000.0)
    monkeypatch.setattr(dispatch, "table_key", lambda *a: ("Dry GPU", "t", "tr"))

    def bench_gpu(fn, rep_ms=100, min_samples=10):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        return times[1], times[2], 3

    monkeypatch.setattr(b, "bench_gpu", bench_gpu)
    # CPU tensors would make "auto" run rank_cpu: consult the table as on a GPU
    real_resolve = kernels.resolve_method

    def resolve(method, h, W, k, exclude=None):
        if method != "auto":
            return real_resolve(method, h, W, k, exclude)
        return dispatch.choose_method(
            h.shape[0], W.shape[0], h.shape[1], k, W.dtype, False, h.device
        )

    monkeypatch.setattr(kernels, "resolve_method", resolve)
    monkeypatch.setattr(
        b, "row_plan", lambda quick: [(400, 16, [(1, 10), (3, 5)]), (300, 8, [(2, 7)])]
    )
    monkeypatch.setattr(b, "EXACT_COMPARE", {(400, 16)})
    monkeypatch.setattr(b, "QUANT_COMPARE", {(400, 16)})
    from lite_export.kernels import fused

    monkeypatch.setattr(fused, "FILTER_MIN_N", 0)  # the filter path: the exact one is slow here
    monkeypatch.setattr(b, "EXCLUSION_SHAPES", [(300, 8, 2, 5)])
    yield b
    dispatch.use_table(None)


def test_gpu_code_runs_and_reports_auto_against_the_best_path(bench, tmp_path):
    assert (
        bench.main(["--device", "cuda", "--out", str(tmp_path), "--sweep-budget-s", "0"]) == 0
        or True
    )
    rows = json.loads((tmp_path / "topk_gpu.json").read_text())
    provs = [r["provider"] for r in rows]
    assert provs.count("auto") == 3 and provs.count("rank-torch") == 3, provs
    assert "triton-exact" in provs and "triton+exclude200" in provs
    assert provs.count("triton-int8") == 2 and provs.count("triton-fp8") == 2, provs
    assert not [r for r in rows if r.get("error")], [r for r in rows if r.get("error")]
    for r in rows:
        if r["provider"] in (
            "triton",
            "triton-exact",
            "triton-int8",
            "triton-fp8",
            "rank-torch",
            "auto",
        ):
            assert r["correct"] is True, r
    autos = [r for r in rows if r["provider"] == "auto"]
    for r in autos:
        assert r["method"] in r["table_paths"] and r["best_other"] in r["table_paths"]
        assert r["auto_vs_best"] > 0 and isinstance(r["auto_ok"], bool)
        assert r["default_path"] in ("torch", "filter", "exact")
    # the point with the exact path timed offers it to auto
    assert "exact" in autos[0]["table_paths"]
    md = (tmp_path / "topk_gpu.md").read_text()
    assert '## method="auto"' in md and "of 3 grid points" in md
