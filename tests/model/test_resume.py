"""Interrupting a run (SIGINT/SIGTERM) saves the best checkpoint and a training state that
`lite train --resume` continues bit-exactly: the same weights and per-epoch history as a run
that was never interrupted (same seed, no time budget, same number of processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lite_export.model.config import LiteConfig, TrainConfig
from lite_export.model.stopping import StopRequest
from lite_export.model.train_state import (
    STATE_DIR,
    TrainingState,
    TrainingStateError,
    flatten,
    unflatten,
)


class StopAt(StopRequest):
    """A deterministic interruption: 'SIGINT' arrives at a chosen point of the run."""

    def __init__(self, where: str, epoch: int | None = None, step: int | None = None, n=1):
        super().__init__()
        self.where, self.epoch, self.step, self.n = where, epoch, step, n
        self.seen = 0

    def should_stop(self, where: str = "step", **at) -> bool:
        here = where == self.where and at.get("epoch", self.epoch) == self.epoch
        if here and (self.step is None or at.get("step") == self.step):
            self.seen += 1
            if self.seen == self.n:
                self.request(signal.SIGINT)
        return super().should_stop(where, **at)


@pytest.fixture(scope="module")
def small(synthetic):
    ds, split = synthetic
    return ds, type(split)(split.train[:300], split.valid[:100], split.test[:100], split.popularity)


def _run(small, out, epochs=3, **kw):
    from accelerate import Accelerator

    from lite_export.model.workflow import DataSpec, train_checkpoint

    return train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20),
        TrainConfig.from_name("tiny", epochs=epochs, batch_size=64, seed=0),
        out,
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=small,
        **kw,
    )


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _assert_same_checkpoint(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ma, mb = (json.loads((p / "config.json").read_text()) for p in (a, b))
    assert _without_seconds(ma["train_result"]["history"]) == _without_seconds(
        mb["train_result"]["history"]
    )
    assert ma["test_metrics"] == mb["test_metrics"]
    assert ma["train_result"]["best_epoch"] == mb["train_result"]["best_epoch"]


@pytest.fixture(scope="module")
def uninterrupted(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "full"
    _, result, test = _run(small, out)
    assert result.interrupted is None and result.stop_reason == "epochs"
    assert not (out / STATE_DIR).exists()  # completed runs drop the state unless asked
    return out, result, test


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda: StopAt("step", epoch=2, step=2), id="mid-epoch"),
        pytest.param(lambda: StopAt("step", epoch=1, step=5), id="last-step-of-an-epoch"),
        pytest.param(lambda: StopAt("eval", n=1), id="during-validation"),
        pytest.param(lambda: StopAt("eval", n=4), id="during-the-test-evaluation"),
    ],
)
def test_resume_after_an_interruption_is_bit_exact(small, uninterrupted, tmp_path, stop):
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    full, full_result, _ = uninterrupted
    req = stop()
    _, result, test = _run(small, tmp_path / "stopped", stop=req)
    assert result.interrupted == signal.SIGINT and test is None
    ckpt = tmp_path / "stopped"
    # a normal checkpoint with the best validated weights (or the current ones before any)
    model = LiteLLM4Rec.from_pretrained(ckpt)
    assert model.config.num_items == 1000
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["training_state"] == STATE_DIR and meta["train_result"]["interrupted"] == "SIGINT"
    assert "--resume" in json.loads((ckpt / STATE_DIR / "state.json").read_text())["continue_with"]
    for p in (ckpt / STATE_DIR).iterdir():  # safetensors + JSON only
        assert p.suffix in {".json", ".safetensors"} and not p.read_bytes().startswith(b"\x80")

    _, resumed, _ = _run(small, tmp_path / "resumed", resume=ckpt)
    assert resumed.interrupted is None
    _assert_same_checkpoint(full, tmp_path / "resumed")
    assert resumed.steps == full_result.steps
    assert _without_seconds(resumed.history) == _without_seconds(full_result.history)


def test_a_completed_run_kept_state_trains_further(small, uninterrupted, tmp_path):
    full, full_result, _ = uninterrupted
    short = tmp_path / "two"
    _run(small, short, epochs=2, keep_state=True)
    assert (short / STATE_DIR / "optimizer.safetensors").is_file()
    from accelerate import Accelerator

    from lite_export.model.workflow import DataSpec, train_checkpoint

    _, more, test = train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", d_model=32, d_ff=64, max_history=20),
        TrainConfig.from_name("tiny", epochs=3, batch_size=64, seed=0),
        tmp_path / "three",
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=small,
        resume=short,
    )
    # the first two epochs are the 2-epoch run's; a third follows (a longer LR schedule, so
    # not the 3-epoch run's numbers)
    two = json.loads((short / "config.json").read_text())["train_result"]["history"]
    assert _without_seconds(more.history[:2]) == _without_seconds(two)
    assert [r["epoch"] for r in more.history] == [1, 2, 3] and test is not None


def test_resume_of_a_checkpoint_without_state_is_a_clear_error(uninterrupted):
    full, *_ = uninterrupted
    with pytest.raises(TrainingStateError, match="--keep-training-state"):
        TrainingState.read(full)


def test_flatten_round_trips_optimizer_scheduler_and_rng_states():
    from lite_export.model.train_state import capture_rng

    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.8, 0.95))
    p.grad = torch.ones_like(p)
    opt.step()
    state = {
        "optimizer": opt.state_dict(),
        "rng": capture_rng(),
        "odd": {"inf": float("inf"), "tuple": (1, 2.5, None), 3: "int key"},
    }
    tensors: dict = {}
    skeleton = flatten(state, tensors)
    json.dumps(skeleton, allow_nan=False)  # strict JSON
    back = unflatten(json.loads(json.dumps(skeleton)), tensors)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], opt.state[p]["exp_avg"])
    assert back["odd"] == state["odd"]
    np.testing.assert_array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["rng"]["python"] == state["rng"]["python"]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])


# ------------------------------------------------------------------------- the real command
LITE_ARGS = [
    "--data", "synthetic", "--preset", "tiny", "--epochs", "2", "--d-model", "16",
    "--max-history", "10", "--batch-size", "256", "--device", "cpu",
]  # fmt: skip


def _lite(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.update(kw.pop("env", {}))
    return subprocess.Popen(
        [sys.executable, "-m", "lite_export.cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_lite_train_sigint_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref = _lite(*LITE_ARGS, "--out", str(tmp_path / "ref"), "--no-progress")
    # progress lines on stderr at every step tell when epoch 2 is under way
    run = _lite(*LITE_ARGS, "--out", str(tmp_path / "a"), env={"LITE_PROGRESS_INTERVAL": "0"})
    for line in run.stderr:
        if line.startswith("epoch 2/2: 1/"):
            run.send_signal(signal.SIGINT)
            break
    out, err = run.communicate(timeout=600)
    assert run.returncode == 130, out + err
    assert "SIGINT received: stopping after the current step" in err
    cont = f"continue with: lite train --resume {tmp_path / 'a'} --out {tmp_path / 'a-2'}"
    assert cont in err, err
    assert (tmp_path / "a" / STATE_DIR / "state.json").is_file()
    state = json.loads((tmp_path / "a" / STATE_DIR / "state.json").read_text())
    assert state["loop"]["epoch"] == 2 and state["loop"]["batches_done"] >= 1

    res = _lite("--resume", str(tmp_path / "a"), "--out", str(tmp_path / "a-2"), "--no-progress")
    out, err = res.communicate(timeout=600)
    assert res.returncode == 0, out + err
    assert "resuming" in out and "at epoch 2 after" in out
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, out + err
    _assert_same_checkpoint(tmp_path / "ref", tmp_path / "a-2")


def test_resume_refuses_options_that_change_the_run(tmp_path, uninterrupted):
    ckpt, *_ = uninterrupted
    proc = _lite("--resume", str(ckpt), "--out", str(tmp_path / "x"), "--lr", "0.1", "--seed", "3")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "--lr, --seed cannot be given with --resume" in err
    proc = _lite("--resume", str(ckpt), "--out", str(ckpt))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "refused" in err, err  # never over the run it reads
    proc = _lite("--resume", str(ckpt), "--out", str(tmp_path / "y"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "has no training_state/" in err, err


def _launch(port: int, *args: str, **kw) -> subprocess.Popen:
    import shutil

    accelerate = shutil.which("accelerate") or os.path.join(
        os.path.dirname(sys.executable), "accelerate"
    )
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "lite_export.cli", "train", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.update(kw.pop("env", {}))
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw
    )


@pytest.mark.slow
def test_two_processes_agree_on_the_stop_and_resume_exactly(tmp_path):
    """`accelerate launch` forwards Ctrl-C to both ranks; they stop after the same step (no
    deadlock), rank 0 saves both ranks' RNG states, and a resume on 2 processes matches an
    uninterrupted 2-process run bit for bit."""
    ref = _launch(29531, *LITE_ARGS, "--out", str(tmp_path / "ref"), "--no-progress")
    run = _launch(
        29532, *LITE_ARGS, "--out", str(tmp_path / "a"), env={"LITE_PROGRESS_INTERVAL": "0"}
    )
    for line in run.stderr:
        if line.startswith("epoch 2/2: 1/"):
            run.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C does to the launcher
            break
    out, err = run.communicate(timeout=600)
    assert run.returncode != 0
    state = json.loads((tmp_path / "a" / STATE_DIR / "state.json").read_text())
    assert state["num_processes"] == 2 and len(state["rng"]) == 2, out + err
    assert state["loop"]["epoch"] == 2 and state["loop"]["batches_done"] >= 1
    assert "accelerate launch --num_processes 2 -m lite_export.cli train --resume" in err
    res = _launch(
        29533, "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "a-2"), "--no-progress"
    )
    out, err = res.communicate(timeout=600)
    assert res.returncode == 0, out[-3000:] + err[-3000:]
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:] + err[-3000:]
    _assert_same_checkpoint(tmp_path / "ref", tmp_path / "a-2")


def test_first_signal_requests_a_stop_the_second_aborts(monkeypatch):
    import time

    from lite_export.model import stopping

    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt):  # before training starts: nothing to save, abort
        stop._handle(signal.SIGINT, None)
    assert stop.exit_code == 130

    stop = StopRequest()
    stop.armed = True
    stop._handle(signal.SIGTERM, None)
    assert stop.requested and stop.should_stop() and stop.exit_code == 143
    stop._handle(signal.SIGTERM, None)  # the same signal forwarded twice: still one request
    monkeypatch.setattr(stopping, "REPEAT_WINDOW_S", 0.0)
    time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C aborts at once
        stop._handle(signal.SIGINT, None)
    assert stop.aborted == signal.SIGINT and stop.exit_code == 130
