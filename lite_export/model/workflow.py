"""Train / evaluate workflows shared by the CLI, the demo and the quality benchmarks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lite_export.catalog import ItemCatalog
from lite_export.data import cold_start_split, leave_one_out, load_dataset
from lite_export.data.base import LeaveOneOutSplit, SequenceDataset
from lite_export.model.budget import RunClock, plan_budget
from lite_export.model.config import LiteConfig, TrainConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec
from lite_export.model.metrics import PROTOCOL, MostPopular, evaluate_ranking
from lite_export.model.stopping import StopRequest, StopRequested, signal_name
from lite_export.model.train import TrainResult, train_model
from lite_export.model.train_state import STATE_DIR, TrainingState, TrainingStateError


@dataclass
class DataSpec:
    """Enough to load the same data set again (stored in every checkpoint)."""

    name: str
    data_dir: str | None = None
    #: the cold-start protocol: this fraction of the items is held out of training and
    #: validation (:func:`~lite_export.data.split.cold_start_split`); 0 = the standard split
    cold_items: float = 0.0
    cold_seed: int = 0

    def load(self) -> SequenceDataset:
        return load_dataset(self.name, self.data_dir)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "data_dir": self.data_dir}
        if self.cold_items:
            out |= {"cold_items": self.cold_items, "cold_seed": self.cold_seed}
        return out

    @classmethod
    def from_stored(cls, stored: dict, name: str | None = None, data_dir=None) -> DataSpec:
        """The spec a checkpoint recorded (``to_dict``), with its name or directory replaced."""
        return cls(
            name or stored.get("name", "synthetic"),
            data_dir if data_dir is not None else (stored.get("data_dir") if not name else None),
            float(stored.get("cold_items", 0.0)),
            int(stored.get("cold_seed", 0)),
        )


def load_split(spec: DataSpec) -> tuple[SequenceDataset, LeaveOneOutSplit]:
    ds = spec.load()
    if spec.cold_items:
        return ds, cold_start_split(ds, spec.cold_items, spec.cold_seed)
    return ds, leave_one_out(ds)


def catalog_of(ds: SequenceDataset, split: LeaveOneOutSplit) -> ItemCatalog:
    return ItemCatalog(
        ids=list(ds.item_ids),
        titles=list(ds.item_titles),
        popularity=list(split.popularity),
        texts=list(ds.item_texts),
    )


def train_checkpoint(
    spec: DataSpec,
    model_cfg: LiteConfig,
    train_cfg: TrainConfig,
    out: str | os.PathLike | None,
    accelerator=None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    data: tuple[SequenceDataset, LeaveOneOutSplit] | None = None,
    *,
    force: bool = False,
    sources=(),
    resume: str | os.PathLike | None = None,
    stop: StopRequest | None = None,
    clock: RunClock | None = None,
    keep_state: bool = False,
) -> tuple[LiteLLM4Rec, TrainResult, dict | None]:
    """Build, train, test and (on the main process) save a model. Returns test metrics too.

    ``resume``: a checkpoint with a ``training_state/`` to continue (its model and state are
    used; ``model_cfg`` only labels the log). ``stop``: a :class:`StopRequest` (the CLI's
    installs signal handlers); when it fires, training ends after the current step, the best
    weights so far are saved with the training state, ``result.interrupted`` is the signal and
    the test metrics are None. ``clock``: the run's clock and time budget (the CLI's starts
    with the command); with a budget, a validation pass, the test evaluation and saving are
    estimated up front and the plan is logged. ``keep_state``: keep ``training_state/`` in a
    completed run's checkpoint too (interrupted runs always keep it), so it can be resumed to
    train more.

    ``out`` is checked before anything is trained (:func:`~lite_export.artifact.check_output_dir`):
    an existing checkpoint is replaced only with ``force``; the data directory, a directory
    that contains it or one of ``sources`` (e.g. the checkpoint a run resumes from), and
    anything that is not a lite-export checkpoint are refused.
    """
    from accelerate import Accelerator

    from lite_export import progress as prog
    from lite_export.artifact import check_output_dir

    run = clock or RunClock(train_cfg.max_train_seconds)
    inputs = (spec.data_dir, *sources, *([resume] if resume is not None else []))
    if out is not None:
        out = check_output_dir(out, "checkpoint", force=force, sources=inputs)
    acc = accelerator or Accelerator()
    say = log if (log is not None and acc.is_main_process) else (lambda _m: None)
    show = progress and acc.is_main_process
    state = None
    with prog.enabled(show), run.phase("load"):
        if resume is not None:
            state = TrainingState.read(resume)
            run.carried = run.carried or state.elapsed
        ds, split = data or load_split(spec)
        say(
            f"data {ds.name}: {len(ds.sequences):,} users, {ds.num_items:,} items, "
            f"{ds.num_interactions:,} interactions, max history {model_cfg.max_history}"
        )
        if resume is not None:
            model = LiteLLM4Rec.from_pretrained(resume, device=str(acc.device))
            if list(ds.item_ids) != model.catalog.ids:
                raise TrainingStateError(
                    f"the data set {spec.name!r} has a different item catalog ({ds.num_items} "
                    f"items) from the checkpoint {resume} ({model.config.num_items}); resume "
                    "on the data it was trained on (--data-dir where it now lives)"
                )
        else:
            model = LiteLLM4Rec.build(
                model_cfg, catalog_of(ds, split), seed=train_cfg.seed, device=str(acc.device)
            )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"model: {n_params:,} trainable parameters on {acc.device} x{acc.num_processes}")
    if state is not None:
        say(describe_state(state, resume))
    if run.budget:
        with prog.enabled(show), run.phase("plan"):
            plan_budget(run, model, split, train_cfg, acc.device, keep_state, say)
    result = train_model(
        model,
        split,
        train_cfg,
        accelerator=acc,
        progress=progress,
        log=log,
        stop=stop,
        resume=state,
        clock=run,
    )
    test = None
    if result.interrupted is None:
        timings: dict = {}
        try:
            with prog.enabled(show), run.phase("test"):
                test = evaluate_split(
                    model,
                    split,
                    "test",
                    device=acc.device,
                    desc="test evaluation",
                    stop=(lambda: stop.should_stop("eval"))
                    if stop is not None and acc.num_processes == 1
                    else None,
                    timings=timings,
                )
            run.unit("eval_batch", max(timings["batch_seconds"], default=0.0))
            if split.cold_items:  # the same ranks, told apart by whether the target was held out
                with prog.enabled(False), run.phase("test"):
                    result.test_by_target = {
                        which: evaluate_split(model, split, f"test_{which}", device=acc.device)
                        for which in ("cold", "warm")
                    }
        except StopRequested:
            result.interrupted = stop.signum
            result.state.reason = (
                f"interrupted by {signal_name(stop.signum)} during the test evaluation"
            )
    keep = result.interrupted is not None or keep_state
    if keep:
        result.state.extra = {
            "test_done": test is not None,
            "train": train_cfg.to_dict(),
            "data": spec.to_dict(),
            "continue_with": resume_command(out, acc.num_processes) if out is not None else None,
        }
    if out is not None and acc.is_main_process:
        with run.phase("save"):
            model.save_pretrained(
                out,
                force=force,
                sources=inputs,
                extra={
                    "data": spec.to_dict(),
                    "train": train_cfg.to_dict(),
                    "train_result": result.to_dict(),
                    "test_metrics": test,
                    "protocol": PROTOCOL,
                    "training_state": STATE_DIR if keep else None,
                    "resumed_from": str(Path(resume).resolve()) if resume is not None else None,
                },
                write_more=(lambda tmp: result.state.write(tmp / STATE_DIR)) if keep else None,
            )
    acc.wait_for_everyone()
    return model, result, test


def resume_command(out: str | os.PathLike, num_processes: int = 1) -> str:
    """The command that continues a run saved to ``out`` (into a new directory)."""
    import re
    import shlex

    out = Path(out)
    m = re.fullmatch(r"(.*)-(\d+)", out.name)
    new = out.with_name(f"{m.group(1)}-{int(m.group(2)) + 1}" if m else f"{out.name}-2")
    head = (
        "lite train"
        if num_processes == 1
        else f"accelerate launch --num_processes {num_processes} -m lite_export.cli train"
    )
    return f"{head} --resume {shlex.quote(str(out))} --out {shlex.quote(str(new))}"


def describe_state(state: TrainingState, where) -> str:
    """One line: where a saved run stands."""
    from lite_export.progress import plural

    loop = state.loop
    if loop["batches_done"] and not loop["epoch_trained"]:
        at = f"epoch {loop['epoch']} after {plural(loop['batches_done'], 'step')}"
    elif loop["epoch_trained"]:
        at = f"epoch {loop['epoch']} before its validation"
    else:
        at = f"the start of epoch {loop['epoch']}"
    best = (
        f"best epoch {loop['best_epoch']} (valid NDCG@10 {loop['best_valid']['ndcg@10']:.4f})"
        if loop["best_epoch"]
        else "no epoch validated yet"
    )
    return (
        f"resuming {where} ({state.reason}): at {at}, {best}, "
        f"{state.elapsed:.1f} s of run time so far"
    )


def evaluate_split(
    model: LiteLLM4Rec,
    split: LeaveOneOutSplit,
    which: str = "test",
    device="cpu",
    batch_size=256,
    desc: str | None = None,
    stop: Callable[[], bool] | None = None,
    timings: dict | None = None,
) -> dict:
    """Metrics of ``model`` on the test or validation users (``desc``: show progress)."""
    examples = {
        "test": split.test,
        "valid": split.valid,
        "test_cold": split.test_subset("cold"),
        "test_warm": split.test_subset("warm"),
    }.get(which)
    if examples is None:
        raise ValueError(
            f"split must be 'test', 'valid', 'test_cold' or 'test_warm', got {which!r}"
        )
    model.eval()
    return evaluate_ranking(
        model.frozen_scorer(),
        examples,
        model.config.num_items,
        model.config.max_history,
        batch_size=batch_size,
        device=device,
        desc=desc,
        stop=stop,
        timings=timings,
    )


def most_popular_metrics(split: LeaveOneOutSplit, which: str = "test") -> dict:
    examples = split.test if which == "test" else split.valid
    n = len(split.popularity)
    return evaluate_ranking(MostPopular(split.popularity), examples, n, max_history=1)


def write_json(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def pick_device(device: str) -> dict:
    """Accelerator kwargs for --device auto|cpu|cuda."""
    if device == "cpu":
        return {"cpu": True}
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device cpu"
        )
    if device not in ("auto", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    mps = getattr(torch.backends, "mps", None)
    if device == "auto" and not torch.cuda.is_available() and not (mps and mps.is_available()):
        # say CPU explicitly: under `accelerate launch` Accelerate then trains data-parallel on
        # CPU processes (gloo) instead of running every rank as a lone process
        return {"cpu": True}
    return {}
