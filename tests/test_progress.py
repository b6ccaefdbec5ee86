"""Progress of long steps: log lines when stderr is not a terminal, and the wording of counts."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys

import pytest

from lite_export import progress


def test_log_lines_count_rate_eta_and_info(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    out = io.StringIO()
    with progress.task("epoch 1/3", 4, unit="step", stream=out) as bar:
        for i in range(4):
            bar.advance(info=f"loss {7.0 - i:.4f}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert re.fullmatch(
        r"epoch 1/3: 1/4 steps \(25%\) in \d+s, [\d.]+ steps/s, ETA \d+s, loss 7\.0000", lines[0]
    ), lines[0]
    assert lines[3].startswith("epoch 1/3: 4/4 steps (100%)")
    assert re.fullmatch(
        r"epoch 1/3: done, 4 steps in \d+s \([\d.]+ steps/s\), loss 4\.0000", lines[4]
    )


def test_one_unit_is_singular_and_a_cut_task_says_where_it_stopped(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    out = io.StringIO()
    with progress.task("validation (epoch 1)", 1, unit="user", stream=out) as bar:
        bar.advance()
    assert "done, 1 user in" in out.getvalue()
    out = io.StringIO()
    with progress.task("epoch 2/2", 8, stream=out) as bar:
        bar.advance(2)
    assert "epoch 2/2: stopped at 2/8 steps after" in out.getvalue()
    assert progress.plural(1, "epoch") == "1 epoch"
    assert progress.plural(2, "epoch") == "2 epochs"
    assert progress.plural(0, "validation pass", "validation passes") == "0 validation passes"
    assert progress.duration(88) == "1m28s" and progress.duration(7325) == "2h02m"


def test_quiet_until_the_interval_and_when_disabled(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "3600")
    out = io.StringIO()
    with progress.task("short", 3, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == ""  # shorter than the interval: nothing, not even "done"
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    with progress.enabled(False), progress.task("off", 3, stream=out) as bar:
        with progress.enabled(True):  # an inner scope cannot turn it back on
            assert not progress.is_enabled()
        bar.advance(3)
    assert out.getvalue() == ""
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    with pytest.raises(ValueError, match="LITE_PROGRESS_INTERVAL='soon'"):
        progress.task("bad", 1, stream=out)


def _run(*args: str, interval: str = "0") -> subprocess.CompletedProcess:
    env = {**os.environ, progress.INTERVAL_ENV: interval, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lite_export.cli", *args],
        capture_output=True,  # stderr is a pipe, not a terminal: log lines
        text=True,
        env=env,
        timeout=900,
    )


def test_lite_train_eval_and_export_log_progress_when_stderr_is_not_a_terminal(tmp_path):
    ckpt = tmp_path / "ckpt"
    train = _run(
        "train", "--data", "synthetic", "--preset", "tiny", "--epochs", "1", "--d-model", "16",
        "--max-history", "10", "--batch-size", "256", "--device", "cpu", "--out", str(ckpt),
    )  # fmt: skip
    assert train.returncode == 0, train.stdout + train.stderr
    err = train.stderr.splitlines()
    encoding = [ln for ln in err if ln.startswith("encoding items (tiny-random item LLM): ")]
    assert encoding and re.match(
        r".*: 256/1000 items \(26%\) in \d+s, [\d.]+ items/s, ETA", encoding[0]
    )
    steps = [ln for ln in err if ln.startswith("epoch 1/1: ")]
    # the first line already carries a loss value (no "nan")
    assert re.match(r"epoch 1/1: 1/8 steps \(12%\) .*, loss \d+\.\d{4}$", steps[0]), steps[0]
    assert "nan" not in train.stderr and "nan" not in train.stdout
    assert any(ln.startswith("validation (epoch 1): 256/2000 users") for ln in err)
    assert any(ln.startswith("test evaluation: 2000/2000 users (100%)") for ln in err)
    # the tiny item LLM's tokenizer trains without its own progress bar
    assert "Pre-processing sequences" not in train.stderr + train.stdout
    assert "1 epoch," in train.stdout and "1 epochs" not in train.stdout + train.stderr

    ev = _run("eval", str(ckpt), "--device", "cpu")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert any(
        ln.startswith("evaluating ckpt (test): 256/2000 users") for ln in ev.stderr.splitlines()
    )
    quiet = _run("eval", str(ckpt), "--device", "cpu", "--no-progress")
    assert quiet.returncode == 0 and "evaluating ckpt" not in quiet.stderr

    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")):
        pytest.skip("lite export needs the onnx extra")
    ex = _run("export", str(ckpt), "--out", str(tmp_path / "art"), "--k", "10", "--no-optimize")
    assert ex.returncode == 0, ex.stdout + ex.stderr
    checks = [ln for ln in ex.stderr.splitlines() if ln.startswith("validating in ONNX Runtime")]
    assert checks[0].startswith("validating in ONNX Runtime: 1/4 checks (25%)"), checks
    assert checks[-1].startswith("validating in ONNX Runtime: done, 4 checks in"), checks
