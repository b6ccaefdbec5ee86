"""The rank table behind ``kernels.rank(method="auto")``: format, lookup, defaults, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lite_export.kernels import dispatch
from lite_export.kernels.dispatch import RankTable, RankTableError, TableRow

REPO = Path(__file__).resolve().parents[2]


def _table(rows, **kw) -> RankTable:
    return RankTable(gpu="Test GPU", torch="2.x", triton="3.x", rows=rows, **kw)


def _row(N, d, B, k, dtype="bfloat16", exclude=0, **ms) -> TableRow:
    return TableRow(N=N, d=d, B=B, k=k, dtype=dtype, exclude=exclude, ms=ms)


@pytest.fixture(autouse=True)
def _fresh_dispatch(monkeypatch, tmp_path):
    monkeypatch.delenv("LITE_EXPORT_RANK_TABLE", raising=False)
    monkeypatch.setenv("LITE_EXPORT_CACHE", str(tmp_path / "cache"))
    dispatch.use_table(None)
    yield
    dispatch.use_table(None)


def test_measured_shape_gets_its_fastest_path():
    t = _table(
        [
            _row(1_000_000, 64, 1, 10, torch=0.13, filter=0.23, exact=0.37),
            _row(1_000_000, 64, 256, 10, torch=2.1, filter=1.4),
        ]
    )
    assert t.choose(1, 1_000_000, 64, 10) == "torch"
    assert t.choose(256, 1_000_000, 64, 10) == "filter"
    # a path left out of `allowed` (no Triton, k > 1024) is never chosen
    assert t.choose(256, 1_000_000, 64, 10, allowed=("torch",)) == "torch"


def test_nearest_shape_in_log_space_and_ties_average_the_neighbours():
    t = _table(
        [
            _row(100_000, 64, 1, 10, torch=0.06, filter=0.11),
            _row(10_000_000, 64, 16, 10, torch=1.6, filter=0.84),
        ]
    )
    # ML-1M (3,706 items) is nearest to the 100k row
    assert t.choose(1, 3706, 64, 10) == "torch"
    assert t.choose(32, 20_000_000, 64, 10) == "filter"
    # B=4 is as far from B=1 as from B=16: equal log distance on both sides -> mean log ratio
    t2 = _table(
        [
            _row(1_000_000, 64, 1, 10, torch=1.0, filter=1.10),  # torch wins by 10%
            _row(1_000_000, 64, 16, 10, torch=1.0, filter=0.50),  # filter wins by 2x
        ]
    )
    assert t2.choose(4, 1_000_000, 64, 10) == "filter"


def test_exact_ties_go_to_torch_and_missing_paths_are_not_guessed():
    t = _table([_row(1000, 64, 1, 10, torch=0.1, filter=0.1)])
    assert t.choose(1, 1000, 64, 10) == "torch"
    # exact was not measured at the nearest shape: it is no candidate even if allowed alone
    assert t.choose(1, 1000, 64, 10, allowed=("exact",)) == "exact"  # nothing else allowed
    t2 = _table([_row(1000, 64, 1, 10, torch=0.2, filter=0.1), _row(1000, 64, 1, 100, exact=0.01)])
    assert t2.choose(1, 1000, 64, 10) == "filter"


def test_same_dtype_and_exclusion_rows_are_preferred():
    t = _table(
        [
            _row(1_000_000, 64, 16, 10, "bfloat16", 0, torch=0.2, filter=0.3),
            _row(1_000_000, 64, 16, 10, "float32", 0, torch=0.5, filter=0.3),
            _row(1_000_000, 64, 16, 10, "bfloat16", 200, torch=0.2, filter=0.6),
            _row(1_000_000, 64, 16, 10, "float32", 200, torch=0.4, filter=0.7),
        ]
    )
    assert t.choose(16, 1_000_000, 64, 10, torch.float32, exclude=False) == "filter"
    assert t.choose(16, 1_000_000, 64, 10, torch.float32, exclude=True) == "torch"
    # no fp16 rows: bf16 (same element size) stands in
    assert t.choose(16, 1_000_000, 64, 10, torch.float16, exclude=False) == "torch"
    assert t.choose(16, 1_000_000, 64, 10, torch.float16, exclude=True) == "torch"


def test_round_trip_and_validation(tmp_path):
    t = _table([_row(1000, 64, 1, 10, torch=0.1, filter=0.05, exact=float("inf"))], source="x")
    path = t.save(tmp_path / "t.json")
    back = RankTable.load(path)
    assert back.rows[0].ms == {"torch": 0.1, "filter": 0.05}  # non-finite times are dropped
    assert back.rows[0].best == "filter" and back.source == "x"
    data = json.loads(path.read_text())
    assert data["format"] == "lite_export.rank_table" and data["rows"][0]["best"] == "filter"
    bad = dict(data, rows=[dict(data["rows"][0], ms={"fast": 1.0})])
    with pytest.raises(RankTableError, match=r"row 0 is invalid \(unknown path\(s\) \['fast'\]"):
        RankTable.from_json(bad, "t.json")
    with pytest.raises(RankTableError, match="version 9.*lite tune --gpu"):
        RankTable.from_json(dict(data, version=9), "t.json")
    with pytest.raises(RankTableError, match="is not a rank table"):
        RankTable.from_json({"rows": []}, "t.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(RankTableError, match="broken.json is not valid JSON"):
        RankTable.load(tmp_path / "broken.json")


def test_defaults_are_derived_from_the_committed_h200_results():
    """The shipped defaults are exactly what the derivation script gives for topk_gpu.json, and
    they are honest: wherever torch measured faster, torch is the default."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/derive_rank_defaults.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    t = dispatch.defaults()
    assert t.gpu == "NVIDIA H200" and len(t.rows) >= 60
    rows = json.loads((REPO / "benchmarks/results/topk_gpu.json").read_text())
    # the torch path is kernels.rank(method="torch") where the run timed it, else the baseline
    torch_ms = {
        (r["N"], r["d"], r["B"], r["k"]): r["median_ms"]
        for provider in ("torch", "rank-torch")
        for r in rows
        if r.get("provider") == provider
    }
    for r in t.rows:
        if r.ms["torch"] <= min(r.ms.values()):
            assert r.best == "torch", r
        assert r.ms["torch"] == torch_ms[(r.N, r.d, r.B, r.k)]
    # every measured shape picks its fastest path, and shapes between them the nearest one's
    for r in t.rows:
        fastest = min(r.ms, key=r.ms.get)
        assert t.choose(r.B, r.N, r.d, r.k, torch.bfloat16) == fastest, r
    # small catalogs (ML-1M, Beauty) rank with matmul + topk at small batches, as measured at
    # 100,000 items, the nearest measured catalog
    for N, d, B in [(3706, 64, 1), (3706, 64, 16), (57_289, 64, 1)]:
        assert t.choose(B, N, d, 10, torch.bfloat16) == "torch", (N, d, B)
    # where the fused kernel measured faster, it is the default
    assert t.choose(256, 1_000_000, 64, 10, torch.bfloat16) == "filter"
    assert t.choose(16, 10_000_000, 64, 100, torch.bfloat16) == "filter"


