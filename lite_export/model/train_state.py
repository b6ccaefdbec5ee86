"""The training state a checkpoint keeps so that ``lite train --resume`` continues a run exactly.

Stored under ``CKPT/training_state/`` beside the normal checkpoint files, as safetensors and
JSON only (no pickle)::

    state.json              position (epoch, steps done in it, whether its training part is
                            over, whether training is finished and the test evaluation done),
                            early-stopping state, best epoch and its validation metrics, the
                            per-epoch history, per-rank partial-epoch loss sums, elapsed run
                            time, the scheduler's state, the optimizer's non-tensor state
                            (param groups), the Python and numpy RNG states of every rank,
                            the train config and the command that continues the run
    model.safetensors       the weights at the stop (the checkpoint's own model.safetensors
                            holds the best validated weights)
    optimizer.safetensors   the optimizer's tensors (AdamW: step, exp_avg, exp_avg_sq)
    rng.safetensors         torch CPU and CUDA RNG states of every rank, the data loader's
                            shuffle generator at the start of the current epoch

Nested state dicts (optimizer, scheduler, RNG) are stored by :func:`flatten`: every tensor
goes to a safetensors file under a dotted key and is replaced in the JSON by
``{"__tensor__": key}``; tuples, dicts with non-string keys and non-finite floats get small
tagged forms, so :func:`unflatten` gives back exactly what was flattened.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

STATE_DIR = "training_state"
STATE_FORMAT = "lite-export-training-state"
STATE_VERSION = 1
FILES = ("state.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors")


class TrainingStateError(ValueError):
    """A checkpoint has no usable training state (or one this version cannot continue)."""


# ----------------------------------------------------------------------------- flattening
def flatten(obj, tensors: dict[str, torch.Tensor], key: str = ""):
    """A JSON-able copy of ``obj`` with every tensor moved into ``tensors`` (see module doc)."""
    import numpy as np

    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(
            obj.astype(np.int64 if obj.dtype.kind in "iu" else obj.dtype)
        )
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.generic):
        return flatten(obj.item(), tensors, key)
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, tensors, f"{key}.{k}" if key else k) for k, v in obj.items()}
        return {
            "__items__": [
                [flatten(k, tensors, f"{key}.k{i}"), flatten(v, tensors, f"{key}.{k}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(
        f"cannot store a {type(obj).__name__} at {key!r} in the training state (tensors, "
        "numbers, strings, lists, tuples and dicts only)"
    )


def unflatten(obj, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`flatten`."""
    import numpy as np

    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(np.dtype(obj["dtype"]))
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__tuple__" in obj:
        return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {unflatten(k, tensors): unflatten(v, tensors) for k, v in obj["__items__"]}
    return {k: unflatten(v, tensors) for k, v in obj.items()}


# ----------------------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """This process's Python, numpy, torch CPU and CUDA RNG states."""
    import numpy as np

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        n = torch.cuda.device_count()
        torch.cuda.set_rng_state_all(
            list(cuda)[:n] + [torch.cuda.get_rng_state(i) for i in range(len(cuda), n)]
        )


