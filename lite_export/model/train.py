"""The trainer: full-softmax CE at every position, AdamW, warm-up + cosine decay, gradient
clipping, early stopping on validation NDCG@10. Written on Hugging Face Accelerate, so
``accelerate launch --num_processes N`` trains data-parallel on several GPUs, nodes or CPU
processes with no change.

A run can stop on a signal (:mod:`lite_export.model.stopping`) and continue later from a
:class:`~lite_export.model.train_state.TrainingState` exactly where it stopped; under a time
budget (:mod:`lite_export.model.budget`) it stops stepping early enough for the last
validation, the test evaluation and saving to fit.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from lite_export.data.base import LeaveOneOutSplit
from lite_export.data.batching import TrainWindows
from lite_export.model.budget import SAFETY, RunClock
from lite_export.model.cold_calibration import (
    calibrate_cold_scale,
    calibration_items,
    without_items,
)
from lite_export.model.config import TrainConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec
from lite_export.model.metrics import evaluate_ranking
from lite_export.model.stopping import StopRequest, StopRequested, agree, signal_name
from lite_export.model.train_state import (
    TrainingState,
    TrainingStateError,
    capture_rng,
    restore_rng,
)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    num_processes: int = 1
    # why training ended: "epochs", "patience", "budget" or "interrupted"
    stop_reason: str = ""
    interrupted: int | None = None  # the signal that stopped the run
    steps: int = 0  # optimizer steps of the whole run (a resumed run counts the earlier ones)
    clock: RunClock | None = None  # phase timings of this command
    state: TrainingState | None = None  # what `lite train --resume` needs (not in to_dict)
    # the cold-start protocol's test metrics by target: {"cold": {...}, "warm": {...}}
    test_by_target: dict = field(default_factory=dict)
    # TrainConfig.cold_calibration: the users it used, the learned and the chosen cold scale
    cold_calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "train_seconds": self.train_seconds,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "num_processes": self.num_processes,
            "stop_reason": self.stop_reason,
            "interrupted": signal_name(self.interrupted) if self.interrupted else None,
            "steps": self.steps,
            "timing": self.clock.to_dict() if self.clock else None,
            **({"test_by_target": self.test_by_target} if self.test_by_target else {}),
            **({"cold_calibration": self.cold_calibration} if self.cold_calibration else {}),
        }


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def new_loop_state() -> dict:
    """Where a run is (JSON-able; saved in the training state)."""
    return {
        "epoch": 1,  # the current epoch, 1-based
        "batches_done": 0,  # this rank's steps done in the current epoch
        "epoch_trained": False,  # the current epoch's steps are over, its validation pending
        "best_score": -1.0,
        "bad_epochs": 0,
        "best_epoch": 0,
        "best_valid": {},
        "history": [],
        "steps": 0,
        "epochs_run": 0,
        "stop_reason": "",
        "stopped_early": False,
        "train_start": None,  # run time (seconds) when training began
    }


def _step_estimate(recent: deque) -> float:
    """Seconds the next step may take: the slowest of the recent steps."""
    return max(recent) if recent else 0.0


def train_model(
    model: LiteLLM4Rec,
    split: LeaveOneOutSplit,
    cfg: TrainConfig,
    accelerator=None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    *,
    stop: StopRequest | None = None,
    resume: TrainingState | None = None,
    clock: RunClock | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``split.train``; keeps the weights of the best validation epoch.

    ``stop``: checked after every step (and evaluation batch); when it asks, training stops
    there, ``result.interrupted`` is the signal and ``result.state`` lets a later call continue.
    ``resume``: a state from an earlier call; ``model`` must then hold that checkpoint's (best)
    weights, and the state's current weights, optimizer, scheduler, RNG and data order are
    restored, so the run continues as if it had never stopped (bit-exact without a time budget,
    on the same number of processes). ``clock``: the run's clock and time budget (default: a new
    one with ``cfg.max_train_seconds``); ``result.clock`` holds the phase timings.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from lite_export import progress as prog

    acc = accelerator or Accelerator()
    set_seed(cfg.seed)
    run = clock or RunClock(cfg.max_train_seconds)
    stop = stop or StopRequest()
    n_items = model.config.num_items
    train_sequences, calibration = split.train, []
    if cfg.cold_calibration:
        if model.match_scale_cold is None:
            raise ValueError(
                "TrainConfig.cold_calibration calibrates the cold scale of a model with "
                "head_cold_scale=True; add --head-cold-scale (with --head text+id --head-match "
                "--head-residual-dropout P) or drop --cold-calibration"
            )
        calibration = calibration_items(n_items, cfg.cold_calibration, split.cold_items, cfg.seed)
        train_sequences = without_items(split.train, calibration)
    # held-out and calibration items: never a target nor a negative, no learned residual
    model.block_in_training([*split.cold_items, *calibration])
    windows = TrainWindows(train_sequences, model.config.max_history, n_items)
    if len(windows) == 0:
        raise ValueError("no training sequences with at least 2 items; check the data set")
    shuffle = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        windows,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=shuffle,
        collate_fn=windows.collate,
    )
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(loader) / acc.num_processes)
    # Accelerate steps the scheduler once per process at every optimizer step (it assumes the
    # per-process batch is a shard of a global one), so the schedule counts in those steps
    total = max(1, steps_per_epoch * acc.num_processes * cfg.epochs)
    # under a time budget the schedule follows the run's wall time from the start of training
    # to the step deadline (clock["budget"] = that span, clock["spent"] = time spent in it), so
    # warm-up and cosine decay complete within the budget; all processes agree on the time
    sched_clock: dict = {"start": time.perf_counter()}
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(_lr_factor, total=total, warmup=cfg.warmup_ratio, budget=None, clock=sched_clock),
    )
    loop = new_loop_state()
    best_state = None
    rank_acc = [0.0, 0]  # this rank's loss sum and examples in the current epoch
    if resume is not None:
        _check_resume(resume, acc, steps_per_epoch)
        loop = copy.deepcopy(resume.loop)
        if loop["best_epoch"] > 0:  # the model holds the checkpoint's best weights
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        rank_acc = list(resume.rank_loss[acc.process_index])
        shuffle.set_state(resume.loader_epoch_start)
    ddp_model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
    unwrapped = acc.unwrap_model(ddp_model)
    negatives = cfg.num_negatives if cfg.loss == "sampled" else 0
    show = progress and acc.is_main_process
    say = log if (log is not None and acc.is_main_process) else (lambda _msg: None)
    if loop["train_start"] is None:
        loop["train_start"] = run.elapsed()
    epoch_start = shuffle.get_state()
    if resume is not None:
        restore_rng(resume.rng[acc.process_index])  # last: nothing below draws before a step
    recent: deque = deque(maxlen=10)
    stop.armed = True
    interrupted = False
    with prog.enabled(show):
        while True:
            epoch = loop["epoch"]
            if loop["batches_done"] == 0 and not loop["epoch_trained"]:
                # may another epoch start? (the signal check catches one that came while
                # several processes validated, when evaluation is not interruptible)
                reason = ""
                if epoch > cfg.epochs:
                    reason = "epochs"
                elif loop["bad_epochs"] >= cfg.patience:
                    reason = "patience"
                sig = stop.should_stop("epoch", epoch=epoch)
                over = loop["steps"] > 0 and not run.step_fits(_step_estimate(recent))
                code, _ = agree(acc, 2 if sig else 1 if over else 0, 0.0)
                if code >= 2:
                    interrupted = True
                    break
                reason = reason or ("budget" if code >= 1 else "")
                if reason:
                    loop["stop_reason"] = reason
                    if reason == "patience":
                        loop["stopped_early"] = True
                        say(
                            f"early stop: no better validation NDCG@10 for "
                            f"{_plural(cfg.patience, 'epoch')}"
                        )
                    elif reason == "budget":
                        say(_budget_stop_message(run))
                    break
                epoch_start = shuffle.get_state()
                rank_acc = [0.0, 0]
            if not loop["epoch_trained"]:
                if loop["batches_done"] > 0:
                    shuffle.set_state(epoch_start)  # the same order, then skip what is done
                ddp_model.train()
                t_phase = time.perf_counter()
                with prog.task(f"epoch {epoch}/{cfg.epochs}", total=len(loader)) as bar:
                    for i, batch in enumerate(loader):
                        if i < loop["batches_done"]:
                            bar.advance()
                            continue
                        t = time.perf_counter()
                        loss = ddp_model(
                            batch["item_ids"],
                            targets=batch["targets"],
                            num_negatives=negatives,
                            label_smoothing=cfg.label_smoothing,
                        )
                        acc.backward(loss)
                        if cfg.grad_clip:
                            acc.clip_grad_norm_(ddp_model.parameters(), cfg.grad_clip)
                        optimizer.step()
                        rank_acc[0] += loss.item() * batch["item_ids"].shape[0]
                        rank_acc[1] += batch["item_ids"].shape[0]
                        loop["batches_done"] += 1
                        loop["steps"] += 1
                        sig = stop.should_stop("step", epoch=epoch, step=loop["batches_done"])
                        recent.append(time.perf_counter() - t)
                        over = not run.step_fits(_step_estimate(recent))
                        # one collective: every process stops after the same step and sets
                        # the same learning rate (from the slowest clock)
                        code, spent = agree(
                            acc, 2 if sig else 1 if over else 0, run.elapsed() - loop["train_start"]
                        )
                        if run.budget:
                            sched_clock["spent"] = spent
                            sched_clock["budget"] = max(
                                1e-9, run.train_deadline() - loop["train_start"]
                            )
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        run.unit("step", time.perf_counter() - t)
                        bar.advance(info=f"loss {rank_acc[0] / rank_acc[1]:.4f}")
                        if code >= 2:
                            interrupted = True
                            break
                        if code >= 1:
                            break  # the budget: this epoch ends here and is validated
                run.add("train", time.perf_counter() - t_phase)
                if interrupted and loop["batches_done"] < len(loader):
                    break
                loop["epoch_trained"] = True
                if interrupted:
                    break  # the epoch's steps are all done: its validation comes on resume
            # ---- validation of the epoch
            stats = torch.tensor([rank_acc[0] / max(rank_acc[1], 1), float(rank_acc[1])])
            per_rank = acc.gather(stats.to(acc.device).unsqueeze(0)).cpu().tolist()
            unwrapped.eval()
            unwrapped.refresh_item_vectors()  # a fine-tuned item LLM re-encodes the catalog
            timings: dict = {}
            try:
                with run.phase("validate"):
                    valid = evaluate_ranking(
                        unwrapped.frozen_scorer(),
                        split.valid,
                        n_items,
                        unwrapped.config.max_history,
                        batch_size=cfg.eval_batch_size,
                        device=acc.device,
                        desc=f"validation (epoch {epoch})",
                        # several processes agree only between passes (no per-batch collective)
                        stop=(lambda: stop.should_stop("eval")) if acc.num_processes == 1 else None,
                        timings=timings,
                    )
            except StopRequested:
                interrupted = True
                break
            _update_eval_estimates(run, timings, len(split.valid), len(split.test))
            elapsed = run.elapsed() - loop["train_start"]
            row = {
                "epoch": epoch,
                "loss": sum(r[0] * r[1] for r in per_rank) / max(1.0, sum(r[1] for r in per_rank)),
                "rank_loss": [r[0] for r in per_rank],
                "rank_examples": [int(r[1]) for r in per_rank],
                "valid": valid,
                "seconds": round(elapsed, 3),
            }
            loop["history"].append(row)
            score = valid["ndcg@10"]
            improved = score > loop["best_score"]
            if improved:
                loop["best_score"], loop["bad_epochs"] = score, 0
                loop["best_epoch"], loop["best_valid"] = epoch, valid
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()}
                )
            else:
                loop["bad_epochs"] += 1
            say(
                f"epoch {epoch:>3}/{cfg.epochs}  loss {row['loss']:.4f}  "
                f"valid ndcg@10 {valid['ndcg@10']:.4f}  recall@10 {valid['recall@10']:.4f}"
                f"{'  *' if improved else ''}  ({elapsed:.1f}s)"
            )
            loop["epochs_run"] = epoch
            loop.update(epoch=epoch + 1, batches_done=0, epoch_trained=False)
            rank_acc = [0.0, 0]
            # after a budget cut the check at the top of the loop decides, with this pass's
            # measured cost (an up-front estimate that was too cautious lets training go on)
    if interrupted:
        loop["stop_reason"] = "interrupted"
    result = TrainResult(
        history=loop["history"],
        best_epoch=loop["best_epoch"],
        best_valid=loop["best_valid"],
        train_seconds=run.elapsed() - loop["train_start"],
        epochs_run=loop["epochs_run"],
        stopped_early=loop["stopped_early"],
        num_processes=acc.num_processes,
        stop_reason=loop["stop_reason"],
        interrupted=stop.signum if interrupted else None,
        steps=loop["steps"],
        clock=run,
    )
    mid_epoch = loop["batches_done"] > 0 and not loop["epoch_trained"]
    result.state = TrainingState(
        loop=copy.deepcopy(loop),
        model={k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()},
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.scheduler.state_dict(),
        rng=_gather_objects(acc, capture_rng()),
        rank_loss=_gather_objects(acc, list(rank_acc)),
        loader_epoch_start=(epoch_start if mid_epoch else shuffle.get_state()).clone(),
        elapsed=run.elapsed(),
        num_processes=acc.num_processes,
        reason=f"interrupted by {signal_name(stop.signum)}" if interrupted else "completed",
    )
    model = unwrapped
    if best_state is not None:
        model.load_state_dict(best_state)
    # else: stopped before any validation; the checkpoint keeps the current weights
    model.eval()
    model.refresh_item_vectors()
    if calibration and not interrupted:
        result.cold_calibration = calibrate_cold_scale(
            model,
            split.valid,
            warm_cost=cfg.cold_calibration_warm_cost,
            batch_size=cfg.eval_batch_size,
            device=acc.device,
            log=say,
        )
    return result


def reuse_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS at every step.

    A training step allocates and frees buffers of tens of MB (the ``[B, L, N]`` logits and
    their gradients); glibc serves blocks above its mmap threshold (at most 32 MB by default)
    with fresh mmaps, so every step page-faults them in again: on ML-1M (d 64, history 50,
    3706 items, batch 128) a third of a CPU step went to the kernel. Raising the mmap and
    trim thresholds to 1 GiB makes the step ~35% faster on CPU; the process keeps its peak
    memory instead of giving it back between steps. Linux with glibc only (elsewhere a no-op,
    False); ``LITE_MALLOC_DEFAULTS=1`` leaves the allocator alone.
    """
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("LITE_MALLOC_DEFAULTS") == "1":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 30)
        )
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False


