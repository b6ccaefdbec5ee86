"""The TensorRT builder: ``model.onnx`` -> a serialized plan (``model.plan``), on a GPU host.

:func:`build_engine` imports ``tensorrt`` only when called and stops with
:class:`TensorRTUnavailableError` (an ``ImportError``) where TensorRT or a CUDA GPU is missing;
the static check (:func:`lite_export.exporters.tensorrt.check_tensorrt_compat`) runs first, so a
graph TensorRT would reject is refused before TensorRT is touched.

Written against the TensorRT Python API of 10.x and 11.x
(https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html) and the
10.x -> 11.x migration reference, which lists what 11.x removed
(https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
): nothing used here is on that list.

Precision: the network is strongly typed, so every tensor keeps the type the ONNX graph gives it
and the ``--precision`` of the *ONNX export* decides the engine's precision;
``build_engine(precision=...)`` only checks that the graph matches it. On TensorRT 10.x strong
typing is asked for with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` ("to enable strongly
typed mode, pass a value of 1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED) to
create_network()", Builder reference,
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
); on TensorRT 11.x every network is strongly typed and that flag is "Deprecated in TensorRT
11.0. Strongly typed mode is always enabled. This flag is retained for API compatibility but is
ignored" (``kSTRONGLY_TYPED`` in the C++ API reference), so :func:`network_creation_flags` passes
it while it exists and builds with no flag (11.x's default) once a release drops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from lite_export.exporters.tensorrt.check import (
    TOPK_MAX_K,
    TensorRTCompatError,
    TensorRTReport,
    check_tensorrt_compat,
)

__all__ = [
    "INSTALL_HINT",
    "CudaDeviceUnavailableError",
    "TensorRTBuildError",
    "TensorRTParseError",
    "TensorRTUnavailableError",
    "build_engine",
    "cuda_device_count",
    "network_creation_flags",
    "tensorrt_available",
    "tensorrt_major",
]

log = logging.getLogger("lite_export.exporters.tensorrt")

Precision = Literal["fp32", "fp16", "bf16"]

INSTALL_HINT = (
    'On an NVIDIA GPU host install it with `pip install "lite-export[gpu]"` (pulls the `tensorrt` '
    "wheel) or follow NVIDIA's instructions at "
    "https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html . "
    "Without it the artifact still runs on ONNX Runtime (engine='onnxruntime')."
)


# --- errors -------------------------------------------------------------------------------------
class TensorRTUnavailableError(ImportError):
    """TensorRT cannot run here: the ``tensorrt`` package is missing or too old.

    An ``ImportError``, so an engine registry that picks ``auto`` can fall back quietly.
    """


class CudaDeviceUnavailableError(TensorRTUnavailableError):
    """TensorRT is installed but no CUDA GPU (or driver) is visible to this process."""


class TensorRTParseError(RuntimeError):
    """TensorRT's ONNX parser rejected the graph; ``errors`` lists every parser error."""

    def __init__(self, onnx_path: Path, errors: Sequence[str]) -> None:
        self.onnx_path = onnx_path
        self.errors = list(errors)
        listing = "\n".join(f"  {i + 1}. {e}" for i, e in enumerate(self.errors)) or "  (none)"
        super().__init__(
            f"TensorRT's ONNX parser rejected {onnx_path} with {len(self.errors)} error(s):\n"
            f"{listing}\nRun `check_tensorrt_compat({str(onnx_path)!r})` for fixes of known causes."
        )


class TensorRTBuildError(RuntimeError):
    """TensorRT parsed the graph but could not build an engine (profile, memory, tactics...)."""


# --- availability -------------------------------------------------------------------------------
def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works (version 10 or newer). Never raises."""
    try:
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            return False
        import tensorrt as trt

        return int(str(trt.__version__).split(".")[0]) >= 10
    except Exception:  # noqa: BLE001 - broken installs (missing libnvinfer...) count as absent
        return False


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 without a driver). Never raises.

    Asks ``libcuda`` directly, so a CPU-only torch wheel on a GPU host does not hide the GPU.
    """
    import ctypes

    for lib_name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            lib = ctypes.CDLL(lib_name)
            break
        except OSError:
            continue
    else:
        return 0
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except Exception:  # noqa: BLE001
        return 0


def tensorrt_major(trt: Any) -> int:
    """The major version of an imported ``tensorrt`` module (0 when it does not say)."""
    try:
        return int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    except ValueError:
        return 0


