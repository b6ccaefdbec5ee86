"""ONNX Runtime engine: CPU, and the CUDA and TensorRT execution providers of onnxruntime-gpu.

The ``gpu`` extra pins a matching pair: onnxruntime-gpu 1.31.1, whose TensorRT execution
provider (``libonnxruntime_providers_tensorrt.so``) links ``libnvinfer.so.10`` and CUDA 13, and
tensorrt 10.16.1.11 (CUDA 13 build), whose wheels provide ``libnvinfer.so.10``
(``tools/wheel_sonames.json`` records both wheels' ``NEEDED`` entries;
``tests/exporters/test_gpu_pins.py`` keeps the pins and that table agreeing). The provider is
used only when asked for (``providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"]``):
ONNX Runtime then builds its own TensorRT engine at the first call of each new shape.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from lite_export.engines.base import Engine, EngineUnavailableError
from lite_export.engines.profile import InputProfile, run_in_profile

log = logging.getLogger(__name__)

INSTALL = 'pip install "lite-export[onnx]" (CPU) or "lite-export[gpu]" (onnxruntime-gpu, TensorRT)'
#: What the TensorRT execution provider of the pinned onnxruntime-gpu links (readelf -d).
TENSORRT_PROVIDER_NEEDS = "libnvinfer.so.10 (TensorRT 10.x)"


def _preload_tensorrt() -> str | None:
    """Import the ``tensorrt`` wheel so its ``libnvinfer.so.10`` is loaded before ONNX Runtime
    opens its TensorRT provider library; returns why it could not, or None.

    The provider library finds ``libnvinfer`` through the dynamic linker, which matches a library
    already loaded in the process by its soname; the ``tensorrt`` wheel's libraries live in
    site-packages, off the linker's search path, and are loaded by ``import tensorrt``.
    """
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported only if the provider then fails to load
        return f"{type(exc).__name__}: {exc}"
    return None


class OnnxRuntimeEngine(Engine):
    """Runs model.ort.onnx (ONNX Runtime's optimised graph) or model.onnx.

    Options: ``providers`` (default: CUDA when available, else CPU; the TensorRT provider only
    when named), ``threads`` (intra-op threads), ``graph`` ("model.ort.onnx" | "model.onnx"),
    ``enforce_profile`` (default True: keep every call inside the input profile that
    ``manifest.json`` records, exactly as the TensorRT engine must; see
    :mod:`lite_export.engines.profile`).
    """

    name = "onnxruntime"

    def _load_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineUnavailableError(
                f"the onnxruntime engine needs ONNX Runtime: {INSTALL}"
            ) from None
        available = ort.get_available_providers()
        providers = self.options.get("providers")
        asked = providers is not None
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider",) if p in available] + [
                "CPUExecutionProvider"
            ]
        names = [p[0] if isinstance(p, tuple) else p for p in providers]
        missing = [p for p in names if p not in available]
        if missing:
            raise EngineUnavailableError(
                f"ONNX Runtime here offers {available}, not {missing}; for GPU providers install "
                'onnxruntime-gpu (pip install "lite-export[gpu]") on a CUDA host'
            )
        preload_error = None
        if "TensorrtExecutionProvider" in names:
            preload_error = _preload_tensorrt()
        if set(names) & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
            # CUDA 13 / cuDNN 9 from the nvidia-* wheels (torch's CUDA build installs them):
            # "Preload CUDA 12.x+ and optional cuDNN 9.x DLLs ... search order: ... nvidia site
            # packages, default DLL loading paths" (onnxruntime.preload_dlls, ONNX Runtime >= 1.21)
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        graph = self.options.get("graph")
        if graph is None:
            # model.ort.onnx was optimised for the CPU provider (it may hold CPU contrib ops);
            # every other provider gets the portable graph
            cpu_only = names == ["CPUExecutionProvider"]
            has_ort = (self.path / "model.ort.onnx").exists()
            graph = "model.ort.onnx" if cpu_only and has_ort else "model.onnx"
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.options.get("threads"):
            so.intra_op_num_threads = int(self.options["threads"])
        self.graph = graph
        self.session = ort.InferenceSession(str(self.path / graph), so, providers=providers)
        # ONNX Runtime falls back to other providers (printing "EP Error") when one fails to
        # load, e.g. the TensorRT provider without libnvinfer.so.10: a provider asked for by
        # name is an error, the automatic CUDA choice a warning
        active = self.session.get_providers()
        lost = [p for p in names if p not in active]
        self.providers = active
        if lost and not asked:
            log.warning(
                "ONNX Runtime could not start %s (running on %s): its CUDA 13 / cuDNN 9 "
                "libraries did not load (import torch first, or install the nvidia-* CUDA 13 "
                "wheels)",
                lost,
                active,
            )
        elif lost:
            why = ""
            if "TensorrtExecutionProvider" in lost:
                why = (
                    f" ONNX Runtime's TensorRT provider needs {TENSORRT_PROVIDER_NEEDS} and CUDA "
                    '13: pip install "lite-export[gpu]" (pins tensorrt==10.16.1.11 beside '
                    "onnxruntime-gpu==1.31.1); TensorRT 11 ships libnvinfer.so.11, which this "
                    "provider cannot load"
                    + (f" (import tensorrt failed: {preload_error})" if preload_error else "")
                    + '. Or run model.plan natively: lite_export.load(ART, engine="tensorrt")'
                )
            raise EngineUnavailableError(
                f"ONNX Runtime could not start {lost} (running on {active} instead).{why}"
            )
        self.profile = None
        if self.options.get("enforce_profile", True):
            self.profile = InputProfile.from_manifest(self.manifest)

    @property
    def info(self) -> dict:
        profile = getattr(self, "profile", None)
        return {
            **super().info,
            "graph": getattr(self, "graph", None),
            "providers": getattr(self, "providers", None),
            "profile": profile.to_manifest() if profile else None,
        }

    def _run(self, item_ids: np.ndarray, exclude_ids: np.ndarray):
        scores, indices = self.session.run(
            ["scores", "indices"], {"item_ids": item_ids, "exclude_ids": exclude_ids}
        )
        return scores, indices

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        if self.profile is None:
            return self._run(item_ids, exclude_ids)
        return run_in_profile(self._run, item_ids, exclude_ids, k, self.profile, self.num_items)