def test_table_for_prefers_override_then_env_then_defaults(tmp_path, monkeypatch):
    cpu = torch.device("cpu")
    assert dispatch.table_for(cpu)[1] == str(dispatch.DEFAULTS_PATH)
    t = _table([_row(10, 8, 1, 1, torch=1.0)])
    path = t.save(tmp_path / "env.json")
    monkeypatch.setenv("LITE_EXPORT_RANK_TABLE", str(path))
    assert dispatch.table_for(cpu) == (RankTable.load(path), str(path))
    monkeypatch.setenv("LITE_EXPORT_RANK_TABLE", str(tmp_path / "missing.json"))
    with pytest.warns(RuntimeWarning, match="missing.json.*using the defaults"):
        assert dispatch.table_for(cpu)[1] == str(dispatch.DEFAULTS_PATH)
    dispatch.use_table(t)
    assert dispatch.table_for(cpu) == (t, "use_table()")


def test_tuned_table_is_found_by_gpu_name_and_versions(tmp_path, monkeypatch):
    """On a (simulated) CUDA device the file `lite tune --gpu` wrote for this GPU + versions wins."""
    monkeypatch.setattr(dispatch, "table_key", lambda device=None: ("NVIDIA H200", "2.11", "3.6"))
    key = dispatch.table_key()
    path = dispatch.table_path(key)
    assert path == tmp_path / "cache" / "rank_tables" / "NVIDIA_H200--torch-2.11--triton-3.6.json"
    gpu = torch.device("cuda", 0)
    assert dispatch.table_for(gpu)[1] == str(dispatch.DEFAULTS_PATH)  # none written yet
    dispatch.use_table(None)
    _table([_row(1000, 64, 1, 10, torch=0.5, filter=0.1)]).save(path)
    table, where = dispatch.table_for(gpu)
    assert where == str(path) and table.rows[0].best == "filter"
    assert dispatch.choose_method(3, 1000, 64, 10, torch.bfloat16, False, gpu) == "filter"
    # decisions are cached per power-of-two batch bucket
    assert any(key[1] == 4 for key in dispatch._CHOICES)


def test_device_guard_is_taken_from_the_tensor():
    """The guard is torch.cuda.device(<the tensor's device>), not the current device; no CUDA is
    initialised to build it, so this runs on a CPU."""

    class OnSecondGpu:
        device = torch.device("cuda", 1)

    guard = dispatch.device_guard(OnSecondGpu())
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert dispatch.device_guard(torch.device("cuda", 3)).idx == 3
    assert not isinstance(dispatch.device_guard(torch.zeros(1)), torch.cuda.device)
    assert not torch.cuda.is_initialized()
