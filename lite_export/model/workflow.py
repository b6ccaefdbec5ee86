"""Train / evaluate workflows shared by the CLI, the demo and the quality benchmarks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lite_export.catalog import ItemCatalog
from lite_export.data import leave_one_out, load_dataset
from lite_export.data.base import LeaveOneOutSplit, SequenceDataset
from lite_export.model.config import LiteConfig, TrainConfig
from lite_export.model.lite_llm4rec import LiteLLM4Rec
from lite_export.model.metrics import PROTOCOL, MostPopular, evaluate_ranking
from lite_export.model.train import TrainResult, train_model


@dataclass
class DataSpec:
    """Enough to load the same data set again (stored in every checkpoint)."""

    name: str
    data_dir: str | None = None

    def load(self) -> SequenceDataset:
        return load_dataset(self.name, self.data_dir)

    def to_dict(self) -> dict:
        return {"name": self.name, "data_dir": self.data_dir}


def load_split(spec: DataSpec) -> tuple[SequenceDataset, LeaveOneOutSplit]:
    ds = spec.load()
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
) -> tuple[LiteLLM4Rec, TrainResult, dict]:
    """Build, train, test and (on the main process) save a model. Returns test metrics too."""
    from accelerate import Accelerator

    acc = accelerator or Accelerator()
    ds, split = data or load_split(spec)
    say = log if (log is not None and acc.is_main_process) else (lambda _m: None)
    say(
        f"data {ds.name}: {len(ds.sequences):,} users, {ds.num_items:,} items, "
        f"{ds.num_interactions:,} interactions, max history {model_cfg.max_history}"
    )
    model = LiteLLM4Rec.build(
        model_cfg, catalog_of(ds, split), seed=train_cfg.seed, device=str(acc.device)
    )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"model: {n_params:,} trainable parameters on {acc.device} x{acc.num_processes}")
    result = train_model(model, split, train_cfg, accelerator=acc, progress=progress, log=log)
    test = evaluate_split(model, split, "test", device=acc.device)
    if out is not None and acc.is_main_process:
        model.save_pretrained(
            out,
            extra={
                "data": spec.to_dict(),
                "train": train_cfg.to_dict(),
                "train_result": result.to_dict(),
                "test_metrics": test,
                "protocol": PROTOCOL,
            },
        )
    acc.wait_for_everyone()
    return model, result, test


def evaluate_split(
    model: LiteLLM4Rec, split: LeaveOneOutSplit, which: str = "test", device="cpu", batch_size=256
) -> dict:
    examples = {"test": split.test, "valid": split.valid}.get(which)
    if examples is None:
        raise ValueError(f"split must be 'test' or 'valid', got {which!r}")
    model.eval()
    return evaluate_ranking(
        model.score,
        examples,
        model.config.num_items,
        model.config.max_history,
        batch_size=batch_size,
        device=device,
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
    return {}
