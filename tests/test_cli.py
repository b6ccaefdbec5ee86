import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lite_export.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["demo"], ["bench"], ["tune"]])
def test_help_shows_usage_examples(cmd):
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    if cmd:
        assert "Examples" in result.output or "Example" in result.output
        assert f"lite {cmd[0]}" in result.output


def test_eval_writes_json_and_matches_training_metrics(trained, tmp_path):
    _, _, test, ckpt = trained
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", str(ckpt), "--json", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["metrics"]["ndcg@10"] == pytest.approx(test["ndcg@10"], abs=1e-9)
    assert data["most_popular"]["ndcg@10"] < data["metrics"]["ndcg@10"]


def test_eval_missing_checkpoint_is_a_clean_error(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_train_bad_data_dir_is_a_clean_error(tmp_path):
    result = runner.invoke(
        app, ["train", "--data", "ml-1m", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2
    assert "MovieLens-1M" in result.output and "movies.dat" in result.output
    assert not (tmp_path / "c").exists()


def test_demo_no_serve_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lite_export.cli",
            "demo",
            "--no-serve",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "most-popular" in proc.stdout and "NDCG@10" in proc.stdout
    assert (tmp_path / "d" / "ckpt" / "model.safetensors").exists()
    # exported, loaded back (checksums) and compared with the checkpoint
    assert "identical to the checkpoint's for 32/32 test users" in proc.stdout
    assert (tmp_path / "d" / "artifact" / "manifest.json").exists()
    assert "serve it with: lite serve" in proc.stdout


def test_env_lists_versions():
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    assert "torch" in result.output and "lite-export" in result.output