def _plural(n: int, word: str) -> str:
    from lite_export.progress import plural

    return plural(n, word, "processes" if word == "process" else None)


def _budget_stop_message(run: RunClock) -> str:
    return (
        f"stopping: the {run.budget:g} s budget leaves no time for another training step "
        f"(run time {run.elapsed():.1f} s; kept for validation, test and saving: "
        f"~{run.reserve():.1f} s)"
    )


def _update_eval_estimates(run: RunClock, timings: dict, n_valid: int, n_test: int) -> None:
    """Measured validation passes replace the up-front estimates (the slowest pass counts)."""
    if not timings.get("batch_seconds"):
        return
    run.unit("eval_batch", max(timings["batch_seconds"]))
    run.largest["valid_pass"] = max(run.largest.get("valid_pass", 0.0), timings["seconds"])
    if run.budget:
        run.estimates["valid_pass"] = SAFETY * run.largest["valid_pass"]
        run.estimates["test"] = run.estimates["valid_pass"] * n_test / max(1, n_valid)


def _gather_objects(acc, obj) -> list:
    """``obj`` of every process, in rank order (a list of one on a single process)."""
    if acc.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


def _check_resume(state: TrainingState, acc, batches: int) -> None:
    loop = state.loop
    mid_epoch = loop["batches_done"] > 0 and not loop["epoch_trained"]
    if mid_epoch and state.num_processes != acc.num_processes:
        raise TrainingStateError(
            f"the run stopped in the middle of epoch {loop['epoch']} on "
            f"{_plural(state.num_processes, 'process')} (each had done "
            f"{loop['batches_done']} of its batches); resume it on "
            f"{_plural(state.num_processes, 'process')} too (the data shards differ otherwise)"
        )
    if loop["batches_done"] > batches:
        raise TrainingStateError(
            f"the training state is {loop['batches_done']} steps into an epoch of {batches}: "
            "the data differ from the run's; resume with the data it was trained on"
        )
    if len(state.rng) != acc.num_processes:
        # RNG states exist per process; other counts reuse them cyclically (not bit-exact)
        state.rng = [state.rng[i % len(state.rng)] for i in range(acc.num_processes)]
        state.rank_loss = [
            state.rank_loss[i % len(state.rank_loss)] for i in range(acc.num_processes)
        ]


def _lr_factor(step: int, total: int, warmup: float, budget: float | None, clock: dict) -> float:
    """Linear warm-up over the first ``warmup`` fraction of training, then cosine decay to 0.

    Training progress is steps done over all steps, or, under a time budget, the larger of that
    and the fraction of the budget spent. The trainer keeps the budget in ``clock["budget"]``
    (the span from the start of training to the step deadline, updated as evaluation estimates
    change) and the time spent in ``clock["spent"]`` (agreed by all processes); without them the
    ``budget`` argument and ``perf_counter() - clock["start"]`` are used.
    """
    progress = step / total
    budget = clock.get("budget", budget)
    if budget:
        spent = clock.get("spent")
        if spent is None:
            spent = time.perf_counter() - clock["start"]
        progress = max(progress, spent / budget)
    progress = min(progress, 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / max(1e-9, 1.0 - warmup)))
