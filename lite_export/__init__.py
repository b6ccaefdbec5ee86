"""lite-export: train, export and serve Lite-LLM4Rec sequential recommenders fast.

Importing the package is cheap: torch, transformers and every runtime are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "LiteLLM4Rec": ("lite_export.model.lite_llm4rec", "LiteLLM4Rec"),
    "LiteConfig": ("lite_export.model.config", "LiteConfig"),
    "TrainConfig": ("lite_export.model.config", "TrainConfig"),
    "TopK": ("lite_export.types", "TopK"),
    "ItemCatalog": ("lite_export.catalog", "ItemCatalog"),
    "UnknownItemError": ("lite_export.catalog", "UnknownItemError"),
    "load_dataset": ("lite_export.data", "load_dataset"),
    "load": ("lite_export.engines.registry", "load"),
    "ArtifactError": ("lite_export.artifact", "ArtifactError"),
    "EngineUnavailableError": ("lite_export.engines.base", "EngineUnavailableError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lite_export' has no attribute {name!r}")