def network_creation_flags(trt: Any) -> int:
    """``create_network`` flags for a strongly typed network on this TensorRT (see module doc).

    ``1 << STRONGLY_TYPED`` while the flag exists (required on 10.x, accepted and ignored on
    11.x); 0 when a TensorRT of major version 11 or newer no longer has it, since strong typing
    is then the only mode. A 10.x without the flag cannot build strongly typed: refused.
    """
    flag_enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    flag = getattr(flag_enum, "STRONGLY_TYPED", None)
    if flag is not None:
        return 1 << int(flag)
    if tensorrt_major(trt) >= 11:
        return 0
    raise TensorRTUnavailableError(
        f"TensorRT {getattr(trt, '__version__', '?')} has no "
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED, so it cannot build the strongly typed "
        f"network lite-export needs (TensorRT 10.x has it; 11.x is always strongly typed). "
        f"{INSTALL_HINT}"
    )


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"TensorRT is not installed (import tensorrt failed: {exc}). Building a TensorRT "
            f"engine needs an NVIDIA GPU host with a CUDA driver. {INSTALL_HINT}"
        ) from exc
    except OSError as exc:  # the wheel is there, its shared libraries are not
        raise TensorRTUnavailableError(
            f"TensorRT is installed but its libraries did not load ({exc}). {INSTALL_HINT}"
        ) from exc
    if tensorrt_major(trt) < 10:
        raise TensorRTUnavailableError(
            f"TensorRT {getattr(trt, '__version__', '?')} is too old: lite-export builds strongly "
            f"typed networks with the named-tensor API of TensorRT >= 10. {INSTALL_HINT}"
        )
    network_creation_flags(trt)  # a 10.x without strong typing stops here, before the build
    return trt


# --- the builder --------------------------------------------------------------------------------
ShapeTriple = tuple[Sequence[int], Sequence[int], Sequence[int]]