# ----------------------------------------------------------------------------- the state
@dataclass
class TrainingState:
    """Everything :func:`lite_export.model.train.train_model` needs to continue a run."""

    loop: dict  # position, early stopping, history, accumulators (JSON-able)
    model: dict[str, torch.Tensor]  # the weights at the stop
    optimizer: dict  # torch optimizer state dict
    scheduler: dict  # torch LR scheduler state dict
    rng: list[dict]  # capture_rng() of every rank
    rank_loss: list[list[float]]  # [loss_sum, seen] of every rank in the current epoch
    loader_epoch_start: torch.Tensor  # the shuffle generator's state when the epoch began
    elapsed: float  # seconds of run time (all commands of the run) at the stop
    num_processes: int = 1
    reason: str = "completed"  # "interrupted by SIGINT", "completed"
    extra: dict = field(default_factory=dict)  # train config, resume command, versions

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``directory`` (normally ``CKPT/training_state``, inside the checkpoint's
        temporary directory, so it is published atomically with the checkpoint)."""
        from safetensors.torch import save_file

        from lite_export import __version__

        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        opt_tensors: dict[str, torch.Tensor] = {}
        rng_tensors: dict[str, torch.Tensor] = {"loader.epoch_start": self.loader_epoch_start}
        meta = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "lite_export_version": __version__,
            "reason": self.reason,
            "num_processes": self.num_processes,
            "elapsed_seconds": self.elapsed,
            "loop": flatten(self.loop, {}),
            "rank_loss": self.rank_loss,
            "scheduler": flatten(self.scheduler, {}),
            "optimizer": flatten(self.optimizer, opt_tensors),
            "rng": [flatten(r, rng_tensors, f"rank{i}") for i, r in enumerate(self.rng)],
            **self.extra,
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.items()}
        save_file(state, str(root / "model.safetensors"), metadata={"format": "pt"})
        save_file(opt_tensors, str(root / "optimizer.safetensors"))
        save_file(rng_tensors, str(root / "rng.safetensors"))
        (root / "state.json").write_text(json.dumps(meta, indent=1, allow_nan=False))
        return root

    @classmethod
    def read(cls, checkpoint: str | os.PathLike) -> TrainingState:
        """The training state of ``checkpoint`` (raises :class:`TrainingStateError`)."""
        from safetensors.torch import load_file

        meta = read_state_meta(checkpoint)
        root = Path(checkpoint) / STATE_DIR
        opt_tensors = load_file(str(root / "optimizer.safetensors"))
        rng_tensors = load_file(str(root / "rng.safetensors"))
        known = {
            "format",
            "format_version",
            "lite_export_version",
            "reason",
            "num_processes",
            "elapsed_seconds",
            "loop",
            "rank_loss",
            "scheduler",
            "optimizer",
            "rng",
        }
        return cls(
            loop=unflatten(meta["loop"], {}),
            model=load_file(str(root / "model.safetensors")),
            optimizer=unflatten(meta["optimizer"], opt_tensors),
            scheduler=unflatten(meta["scheduler"], {}),
            rng=[unflatten(r, rng_tensors) for r in meta["rng"]],
            rank_loss=meta["rank_loss"],
            loader_epoch_start=rng_tensors["loader.epoch_start"],
            elapsed=float(meta["elapsed_seconds"]),
            num_processes=int(meta["num_processes"]),
            reason=meta.get("reason", ""),
            extra={k: v for k, v in meta.items() if k not in known},
        )


def read_state_meta(checkpoint: str | os.PathLike) -> dict:
    """``training_state/state.json`` of ``checkpoint``, checked (no tensors are read)."""
    ckpt = Path(checkpoint)
    root = ckpt / STATE_DIR
    if not root.is_dir():
        raise TrainingStateError(
            f"{ckpt} has no {STATE_DIR}/, so it cannot be resumed: interrupted runs always keep "
            "their training state, completed runs only with `lite train --keep-training-state`. "
            "To train more from scratch, run `lite train` again (e.g. with a larger --epochs)"
        )
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise TrainingStateError(
            f"{root} is missing {', '.join(missing)} (copied in part?); copy the whole "
            "checkpoint directory again"
        )
    try:
        meta = json.loads((root / "state.json").read_text())
    except json.JSONDecodeError as exc:
        raise TrainingStateError(f"{root / 'state.json'} is not valid JSON ({exc})") from None
    if meta.get("format") != STATE_FORMAT:
        raise TrainingStateError(f"{root / 'state.json'} is not a lite-export training state")
    if int(meta.get("format_version", 0)) > STATE_VERSION:
        raise TrainingStateError(
            f"{root} was written by a newer lite-export (training state format "
            f"{meta['format_version']} > {STATE_VERSION}); upgrade lite-export to resume it"
        )
    return meta
