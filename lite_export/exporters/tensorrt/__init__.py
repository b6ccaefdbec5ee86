"""TensorRT: a static compatibility check that runs anywhere, graph rewrites, and an engine builder.

Three modules, one concern each (like Polygraphy's ``backend/onnx`` loaders and
``backend/trt`` builder); every public name is importable from this package:

* :mod:`~lite_export.exporters.tensorrt.check` -- :func:`check_tensorrt_compat` reads an ONNX
  graph (a ``ModelProto`` or a path; external data is never loaded) and reports what TensorRT's
  ONNX parser would reject or handle badly. It needs only ``onnx``: it runs on every export, CPU
  included, and its :meth:`TensorRTReport.to_dict` goes into the artifact manifest.
* :mod:`~lite_export.exporters.tensorrt.rewrite` -- :func:`split_large_gather` /
  :func:`split_large_matmul` rewrite a graph whose constant tables exceed TensorRT's 2^31-1
  element limit into Gathers / MatMuls over chunks.
* :mod:`~lite_export.exporters.tensorrt.build` -- :func:`build_engine` turns ``model.onnx``
  into a serialized TensorRT plan (``model.plan``): a strongly typed network, one optimisation
  profile, a persistent timing cache, an atomic write. It imports ``tensorrt`` only when called
  and stops with :class:`TensorRTUnavailableError` (an ``ImportError``) where TensorRT or a CUDA
  GPU is missing.

Importing this package imports neither ``tensorrt`` nor ``onnx``.

Rules of the static check (``Finding.rule``), the severity they report with, and what they mean:

=========================  ========  ==========================================================
rule                       severity  finding
=========================  ========  ==========================================================
``unsupported-op``         error     op not in TensorRT's ONNX operator support matrix (or
                                     listed there as unsupported), or from a custom domain
``ort-contrib-op``         error     ONNX Runtime contrib op (``com.microsoft``), e.g. from
                                     ONNX Runtime graph optimisation / fusion
``op-restriction``         error     a documented restriction of a supported op is broken
                                     (e.g. ``LayerNormalization`` with its extra outputs used)
``constant-input-required`` error    an input TensorRT needs at build time (Reduce* ``axes``,
                                     ``Squeeze``/``Unsqueeze`` ``axes``, ``CumSum`` ``axis``,
                                     ``OneHot`` ``depth``) is computed at run time
``topk-k-too-large``       error     ``TopK`` with a constant K > 3840 (or K > the axis length)
``topk-k-not-constant``    warning   ``TopK`` K is a graph input or computed: TensorRT needs it
                                     as a build-time shape value <= 3840
``topk-unsorted``          error     ``TopK`` with ``sorted=0``
``topk-axis``              error     ``TopK`` over an axis that is not one of the last four
``tensor-too-large``       error     an initializer / ``Constant`` with more than 2^31-1
                                     elements (split it: :func:`split_large_gather`)
``tensor-volume``          warning   an inferred tensor whose static dims alone exceed 2^31-1
``unsupported-dtype``      error     string, complex, (u)int16, uint32/64, uint4, float8
                                     variants other than E4M3FN, sequence/map/optional types,
                                     uint8 inside the graph
``float64-cast``           warning   float64 tensors (TensorRT casts DOUBLE down to FLOAT)
``int64-cast``             warning   int64 data into an op TensorRT implements without INT64
``external-data``          error     an external-data file the parser will need is missing or
                                     shorter than the tensor it should hold
``opset``                  error /   default-domain opset outside TensorRT's 9-24 (warning
                           info      above 24; info outside the 17-21 range lite-export tests)
``dynamic-dim-unnamed``    info      a graph-input dim that is dynamic without a name, so no
                                     profile can refer to it
``shape-inference``        info      ONNX shape inference failed; dtype/shape rules saw less
=========================  ========  ==========================================================

Where each rule comes from is in :mod:`~lite_export.exporters.tensorrt.check`; how the builder
chooses strongly typed mode on TensorRT 10.x and 11.x is in
:mod:`~lite_export.exporters.tensorrt.build`.
"""

from __future__ import annotations

from lite_export.exporters.tensorrt.build import (
    INSTALL_HINT,
    CudaDeviceUnavailableError,
    Precision,
    ShapeTriple,
    TensorRTBuildError,
    TensorRTParseError,
    TensorRTUnavailableError,
    build_engine,
    cuda_device_count,
    network_creation_flags,
    tensorrt_available,
)
from lite_export.exporters.tensorrt.check import (
    INT64_OPS,
    MAX_ELEMENTS,
    REFERENCE,
    RULES,
    SUPPORTED_OPS,
    TESTED_OPSET_RANGE,
    TOPK_MAX_K,
    TRT_OPSET_RANGE,
    UNSUPPORTED_OPS,
    Finding,
    Severity,
    TensorRTCompatError,
    TensorRTReport,
    check_tensorrt_compat,
    graph_float_precision,
    tensor_num_elements,
)
from lite_export.exporters.tensorrt.rewrite import split_large_gather, split_large_matmul

__all__ = [
    "INSTALL_HINT",
    "INT64_OPS",
    "MAX_ELEMENTS",
    "REFERENCE",
    "RULES",
    "SUPPORTED_OPS",
    "TESTED_OPSET_RANGE",
    "TOPK_MAX_K",
    "TRT_OPSET_RANGE",
    "UNSUPPORTED_OPS",
    "CudaDeviceUnavailableError",
    "Finding",
    "Precision",
    "Severity",
    "ShapeTriple",
    "TensorRTBuildError",
    "TensorRTCompatError",
    "TensorRTParseError",
    "TensorRTReport",
    "TensorRTUnavailableError",
    "build_engine",
    "check_tensorrt_compat",
    "cuda_device_count",
    "graph_float_precision",
    "network_creation_flags",
    "split_large_gather",
    "split_large_matmul",
    "tensor_num_elements",
    "tensorrt_available",
]
