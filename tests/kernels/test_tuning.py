"""``lite tune --gpu`` and the tuner behind it, as far as a machine without CUDA goes (the tuner
itself runs in ``test_rank_paths.py::test_gpu_tuner_on_a_tiny_grid_writes_the_table_auto_reads``)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from lite_export.kernels import tuning

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")


@no_cuda
def test_cli_without_cuda_says_what_is_missing_and_what_happens_instead(tmp_path, monkeypatch):
    from lite_export.cli import app

    monkeypatch.setenv("LITE_EXPORT_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["tune", "--gpu"])
    assert result.exit_code == 2, result.output
    out = " ".join(result.output.split())
    assert (
        "lite tune --gpu measures the ranking paths on a CUDA GPU, and torch sees none here" in out
    )
    assert "uses the defaults derived from H200 measurements (rank_defaults.json)" in out
    assert "Traceback" not in result.output
    assert not (tmp_path / "rank_tables").exists()


@no_cuda
def test_tuner_refuses_without_cuda():
    with pytest.raises(tuning.NoCudaError, match="torch sees none here"):
        tuning.tune_rank_table(tuning.Grid(N=(1000,), d=(8,), B=(1,), k=(1,)))


def test_tune_without_gpu_still_needs_artifact_and_target():
    from lite_export.cli import app

    result = CliRunner().invoke(app, ["tune"])
    assert result.exit_code == 2
    assert "lite tune needs an ARTIFACT and --p99-ms" in " ".join(result.output.split())


def test_grids():
    assert len(tuning.DEFAULT_GRID.points()) == 2 * 3 * 4 * 2
    dims = {"num_items": 3706, "d_model": 64, "max_history": 200, "k": 100}
    g = tuning.grid_for_artifact(dims, "fp32")
    assert (g.N, g.d, g.k, g.exclude, g.dtype) == ((3706,), (64,), (10, 100), (0, 200), "float32")
    assert g.points()[0] == (3706, 64, 1, 10, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NVIDIA)")
def test_gpu_cli_glue_measures_saves_and_reports(tmp_path, monkeypatch):
    """`lite tune --gpu` end to end on a tiny grid (the default grid takes about a minute)."""
    from lite_export.cli import app
    from lite_export.kernels import dispatch

    monkeypatch.setenv("LITE_EXPORT_CACHE", str(tmp_path))
    monkeypatch.setattr(tuning, "DEFAULT_GRID", tuning.Grid(N=(20_000,), d=(64,), B=(1,), k=(10,)))
    try:
        result = CliRunner().invoke(app, ["tune", "--gpu", "--budget-s", "60"])
        assert result.exit_code == 0, result.output
        assert "written: " in result.output and "fastest: " in result.output
        files = list((tmp_path / "rank_tables").glob("*.json"))
        assert len(files) == 1 and dispatch.RankTable.load(files[0]).rows
    finally:
        dispatch.use_table(None)
