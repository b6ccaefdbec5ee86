"""Engine registry: ``auto`` picks the best engine that loads here, quietly falling back; an
engine asked for by name re-raises with what is missing and how to install it."""

from __future__ import annotations

import importlib
import os

from lite_export.engines.base import Engine, EngineUnavailableError

ENGINES = {
    "tensorrt": ("lite_export.engines.tensorrt_engine", "TensorRTEngine"),
    "onnxruntime": ("lite_export.engines.onnxruntime_engine", "OnnxRuntimeEngine"),
    "torch": ("lite_export.engines.torch_engine", "TorchEngine"),
    # the catalog ranked in shards and merged, in one process (options: shards, encoder, ...)
    "sharded": ("lite_export.cluster.shards", "ShardedEngine"),
}
#: ``auto`` tries these in order: TensorRT where a plan and a GPU exist, then ONNX Runtime
#: (fastest on CPU in benchmarks/results/engines.*), then PyTorch.
AUTO_ORDER = ("tensorrt", "onnxruntime", "torch")


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose auto or one of {sorted(ENGINES)}")
    module, attr = ENGINES[name]
    return getattr(importlib.import_module(module), attr)


def load(artifact: str | os.PathLike, engine: str = "auto", **options) -> Engine:
    """Open an exported artifact (checksums verified) with the named engine, or the best one."""
    if engine != "auto":
        return engine_class(engine)(artifact, **options).load()
    from lite_export.artifact import verify_artifact

    if options.pop("verify", True):
        verify_artifact(artifact)  # once, not once per engine tried
    errors = []
    for name in AUTO_ORDER:
        try:
            return engine_class(name)(artifact, verify=False, **options).load()
        except EngineUnavailableError as exc:
            errors.append(f"{name}: {exc}")
    raise EngineUnavailableError("no engine could load the artifact:\n  " + "\n  ".join(errors))