def _as_dims(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{what} must be a tuple of ints such as (8, 50), got {value!r}")
    dims = tuple(value)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise ValueError(f"{what} must hold non-negative ints, got {value!r}")
    return dims


def _validate_profile(
    min_shapes: Mapping[str, Sequence[int]],
    opt_shapes: Mapping[str, Sequence[int]],
    max_shapes: Mapping[str, Sequence[int]],
    kind: str = "shape",
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    for label, m in (("min", min_shapes), ("opt", opt_shapes), ("max", max_shapes)):
        if not isinstance(m, Mapping):
            raise ValueError(f"{label}_{kind}s must be a dict input name -> tuple, got {m!r}")
    names = set(min_shapes) | set(opt_shapes) | set(max_shapes)
    out = {}
    for name in sorted(names):
        missing = [
            label
            for label, m in (("min", min_shapes), ("opt", opt_shapes), ("max", max_shapes))
            if name not in m
        ]
        if missing:
            raise ValueError(
                f"input {name!r} has no {'/'.join(missing)} {kind}; give min, opt and max for "
                "every input"
            )
        lo = _as_dims(min_shapes[name], f"min {kind} of {name!r}")
        mid = _as_dims(opt_shapes[name], f"opt {kind} of {name!r}")
        hi = _as_dims(max_shapes[name], f"max {kind} of {name!r}")
        if not len(lo) == len(mid) == len(hi):
            raise ValueError(
                f"min/opt/max {kind}s of {name!r} have different ranks: {lo}, {mid}, {hi}"
            )
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError(
                f"{kind}s of {name!r} must satisfy min <= opt <= max in every dim, got "
                f"min={lo} opt={mid} max={hi}"
            )
        out[name] = (lo, mid, hi)
    return out


def _check_profile_against_model(
    report: TensorRTReport, shapes: Mapping[str, tuple[tuple[int, ...], ...]]
) -> None:
    unknown = sorted(set(shapes) - set(report.inputs))
    if unknown:
        raise ValueError(
            f"profile names {unknown}, which are not inputs of the model; its inputs are "
            f"{sorted(report.inputs)}"
        )
    for name, info in report.inputs.items():
        dims = info["shape"]
        dynamic = any(not isinstance(d, int) for d in dims)
        if name not in shapes:
            if dynamic:
                raise ValueError(
                    f"input {name!r} has dynamic shape {dims} but no min/opt/max shapes; add "
                    f"e.g. min_shapes[{name!r}]=(1, 1) ... max_shapes[{name!r}]=(64, 200)"
                )
            continue
        for which, shape in zip(("min", "opt", "max"), shapes[name], strict=True):
            if len(shape) != len(dims):
                raise ValueError(
                    f"{which} shape {shape} of input {name!r} has rank {len(shape)}, the model's "
                    f"input has rank {len(dims)} {dims}"
                )
            for i, (want, got) in enumerate(zip(dims, shape, strict=True)):
                if isinstance(want, int) and want != got:
                    raise ValueError(
                        f"{which} shape {shape} of input {name!r} sets dim {i} to {got}, but the "
                        f"model fixes it at {want}"
                    )


def _atomic_write(path: Path, data: bytes | memoryview) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to ``logging`` and keeps errors for our exceptions."""
    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.ERROR,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.INFO,
        sev.VERBOSE: logging.DEBUG,
    }

    class _CollectingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(msg)
            log.log(level, "TensorRT: %s", msg)

    return _CollectingLogger()


def _format_parser_error(err: Any) -> str:
    def get(name: str) -> Any:
        fn = getattr(err, name, None)
        try:
            return fn() if callable(fn) else fn
        except Exception:  # noqa: BLE001
            return None

    node, node_name, op = get("node"), get("node_name"), get("node_operator")
    where = []
    if node is not None and node >= 0:
        where.append(f"node #{node}")
    if node_name:
        where.append(repr(node_name))
    if op:
        where.append(f"({op})")
    stack = get("local_function_stack")
    if stack:
        where.append("in function " + "/".join(stack))
    code = get("code")
    code_s = f" [{getattr(code, 'name', code)}]" if code is not None else ""
    prefix = " ".join(where)
    return f"{prefix + ': ' if prefix else ''}{get('desc') or 'unknown error'}{code_s}"


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    min_shapes: Mapping[str, Sequence[int]],
    opt_shapes: Mapping[str, Sequence[int]],
    max_shapes: Mapping[str, Sequence[int]],
    precision: Precision = "fp16",
    timing_cache: str | Path | None = None,
    workspace_gb: float | None = None,
    shape_values: Mapping[str, ShapeTriple] | None = None,
) -> Path:
    """Build a serialized TensorRT engine (``.plan``) from an ONNX graph; returns ``plan_path``.

    * ``min_shapes`` / ``opt_shapes`` / ``max_shapes``: input name -> shape, e.g.
      ``{"item_ids": (1, 1)}``, ``{"item_ids": (8, 50)}``, ``{"item_ids": (64, 200)}`` for
      ``[B, L]``; one optimisation profile is made from them. Every dynamic input needs all three.
    * ``shape_values``: min/opt/max *values* for shape-tensor inputs, e.g. a graph input that sets
      TopK's K: ``{"k": ((1,), (10,), (100,))}`` (keep max <= 3840).
    * ``precision``: what the ONNX graph was exported in. The network is strongly typed, so the
      graph's dtypes decide the engine's precision and this only verifies they match (re-export
      with ``--precision`` to change it). ``fp32`` also turns TF32 off to keep fp32 parity.
    * ``timing_cache``: file to load tactic timings from (if it exists) and save them back to;
      rebuilds of the same graph on the same GPU/TensorRT then skip most tactic timing.
    * ``workspace_gb``: cap on TensorRT's scratch memory (default: TensorRT's, the GPU's memory).

    The static check (:func:`check_tensorrt_compat`) runs first and a graph with errors is
    refused with :class:`TensorRTCompatError` before TensorRT is touched. Raises
    :class:`TensorRTUnavailableError` without TensorRT, :class:`CudaDeviceUnavailableError`
    without a CUDA GPU, :class:`TensorRTParseError` (every parser error listed) and
    :class:`TensorRTBuildError`. The plan is written atomically (temporary file + ``os.replace``).
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
    if workspace_gb is not None and not workspace_gb > 0:
        raise ValueError(
            f"workspace_gb must be > 0 (or None for TensorRT's default), got {workspace_gb}"
        )
    if not onnx_path.is_file():
        raise FileNotFoundError(f"No ONNX model at {onnx_path}")
    shapes = _validate_profile(min_shapes, opt_shapes, max_shapes)
    for name, triple in (shape_values or {}).items():
        if isinstance(triple, str | bytes) or not isinstance(triple, Sequence) or len(triple) != 3:
            raise ValueError(
                f"shape_values[{name!r}] must be (min, opt, max) value tuples such as "
                f"((1,), (10,), (100,)), got {triple!r}"
            )
    values = _validate_profile(
        {n: v[0] for n, v in (shape_values or {}).items()},
        {n: v[1] for n, v in (shape_values or {}).items()},
        {n: v[2] for n, v in (shape_values or {}).items()},
        kind="value",
    )

    # 1. Static check and argument checks: no TensorRT needed, so they fail fast everywhere.
    report = check_tensorrt_compat(onnx_path)
    if not report.ok:
        raise TensorRTCompatError(report)
    _check_profile_against_model(report, shapes)
    for name in report.shape_inputs:
        if name not in values:
            raise ValueError(
                f"input {name!r} sets TopK's K at run time; pass its bounds as "
                f"shape_values={{{name!r}: ((1,), (10,), ({TOPK_MAX_K},))}} (max <= {TOPK_MAX_K})"
            )
        if any(v > TOPK_MAX_K for v in values[name][2]):
            raise ValueError(
                f"shape_values for {name!r} allow K up to {max(values[name][2])}; TensorRT's "
                f"TopK takes K <= {TOPK_MAX_K}"
            )
    unknown_values = sorted(set(values) - set(report.inputs))
    if unknown_values:
        raise ValueError(
            f"shape_values names {unknown_values}, which are not inputs of the model; its inputs "
            f"are {sorted(report.inputs)}"
        )
    if report.precision is not None and report.precision != precision:
        raise ValueError(
            f"{onnx_path.name} holds {report.precision} weights but precision={precision!r} was "
            "asked. TensorRT builds a strongly typed network whose precision is the ONNX graph's: "
            f"re-export with `lite export --precision {precision}` (or pass "
            f"precision={report.precision!r})"
        )

    # 2. TensorRT and a GPU.
    trt = _import_tensorrt()
    if cuda_device_count() < 1:
        raise CudaDeviceUnavailableError(
            "TensorRT is installed but no CUDA GPU is visible (no NVIDIA driver, or "
            "CUDA_VISIBLE_DEVICES hides every device); build the engine on the GPU host that will "
            "run it (engines are specific to the GPU model and TensorRT version)"
        )
    logger = _make_logger(trt)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # noqa: BLE001 - CUDA initialisation failures surface here
        raise CudaDeviceUnavailableError(
            f"TensorRT could not create a builder ({exc}); {' '.join(logger.errors)}"
        ) from exc
    if builder is None:
        raise CudaDeviceUnavailableError(
            f"TensorRT could not create a builder: {' '.join(logger.errors) or 'no CUDA device?'}"
        )

    # 3. Parse into a strongly typed network: precision comes from the graph's dtypes.
    network = builder.create_network(network_creation_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path.resolve())):  # resolves external data next to it
        errors = [_format_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise TensorRTParseError(onnx_path, errors or logger.errors)

    # 4. One optimisation profile.
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name = tensor.name
        if tensor.is_shape_tensor:
            if name not in values:
                raise ValueError(
                    f"input {name!r} is a shape tensor for TensorRT; pass its min/opt/max values "
                    f"as shape_values={{{name!r}: ((...), (...), (...))}}"
                )
            profile.set_shape_input(name, *values[name])
        if any(d < 0 for d in tuple(tensor.shape)):
            if name not in shapes:
                raise ValueError(
                    f"input {name!r} is dynamic in TensorRT; give it min/opt/max shapes"
                )
            profile.set_shape(name, *shapes[name])
        elif name in shapes:
            profile.set_shape(name, *shapes[name])
    if config.add_optimization_profile(profile) < 0:
        raise TensorRTBuildError(
            f"TensorRT rejected the optimisation profile (shapes {shapes}, values {values}): "
            f"{' '.join(logger.errors)}"
        )

    # 5. Builder config: workspace, TF32 for fp32 parity, timing cache.
    if workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 matmuls would miss the 1e-4 fp32 parity
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        try:
            cache = config.create_timing_cache(blob)
        except Exception:  # noqa: BLE001 - a corrupt cache file must not stop the build
            cache = None
        if cache is None and blob:  # corrupt or from another TensorRT: start afresh
            log.warning("timing cache %s could not be read; starting a new one", cache_path)
            cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log.warning(
                "timing cache %s does not match this GPU/TensorRT; starting afresh", cache_path
            )
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    # 6. Build, then write the plan (and the grown timing cache) atomically.
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTBuildError(
            f"TensorRT could not build an engine from {onnx_path}: "
            f"{' | '.join(logger.errors) or 'see the TensorRT log above'}. Try a larger "
            "workspace_gb, smaller max shapes, or check the graph with check_tensorrt_compat"
        )
    _atomic_write(plan_path, memoryview(serialized))
    if cache_path is not None:
        cache_blob = config.get_timing_cache().serialize()
        _atomic_write(cache_path, memoryview(cache_blob))
    log.info("TensorRT engine written to %s (%d bytes)", plan_path, plan_path.stat().st_size)
    return plan_path
