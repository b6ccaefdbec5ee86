"""Engines run an exported artifact: PyTorch, ONNX Runtime and TensorRT behind one interface."""

from lite_export.engines.base import Engine, EngineUnavailableError
from lite_export.engines.registry import ENGINES, load

__all__ = ["ENGINES", "Engine", "EngineUnavailableError", "load"]
