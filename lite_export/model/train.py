"""The trainer: full-softmax CE at every position, AdamW, warm-up + cosine decay, gradient
clipping, early stopping on validation NDCG@10. Written on Hugging Face Accelerate, so
``accelerate launch --num_processes N`` trains data-parallel on several GPUs, nodes or CPU
processes with no change.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from lite_export.data.base import LeaveOneOutSplit
from lite_export.data.batching import TrainWindows
from lite_export.model.config import TrainConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec
from lite_export.model.metrics import evaluate_ranking


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    num_processes: int = 1

    def to_dict(self) -> dict:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "train_seconds": self.train_seconds,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "num_processes": self.num_processes,
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


def train_model(
    model: LiteLLM4Rec,
    split: LeaveOneOutSplit,
    cfg: TrainConfig,
    accelerator=None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Train ``model`` in place on ``split.train``; keeps the weights of the best validation epoch."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    acc = accelerator or Accelerator()
    set_seed(cfg.seed)
    n_items = model.config.num_items
    windows = TrainWindows(split.train, model.config.max_history, n_items)
    if len(windows) == 0:
        raise ValueError("no training sequences with at least 2 items; check the data set")
    loader = torch.utils.data.DataLoader(
        windows,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        collate_fn=windows.collate,
    )
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(loader) / acc.num_processes)
    total = max(1, steps_per_epoch * cfg.epochs)
    clock = {"start": time.perf_counter()}
    # with a time budget on one process the schedule follows wall time, so warm-up and cosine
    # decay complete within the budget (several processes follow steps to stay in lock-step)
    budget = cfg.max_train_seconds if acc.num_processes == 1 else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(_lr_factor, total=total, warmup=cfg.warmup_ratio, budget=budget, clock=clock),
    )
    ddp_model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
    negatives = cfg.num_negatives if cfg.loss == "sampled" else 0

    result = TrainResult(num_processes=acc.num_processes)
    best_state, best_score, bad_epochs = None, -1.0, 0
    show = progress and acc.is_main_process
    say = log if (log is not None and acc.is_main_process) else (lambda _msg: None)
    start = clock["start"] = time.perf_counter()
    bar = _progress(show)
    with bar:
        for epoch in range(1, cfg.epochs + 1):
            ddp_model.train()
            task = bar.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(loader), loss=float("nan"))
            loss_sum, seen = 0.0, 0
            for batch in loader:
                loss = ddp_model(
                    batch["item_ids"], targets=batch["targets"], num_negatives=negatives
                )
                acc.backward(loss)
                if cfg.grad_clip:
                    acc.clip_grad_norm_(ddp_model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.item() * batch["item_ids"].shape[0]
                seen += batch["item_ids"].shape[0]
                bar.update(task, advance=1, loss=loss_sum / seen)
                if budget and time.perf_counter() - start > budget:
                    break  # an epoch longer than what is left of the budget ends here
            bar.remove_task(task)
            # per-rank mean loss and example count, gathered so rank 0 can log every rank
            stats = torch.tensor([loss_sum / max(seen, 1), float(seen)], device=acc.device)
            per_rank = acc.gather(stats.unsqueeze(0)).cpu().tolist()
            unwrapped = acc.unwrap_model(ddp_model)
            unwrapped.eval()
            unwrapped.refresh_item_vectors()  # a fine-tuned item LLM re-encodes the catalog
            valid = evaluate_ranking(
                unwrapped.score,
                split.valid,
                n_items,
                unwrapped.config.max_history,
                batch_size=cfg.eval_batch_size,
                device=acc.device,
            )
            elapsed = time.perf_counter() - start
            row = {
                "epoch": epoch,
                "loss": sum(r[0] * r[1] for r in per_rank) / max(1.0, sum(r[1] for r in per_rank)),
                "rank_loss": [r[0] for r in per_rank],
                "rank_examples": [int(r[1]) for r in per_rank],
                "valid": valid,
                "seconds": round(elapsed, 3),
            }
            result.history.append(row)
            score = valid["ndcg@10"]
            improved = score > best_score
            if improved:
                best_score, bad_epochs = score, 0
                result.best_epoch, result.best_valid = epoch, valid
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()}
                )
            else:
                bad_epochs += 1
            say(
                f"epoch {epoch:>3}/{cfg.epochs}  loss {row['loss']:.4f}  "
                f"valid ndcg@10 {valid['ndcg@10']:.4f}  recall@10 {valid['recall@10']:.4f}"
                f"{'  *' if improved else ''}  ({elapsed:.1f}s)"
            )
            result.epochs_run = epoch
            if bad_epochs >= cfg.patience:
                result.stopped_early = True
                say(f"early stop: no better validation NDCG@10 for {cfg.patience} epochs")
                break
            if cfg.max_train_seconds and elapsed > cfg.max_train_seconds:
                say(f"stopping: training time budget of {cfg.max_train_seconds:.0f}s reached")
                break
    result.train_seconds = time.perf_counter() - start
    model = acc.unwrap_model(ddp_model)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    model.refresh_item_vectors()
    return result


def _lr_factor(step: int, total: int, warmup: float, budget: float | None, clock: dict) -> float:
    """Linear warm-up over the first ``warmup`` fraction of training, then cosine decay to 0.

    Training progress is steps done over all steps, or, under a time budget, the larger of that
    and the fraction of the budget spent.
    """
    progress = step / total
    if budget:
        progress = max(progress, (time.perf_counter() - clock["start"]) / budget)
    progress = min(progress, 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / max(1e-9, 1.0 - warmup)))


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )
