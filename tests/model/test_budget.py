"""`lite train --max-train-seconds` budgets the whole command: loading, training, every
validation pass, the test evaluation and saving."""

from __future__ import annotations

import time

from lite_export.model.config import LiteConfig, TrainConfig


def test_the_budget_covers_the_whole_run(synthetic, tmp_path):
    """Judged from the phase timings the run records, not from a made-up slack: the run (loading
    the model, the budget estimate, training, validation passes, test, saving) ends within the
    budget plus the largest single piece of work that cannot be cut (a step, an eval batch)."""
    from accelerate import Accelerator

    from lite_export.model.budget import RunClock
    from lite_export.model.workflow import DataSpec, train_checkpoint

    budget = 20.0
    clock = RunClock(budget)  # the command starts here
    ds, split = synthetic
    small = (
        ds,
        type(split)(split.train[:600], split.valid[:300], split.test[:300], split.popularity),
    )
    lines: list[str] = []
    _, result, test = train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", d_model=16, d_ff=32, max_history=10),
        TrainConfig.from_name("tiny", epochs=500, patience=500, batch_size=32, eval_batch_size=64),
        tmp_path / "ckpt",
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=lines.append,
        data=small,
        clock=clock,
    )
    total = clock.command_seconds()  # after saving
    timing = clock.to_dict()
    assert any(line.startswith(f"budget {budget:g} s for the whole command:") for line in lines)
    # the budget, not the epochs, ended training, and every phase ran
    assert result.stop_reason == "budget" and result.epochs_run >= 1 and test is not None
    assert {"load", "plan", "train", "validate", "test", "save"} <= set(timing["phases"])
    largest = max(clock.largest["step"], clock.largest["eval_batch"])
    assert total <= budget + largest, timing
    # the phases account for the whole run
    assert 0.9 * total <= sum(clock.phases.values()) <= total, timing


def test_the_plan_and_the_total_are_printed(tmp_path):
    from typer.testing import CliRunner

    from lite_export.cli import app

    args = [
        "train", "--data", "synthetic", "--preset", "tiny", "--epochs", "1", "--d-model", "16",
        "--max-history", "10", "--device", "cpu", "--no-progress", "--max-train-seconds", "900",
        "--out", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    plan = next(line for line in res.output.splitlines() if line.startswith("budget 900 s"))
    assert "for the whole command:" in plan and "s spent loading" in plan
    assert "per validation pass" in plan and "for the test evaluation" in plan
    assert "training stops by ~" in plan
    assert "total " in res.output and "of the 900 s budget (loading" in res.output
    assert "(1 validation pass " not in res.output or "1 epoch," in res.output


def test_lr_schedule_anneals_within_the_training_part():
    """Under a budget the LR follows the run clock up to the training deadline (not the
    budget's end), so it reaches 0 when the last step is taken."""
    from lite_export.model.train import _lr_factor

    clock = {"start": time.perf_counter(), "budget": 10.0, "spent": 10.0}
    assert _lr_factor(1, total=10**6, warmup=0.02, budget=None, clock=clock) < 1e-9
    clock["spent"] = 5.0
    assert abs(_lr_factor(1, total=10**6, warmup=0.0, budget=None, clock=clock) - 0.5) < 1e-9
