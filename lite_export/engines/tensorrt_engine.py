"""Native TensorRT engine: runs model.plan (built by `lite export --format tensorrt`).

Written against TensorRT's Python runtime API (10.x and 11.x: ``Runtime.deserialize_cuda_engine``,
named I/O tensors with ``IExecutionContext.set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``; https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
). The plan accepts only the shapes of its optimisation profile, which this engine reads from the
plan itself (``ICudaEngine.get_tensor_profile_shape(name, 0)`` -> min, opt, max;
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Engine.html ),
falling back to ``manifest.json``'s ``profile``. Every call is kept inside it by
:func:`lite_export.engines.profile.run_in_profile` (large batches split, long exclusion lists
chunked with identical results), and a shape TensorRT still refuses raises
:class:`TensorRTShapeError` naming the input, its shape and the profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lite_export.engines.base import Engine, EngineUnavailableError
from lite_export.engines.profile import INPUTS, InputProfile, ProfileError, run_in_profile

INSTALL = (
    'TensorRT needs an NVIDIA GPU host: pip install "lite-export[gpu]" there (tensorrt, '
    "onnxruntime-gpu), then build the plan with `lite export CKPT --out ART --format tensorrt`"
)


class TensorRTShapeError(ProfileError):
    """TensorRT refused an input shape (``set_input_shape`` returned False)."""


def plan_profile(engine, profile_index: int = 0) -> InputProfile | None:
    """The plan's own min/opt/max shapes of ``item_ids`` and ``exclude_ids`` (None if unreadable).

    ``ICudaEngine.get_tensor_profile_shape(name, profile_index)`` returns ``[min, opt, max]``.
    """
    try:
        shapes = {
            name: [
                tuple(int(d) for d in s)
                for s in engine.get_tensor_profile_shape(name, profile_index)
            ]
            for name in INPUTS
        }
        return InputProfile.from_shapes(shapes, source="model.plan")
    except Exception:  # noqa: BLE001 - an older binding or an odd plan: use the manifest's
        return None


def set_input_shapes(
    context, shapes: Mapping[str, Sequence[int]], profile: InputProfile | None
) -> None:
    """``context.set_input_shape`` for every input; a refusal raises :class:`TensorRTShapeError`.

    ``IExecutionContext.set_input_shape`` returns False (and logs) when the shape is outside the
    optimisation profile; it does not raise, so ignoring it would only surface later as a failed
    ``execute_async_v3``.
    """
    for name, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        if not context.set_input_shape(name, shape):
            allowed = str(getattr(profile, name)) if profile is not None else "unknown"
            where = profile.source if profile is not None else "model.plan"
            raise TensorRTShapeError(
                f"TensorRT refused input {name} of shape {list(shape)}: the optimisation profile "
                f"of {where} allows {allowed}. Rebuild the plan with `lite export --format "
                "tensorrt --max-shape BATCH,HISTORY --max-exclude H --force` to cover it"
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
        # the plan's profile is what TensorRT enforces; the manifest's (or none, for artifacts
        # exported before it was recorded) only when the plan does not say
        self.profile = plan_profile(self.engine) or InputProfile.from_manifest(self.manifest)

    @property
    def info(self) -> dict:
        profile = getattr(self, "profile", None)
        return {**super().info, "profile": profile.to_manifest() if profile else None}

    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        if self.profile is None:
            return self._run(item_ids, exclude_ids)
        return run_in_profile(self._run, item_ids, exclude_ids, k, self.profile, self.num_items)

    def _run(self, item_ids: np.ndarray, exclude_ids: np.ndarray):
        """One plan execution: shapes first (a refusal raises, naming the profile), then run."""
        shapes = {"item_ids": item_ids.shape, "exclude_ids": exclude_ids.shape}
        set_input_shapes(self.context, shapes, self.profile)
        return self._execute(item_ids, exclude_ids)

    def _execute(self, item_ids: np.ndarray, exclude_ids: np.ndarray):
        """Copy in, ``execute_async_v3`` on this engine's stream, copy out (shapes already set)."""
        import torch

        inputs = {
            "item_ids": torch.from_numpy(np.ascontiguousarray(item_ids)).cuda(),
            "exclude_ids": torch.from_numpy(np.ascontiguousarray(exclude_ids)).cuda(),
        }
        b = item_ids.shape[0]
        outputs = {
            "scores": torch.empty((b, self.max_k), dtype=torch.float32, device="cuda"),
            "indices": torch.empty((b, self.max_k), dtype=torch.int64, device="cuda"),
        }
        for name, t in {**inputs, **outputs}.items():
            self.context.set_tensor_address(name, t.data_ptr())
        # the inputs were copied on the default stream; run after them
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(
                f"TensorRT execution failed for item_ids {list(item_ids.shape)}, exclude_ids "
                f"{list(exclude_ids.shape)} (see the TensorRT log above)"
            )
        self.stream.synchronize()
        return outputs["scores"].cpu().numpy(), outputs["indices"].cpu().numpy()
