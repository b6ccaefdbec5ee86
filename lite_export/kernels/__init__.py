"""Ranking the whole catalog: ``top-k(h @ W.T + b)`` with history exclusion.

* :func:`rank` -- the dispatcher the engines call. ``method="auto"`` runs :func:`rank_cpu` on
  CPU tensors and, on CUDA, the path that measured fastest for the shape on this GPU (the rank
  table of :mod:`lite_export.kernels.dispatch`: ``lite tune --gpu``, else defaults derived from
  H200 measurements): the fused kernel's ``"filter"`` or ``"exact"`` path, or ``"torch"``.
* :func:`topk_projection` -- the fused OpenAI-Triton kernel (``fused.py``); the
  ``[B, N]`` score matrix never reaches GPU memory.
* :func:`rank_torch` -- matmul + ``torch.topk`` with fp32 scores; :func:`rank_cpu` -- the CPU
  path (``reference.py``); :func:`topk_projection_reference` -- the plain torch definition all
  of them are tested against.
* :func:`quantize_catalog` / :func:`rank_quantized` -- an int8 or fp8 catalog with per-row
  scales, ranked with an exact re-rank against the full-precision rows (``quantized.py``, CPU;
  on CUDA the fused kernel's filter path reads the quantized rows, ``fused.topk_quantized``);
  ``rank(h, W, k=..., catalog=cat)`` runs it.
* :func:`rank_static` -- one path with no host sync, for capture inside a larger CUDA graph
  (the PyTorch engine's whole-request graphs).

Every launch and capture runs under ``torch.cuda.device(h.device)``
(:func:`lite_export.kernels.dispatch.device_guard`), so tensors on any GPU are served there.

Importing this package imports only torch: Triton and ONNX Runtime load on first use
(``lite_export.kernels.fused`` is resolved lazily by ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from lite_export.kernels import dispatch
from lite_export.kernels.dispatch import device_guard
from lite_export.kernels.quantized import QuantizedCatalog, quantize_catalog, rank_quantized
from lite_export.kernels.reference import (
    ExcludeLike,
    _rank_torch,
    check_ranking_inputs,
    normalize_exclude,
    rank_cpu,
    rank_torch,
    topk_projection_reference,
)

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from lite_export.kernels.fused import topk_projection

__all__ = [
    "METHODS",
    "auto_path",
    "check_ranking_inputs",
    "device_guard",
    "normalize_exclude",
    "QuantizedCatalog",
    "quantize_catalog",
    "rank",
    "rank_cpu",
    "rank_quantized",
    "rank_static",
    "rank_torch",
    "resolve_method",
    "topk_projection",
    "topk_projection_reference",
    "triton_available",
]

#: What :func:`rank` accepts as ``method``.
METHODS = ("auto", "filter", "exact", "torch", "cpu")
#: The fused kernel's largest k (``lite_export.kernels.fused.MAX_K``, without importing Triton).
_FUSED_MAX_K = 1024

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


def resolve_method(
    method: str,
    h: torch.Tensor,
    W: torch.Tensor,
    k: int,
    exclude: ExcludeLike = None,
) -> str:
    """The concrete path :func:`rank` runs: ``"filter"``, ``"exact"``, ``"torch"`` or ``"cpu"``.

    ``"auto"``: :func:`rank_cpu` for tensors off CUDA; on CUDA the rank table's choice for
    ``(B, N, d, k, dtype, exclusion)`` among the paths available here (the fused ones need Triton
    and ``k <= 1024``; see :mod:`lite_export.kernels.dispatch`). Other methods are returned as
    given.
    """
    if method not in METHODS:
        raise ValueError(
            f"method must be one of {METHODS}, got {method!r}: 'auto' picks the fastest measured "
            "path for the shape and device"
        )
    if method != "auto":
        return method
    if not isinstance(h, torch.Tensor) or h.device.type != "cuda":
        return "cpu"
    has_ex = exclude is not None and not (
        isinstance(exclude, torch.Tensor) and exclude.numel() == 0
    )
    B, d = h.shape
    return auto_path(B, W.shape[0], d, k, W.dtype, has_ex, h.device)


def auto_path(
    B: int, N: int, d: int, k: int, dtype: torch.dtype, exclude: bool, device: torch.device
) -> str:
    """``method="auto"``'s path for a shape: ``"cpu"`` off CUDA; on CUDA the rank table's choice
    among the paths available here (the fused ones need Triton and ``k <= 1024``)."""
    if device.type != "cuda":
        return "cpu"
    fused_ok = isinstance(k, int) and k <= _FUSED_MAX_K and triton_available()
    allowed = dispatch.PATHS if fused_ok else ("torch",)
    return dispatch.choose_method(B, N, d, k, dtype, exclude, device, allowed)


def rank(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None = None,
    k: int = 10,
    exclude: ExcludeLike = None,
    *,
    method: str = "auto",
    catalog: QuantizedCatalog | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per row of ``h @ W.T + b`` with ``exclude``d items dropped.

    ``method``: ``"auto"`` (default: the fastest measured path for the shape on this device, see
    :func:`resolve_method`), ``"filter"`` / ``"exact"`` (the fused Triton kernel's paths, CUDA
    or ``TRITON_INTERPRET=1``), ``"torch"`` (matmul + topk, :func:`rank_torch`) or ``"cpu"``
    (:func:`rank_cpu`, any device). Every path gives the same top-k up to ties and fp32
    summation order. Returns ``(scores [B, k] float32, ids [B, k] int64)`` on ``h``'s device,
    best first. The ``exclude`` format is described in :mod:`lite_export.kernels.reference`.
    Runs under ``torch.cuda.device(h.device)``.

    ``catalog``: a :class:`QuantizedCatalog` (:func:`quantize_catalog`) to score instead of
    ``W``; then ``W`` is the full-precision table the candidates are re-ranked against exactly
    (CPU only: ``None`` gives the quantized scores' top-k, inexact), ``b`` must be ``None`` (the
    catalog holds the bias) and ``method`` ``"auto"`` (CPU tensors: :func:`rank_quantized`;
    CUDA: :func:`~lite_export.kernels.fused.topk_quantized`, the filter kernel on the
    quantized rows), ``"cpu"`` or ``"filter"``. Either way the same ids as ranking ``W``.
    """
    if catalog is not None:
        return _rank_catalog(h, W, b, k, exclude, method, catalog)
    path = resolve_method(method, h, W, k, exclude)
    with dispatch.device_guard(h):
        if path == "cpu":
            return rank_cpu(h, W, b, k, exclude)
        if path == "torch":
            return rank_torch(h, W, b, k, exclude)
        from lite_export.kernels.fused import topk_projection as fused

        return fused(h, W, b, k, exclude, method=path)


