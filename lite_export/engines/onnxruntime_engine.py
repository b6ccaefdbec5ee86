"""ONNX Runtime engine: CPU, and CUDA / TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import numpy as np

from lite_export.engines.base import Engine, EngineUnavailableError

INSTALL = 'pip install "lite-export[onnx]" (CPU) or "lite-export[gpu]" (onnxruntime-gpu, TensorRT)'


class OnnxRuntimeEngine(Engine):
    """Runs model.ort.onnx (ONNX Runtime's optimised graph) or model.onnx.

    Options: ``providers`` (default: TensorRT, CUDA when available, else CPU), ``threads``
    (intra-op threads), ``graph`` ("model.ort.onnx" | "model.onnx").
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
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider",) if p in available] + [
                "CPUExecutionProvider"
            ]
        missing = [p for p in providers if p not in available]
        if missing:
            raise EngineUnavailableError(
                f"ONNX Runtime here offers {available}, not {missing}; for GPU providers install "
                'onnxruntime-gpu (pip install "lite-export[gpu]") on a CUDA host'
            )
        graph = self.options.get("graph")
        if graph is None:
            # model.ort.onnx was optimised for the CPU provider (it may hold CPU contrib ops);
            # every other provider gets the portable graph
            cpu_only = providers == ["CPUExecutionProvider"]
            has_ort = (self.path / "model.ort.onnx").exists()
            graph = "model.ort.onnx" if cpu_only and has_ort else "model.onnx"
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.options.get("threads"):
            so.intra_op_num_threads = int(self.options["threads"])
        self.graph = graph
        self.providers = providers
        self.session = ort.InferenceSession(str(self.path / graph), so, providers=providers)

    @property
    def info(self) -> dict:
        return {
            **super().info,
            "graph": getattr(self, "graph", None),
            "providers": getattr(self, "providers", None),
        }

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        scores, indices = self.session.run(
            ["scores", "indices"], {"item_ids": item_ids, "exclude_ids": exclude_ids}
        )
        return scores, indices
