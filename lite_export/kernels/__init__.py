"""Ranking the whole catalog: ``top-k(h @ W.T + b)`` with history exclusion.

* :func:`rank` -- the dispatcher the engines call: CUDA tensors go to the fused Triton kernel
  (when Triton imports), everything else to :func:`rank_cpu`.
* :func:`topk_projection` -- the fused OpenAI-Triton kernel (``fused.py``); the
  ``[B, N]`` score matrix never reaches GPU memory.
* :func:`rank_cpu` -- the CPU path (``reference.py``); :func:`topk_projection_reference` -- the
  plain torch definition both are tested against.

Importing this package imports only torch: Triton and ONNX Runtime load on first use
(``lite_export.kernels.fused`` is resolved lazily by ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from lite_export.kernels.reference import (
    ExcludeLike,
    check_ranking_inputs,
    normalize_exclude,
    rank_cpu,
    topk_projection_reference,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from lite_export.kernels.fused import topk_projection

__all__ = [
    "check_ranking_inputs",
    "normalize_exclude",
    "rank",
    "rank_cpu",
    "topk_projection",
    "topk_projection_reference",
    "triton_available",
]

_LAZY = {"topk_projection": "lite_export.kernels.fused"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


_TRITON_OK: bool | None = None


def triton_available() -> bool:
    """True when ``lite_export.kernels.fused`` (and so Triton) imports."""
    global _TRITON_OK
    if _TRITON_OK is None:
        try:
            importlib.import_module("lite_export.kernels.fused")
            _TRITON_OK = True
        except Exception:  # ImportError, or a Triton that fails to initialise: fall back quietly
            _TRITON_OK = False
    return _TRITON_OK


def rank(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per row of ``h @ W.T + b`` with ``exclude``d items dropped.

    CUDA tensors run the fused Triton kernel when Triton is installed (``k <= 1024``), otherwise
    (CPU tensors, no Triton, larger k) the chunked CPU/torch path. Returns
    ``(scores [B, k] float32, ids [B, k] int64)`` on ``h``'s device, best first. The
    ``exclude`` format is described in :mod:`lite_export.kernels.reference`.
    """
    if isinstance(h, torch.Tensor) and h.device.type == "cuda":
        if isinstance(k, int) and k <= 1024 and triton_available():
            from lite_export.kernels.fused import topk_projection as fused

            return fused(h, W, b, k, exclude)
        return rank_cpu(h, W, b, k, exclude)
    return rank_cpu(h, W, b, k, exclude)
