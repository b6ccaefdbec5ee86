"""The wall-time budget of a training run (``lite train --max-train-seconds``) and its phases.

The budget covers everything the command does, from its start: loading the data, building the
model (item-LLM encoding), training, every validation pass, the final test evaluation and
saving. Before training, :func:`plan_budget` times a few validation batches to estimate one
validation pass and the test evaluation; the trainer then stops stepping once the next step
would leave too little time for the last validation, the test evaluation and saving. A resumed
run (``--resume``) carries the time its earlier commands spent, so the budget is the whole run's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

#: estimates are padded by this factor (batches differ in length, machines in load)
SAFETY = 1.25


@dataclass
class RunClock:
    """Seconds since the run started (``carried`` = seconds spent by earlier commands of a
    resumed run) and how this command spent them, by phase."""

    budget: float | None = None
    start: float = field(default_factory=time.perf_counter)
    carried: float = 0.0
    phases: dict = field(default_factory=dict)  # name -> seconds (this command)
    counts: dict = field(default_factory=dict)  # name -> times entered
    largest: dict = field(default_factory=dict)  # "step" / "eval_batch" -> longest seconds
    estimates: dict = field(default_factory=dict)  # valid_pass / test / save -> seconds

    def elapsed(self) -> float:
        """Seconds of run time so far (earlier commands of a resumed run included)."""
        return self.carried + time.perf_counter() - self.start

    def command_seconds(self) -> float:
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def unit(self, name: str, seconds: float) -> None:
        """Record one uninterruptible unit (a training step, an evaluation batch)."""
        self.largest[name] = max(self.largest.get(name, 0.0), seconds)

    # ------------------------------------------------------------------- the budget
    def reserve(self) -> float:
        """Seconds to keep for after the last training step: one validation pass, the test
        evaluation and saving."""
        e = self.estimates
        return e.get("valid_pass", 0.0) + e.get("test", 0.0) + e.get("save", 0.0)

    def train_deadline(self) -> float | None:
        """Run time by which training steps must end (None: no budget)."""
        if not self.budget:
            return None
        return self.budget - self.reserve()

    def step_fits(self, step_seconds: float) -> bool:
        """Whether one more training step of ``step_seconds`` fits in the budget."""
        deadline = self.train_deadline()
        return deadline is None or self.elapsed() + step_seconds <= deadline

    def to_dict(self) -> dict:
        return {
            "budget_seconds": self.budget,
            "carried_seconds": round(self.carried, 3),
            "command_seconds": round(self.command_seconds(), 3),
            "run_seconds": round(self.elapsed(), 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "counts": dict(self.counts),
            "largest_unit_seconds": {k: round(v, 4) for k, v in self.largest.items()},
            "estimates": {k: round(v, 3) for k, v in self.estimates.items()},
        }


def time_eval_batches(
    score_fn, examples, num_items: int, max_history: int, batch_size: int, device, batches: int = 3
) -> float:
    """Seconds per evaluation batch of ``batch_size`` users: the median of ``batches`` batches
    after one warm-up batch (no RNG is used, so training is not disturbed)."""
    from lite_export.model.metrics import evaluate_ranking

    n = min(len(examples), batch_size * (batches + 1))
    if n == 0:
        return 0.0
    timings: dict = {}
    evaluate_ranking(
        score_fn,
        examples[:n],
        num_items,
        max_history,
        batch_size=batch_size,
        device=device,
        timings=timings,
    )
    per = sorted(timings["batch_seconds"][1:] or timings["batch_seconds"])
    return per[len(per) // 2]


def plan_budget(clock: RunClock, model, split, cfg, device, keep_state: bool, say) -> None:
    """Estimate a validation pass, the test evaluation and saving, store them in
    ``clock.estimates`` and print the plan."""
    loaded = clock.elapsed()
    was_training = model.training
    model.eval()  # no dropout: no RNG is drawn, and the timing is that of evaluation
    try:
        per_batch = time_eval_batches(
            model.frozen_scorer(),
            split.valid,
            model.config.num_items,
            model.config.max_history,
            cfg.eval_batch_size,
            device,
        )
    finally:
        model.train(was_training)
    n_valid = math.ceil(len(split.valid) / cfg.eval_batch_size)
    n_test = math.ceil(len(split.test) / cfg.eval_batch_size)
    clock.estimates["eval_batch"] = per_batch
    clock.estimates["valid_pass"] = SAFETY * per_batch * n_valid
    clock.estimates["test"] = SAFETY * per_batch * n_test
    clock.estimates["save"] = estimate_save_seconds(model, keep_state)
    say(budget_plan(clock, loaded))


def estimate_save_seconds(model, keep_state: bool) -> float:
    """Seconds to write the checkpoint: serialise the weights in memory, count the disk twice."""
    from safetensors.torch import save

    t = time.perf_counter()
    blob = save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    seconds = 2.0 * (time.perf_counter() - t) + len(blob) / 200e6
    # the training state adds the current weights and two optimizer moments
    return SAFETY * seconds * (4.0 if keep_state else 1.0) + 0.2


def budget_plan(clock: RunClock, loaded: float | None = None) -> str:
    """The plan, in one line (``loaded``: run time spent before the estimates were taken)."""
    e = clock.estimates
    deadline = clock.train_deadline()
    loaded = clock.elapsed() if loaded is None else loaded
    if clock.carried:  # a resumed run: the budget is the whole run's
        spent = (
            f"budget {clock.budget:g} s for the whole run: {clock.carried:.1f} s spent by the "
            f"interrupted command, {loaded - clock.carried:.1f} s loading"
        )
    else:
        spent = f"budget {clock.budget:g} s for the whole command: {loaded:.1f} s spent loading"
    text = (
        f"{spent}, ~{e['valid_pass']:.1f} s per validation pass, ~{e['test']:.1f} s for the "
        f"test evaluation, ~{e['save']:.1f} s to save; training stops by ~{deadline:.0f} s"
    )
    if deadline <= clock.elapsed():
        text += (
            " -- the budget is already spent: training runs 1 step only; raise --max-train-seconds"
        )
    return text


def budget_summary(clock: RunClock) -> str:
    """One line: the actual total against the budget, by phase."""
    from lite_export.progress import plural

    p, c = clock.phases, clock.counts
    parts = [f"loading {p.get('load', 0.0):.1f} s"]
    if "plan" in p:
        parts.append(f"budget estimate {p['plan']:.1f} s")
    parts.append(f"training {p.get('train', 0.0):.1f} s")
    if c.get("validate"):
        parts.append(
            f"{plural(c['validate'], 'validation pass', 'validation passes')} {p['validate']:.1f} s"
        )
    if "test" in p:
        parts.append(f"test {p['test']:.1f} s")
    if "save" in p:
        parts.append(f"saving {p['save']:.1f} s")
    total = clock.elapsed()
    of = f" of the {clock.budget:g} s budget" if clock.budget else ""
    run = f", {clock.command_seconds():.1f} s in this command" if clock.carried else ""
    return f"total {total:.1f} s{of}{run} ({', '.join(parts)})"


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
