"""Native TensorRT engine: runs model.plan (built by `lite export --format tensorrt`)."""

from __future__ import annotations

import numpy as np

from lite_export.engines.base import Engine, EngineUnavailableError

INSTALL = (
    'TensorRT needs an NVIDIA GPU host: pip install "lite-export[gpu]" there (tensorrt, '
    "onnxruntime-gpu), then build the plan with `lite export CKPT --out ART --format tensorrt`"
)


class TensorRTEngine(Engine):
    """Deserialises model.plan with the TensorRT runtime and runs it on torch CUDA buffers."""

    name = "tensorrt"

    def _load_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise EngineUnavailableError(f"the tensorrt engine needs TensorRT: {INSTALL}") from None
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailableError("the tensorrt engine needs a CUDA GPU; none is visible")
        plan = self.path / "model.plan"
        if not plan.is_file():
            raise EngineUnavailableError(
                f"{plan} does not exist; build it with `lite export CKPT --out {self.path} "
                "--format tensorrt --force` on this GPU host"
            )
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise EngineUnavailableError(
                f"TensorRT could not deserialise {plan} (built by another TensorRT version or GPU?)"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        import torch

        inputs = {
            "item_ids": torch.from_numpy(item_ids).cuda(),
            "exclude_ids": torch.from_numpy(exclude_ids).cuda(),
        }
        b = item_ids.shape[0]
        outputs = {
            "scores": torch.empty((b, self.max_k), dtype=torch.float32, device="cuda"),
            "indices": torch.empty((b, self.max_k), dtype=torch.int64, device="cuda"),
        }
        for name, t in inputs.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        for name, t in outputs.items():
            self.context.set_tensor_address(name, t.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
        self.stream.synchronize()
        return outputs["scores"].cpu().numpy(), outputs["indices"].cpu().numpy()