def _rank_catalog(h, W, b, k, exclude, method, catalog):
    if not isinstance(catalog, QuantizedCatalog):
        raise TypeError(
            f"catalog must be a QuantizedCatalog (quantize_catalog(W, b)), got "
            f"{type(catalog).__name__}"
        )
    if b is not None:
        raise ValueError(
            "pass b=None with catalog=: the catalog holds the bias (quantize_catalog(W, b))"
        )
    if method not in ("auto", "cpu", "filter"):
        raise ValueError(
            f"a quantized catalog is ranked by the CPU path ('cpu') or the fused kernel's "
            f"filter path ('filter'; CUDA): method must be 'auto', 'cpu' or 'filter', got "
            f"{method!r}"
        )
    on_cuda = isinstance(h, torch.Tensor) and h.device.type == "cuda"
    if method == "cpu" or (method == "auto" and not on_cuda):
        return rank_quantized(h, catalog, k, exclude, W)
    if W is None:
        raise ValueError(
            "the fused kernel's quantized path re-ranks its candidates from the full-precision "
            "W: pass it (rank(h, W, k=..., catalog=cat))"
        )
    from lite_export.kernels.fused import topk_quantized

    with dispatch.device_guard(h):
        return topk_quantized(h, catalog, W, k, exclude)


def rank_static(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    exclude: torch.Tensor | None,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One concrete path (``"filter"``, ``"exact"``, ``"torch"`` or ``"cpu"``) on checked
    inputs, returning ``(scores [B, k], ids [B, k], ok [B] bool)``.

    On CUDA the ``"filter"``, ``"exact"`` and ``"torch"`` paths do no host synchronisation, so
    the call can be captured in a CUDA graph (run it once eagerly first: Triton compiles and the
    matmul mode is probed on the first call). ``ok`` is False only for rows the filter path could
    not settle; re-rank those with ``rank(..., method="exact")``. ``exclude`` is ``None`` or an
    int ``[B, H]`` tensor on ``h``'s device (padding: negative or ``>= N``). Call it under
    :func:`device_guard`.
    """
    B = h.shape[0]
    if method in ("filter", "exact"):
        from lite_export.kernels.fused import topk_projection_static

        return topk_projection_static(h, W, b, k, exclude, method)
    ok = torch.ones(B, dtype=torch.bool, device=h.device)
    if method == "torch":
        ex = normalize_exclude(exclude, B, W.shape[0], h.device, sort=False)
        scores, ids = _rank_torch(h, W, b, k, ex)
    elif method == "cpu":
        scores, ids = rank_cpu(h, W, b, k, exclude)
    else:
        raise ValueError(f"rank_static runs filter, exact, torch or cpu, got {method!r}")
    return scores, ids, ok
