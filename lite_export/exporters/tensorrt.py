"""TensorRT: a static compatibility check that runs anywhere, and an engine builder for GPU hosts.

* :func:`check_tensorrt_compat` reads an ONNX graph (a ``ModelProto`` or a path; external data is
  never loaded) and reports what TensorRT's ONNX parser would reject or handle badly. It needs
  only ``onnx``: it runs on every export, CPU included, and its :meth:`TensorRTReport.to_dict`
  goes into the artifact manifest.
* :func:`build_engine` turns ``model.onnx`` into a serialized TensorRT plan (``model.plan``): a
  strongly typed network, one optimisation profile, a persistent timing cache, an atomic write.
  It imports ``tensorrt`` only when called and stops with :class:`TensorRTUnavailableError`
  (an ``ImportError``) where TensorRT or a CUDA GPU is missing.
* :func:`split_large_gather` / :func:`split_large_matmul` rewrite a graph whose constant tables
  exceed TensorRT's 2^31-1 element limit into Gathers / MatMuls over chunks.

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

The supported-operator list and its restrictions come from ONNX-TensorRT's operator support
matrix, ``docs/operators.md`` for TensorRT 10.15 ("supports operators in the inclusive range of
opset 9 to opset 24"), https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md , which
NVIDIA's ONNX opset guide points to
(https://docs.nvidia.com/deeplearning/tensorrt/latest/reference/onnx-opset-guide.html). The TopK
limit is in the TopK operator reference ("k <= 3840"; the support matrix says "less than 3840")
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/TopK.html , which also
states the per-tensor volume limit of 2^31-1 elements that we apply to every constant.
Earlier TensorRT 10.x releases lack a few of the newer importers (e.g. ``Gelu``,
``RMSNormalization``); lite-export exports opset 17-21, where none of those appear.

Precision: :func:`build_engine` creates a *strongly typed* network
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; NVIDIA's recommended mode since 10.12 and the
only one in 11.x), so every tensor keeps the type the ONNX graph gives it and no FP16/BF16
builder flag exists to change that. The ``--precision`` of the *ONNX export* therefore decides the
engine's precision; ``build_engine(precision=...)`` only checks that the graph matches it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - type checkers only; onnx is imported on first use
    import onnx

__all__ = [
    "MAX_ELEMENTS",
    "RULES",
    "TOPK_MAX_K",
    "CudaDeviceUnavailableError",
    "Finding",
    "TensorRTBuildError",
    "TensorRTCompatError",
    "TensorRTParseError",
    "TensorRTReport",
    "TensorRTUnavailableError",
    "build_engine",
    "check_tensorrt_compat",
    "cuda_device_count",
    "graph_float_precision",
    "split_large_gather",
    "split_large_matmul",
    "tensor_num_elements",
    "tensorrt_available",
]

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]
Precision = Literal["fp32", "fp16", "bf16"]

#: Most elements one TensorRT tensor / weights blob may hold (operator "Volume Limits").
MAX_ELEMENTS = 2**31 - 1
#: Largest K TensorRT's TopK accepts (operators/TopK.html: ``k <= 3840``).
TOPK_MAX_K = 3840
#: Opsets TensorRT 10.15's parser documents; lite-export exports and tests 17-21.
TRT_OPSET_RANGE = (9, 24)
TESTED_OPSET_RANGE = (17, 21)
#: Where the rules come from, written into ``to_dict()`` so a manifest says what was checked.
REFERENCE = (
    "TensorRT 10.15 ONNX parser support matrix (onnx-tensorrt docs/operators.md), opset 9-24"
)

INSTALL_HINT = (
    'On an NVIDIA GPU host install it with `pip install "lite-export[gpu]"` (pulls the `tensorrt` '
    "wheel) or follow NVIDIA's instructions at "
    "https://docs.nvidia.com/deeplearning/tensorrt/latest/installing-tensorrt/installing.html . "
    "Without it the artifact still runs on ONNX Runtime (engine='onnxruntime')."
)

RULES: dict[str, str] = {
    "unsupported-op": "op not supported by TensorRT's ONNX parser",
    "ort-contrib-op": "ONNX Runtime contrib op (com.microsoft), not an ONNX standard op",
    "op-restriction": "a documented TensorRT restriction of a supported op is broken",
    "constant-input-required": "an input TensorRT needs at build time is computed at run time",
    "topk-k-too-large": "TopK with constant K > 3840 or K > the axis length",
    "topk-k-not-constant": "TopK K is not a build-time constant",
    "topk-unsorted": "TopK with sorted=0",
    "topk-axis": "TopK over an axis that is not one of the last four",
    "tensor-too-large": "constant with more than 2^31-1 elements",
    "tensor-volume": "tensor whose static dims alone exceed 2^31-1 elements",
    "unsupported-dtype": "data type TensorRT does not support",
    "float64-cast": "float64 tensors that TensorRT casts down to float32",
    "int64-cast": "int64 data into an op TensorRT implements without INT64",
    "external-data": "external-data file missing or too short",
    "opset": "opset outside the parser's documented range",
    "dynamic-dim-unnamed": "dynamic input dim without a name",
    "shape-inference": "ONNX shape inference failed",
}


# --- the operator support matrix (TensorRT 10.15, onnx-tensorrt docs/operators.md) ---------------
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Rows marked "Y". Kept as data so a new TensorRT release is a one-line diff.
SUPPORTED_OPS: frozenset[str] = _words(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
    BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
    Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
    Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """
)
# Rows marked "N": named in the message so users see it is a known gap, not an oversight.
UNSUPPORTED_OPS: frozenset[str] = _words(
    """
    AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad
    Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder
    MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss
    Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength
    SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit
    TfIdfVectorizer Unique
    """
)
# Supported ops whose "Supported Types" column includes INT64 (the rest are cast or rejected).
INT64_OPS: frozenset[str] = _words(
    """
    Abs Add ArgMax ArgMin Cast CastLike Concat Constant ConstantOfShape DepthToSpace Div Equal
    Expand EyeLike Flatten Gather GatherElements GatherND Gelu Greater GreaterOrEqual Identity If
    IsNaN Less LessOrEqual Loop Max Mean Min Mod Mul Neg OneHot Pad Pow Range ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape ReverseSequence Scatter ScatterElements ScatterND Shape Shrink Sign
    Size Slice SpaceToDepth Split Squeeze Sub Sum Tile TopK Transpose Trilu Unsqueeze Where
    """
)
_REDUCE_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Reduce"))
_RANDOM_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Random")) | {"Bernoulli"}
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Ops that pass a value through unchanged (for following K back to its constant).
_PASS_THROUGH = frozenset({"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})


# --- the report ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One thing TensorRT would reject (``error``), handle badly (``warning``) or should know."""

    rule: str
    severity: Severity
    message: str
    node: str | None = None  # node name, or tensor name for tensor rules
    op_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the manifest."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "node": self.node,
            "op_type": self.op_type,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = ""
        if self.op_type and self.node:
            where = f"{self.op_type} {self.node!r}: "
        elif self.node:
            where = f"{self.node!r}: "
        return f"{self.severity.upper():7} {self.rule}: {where}{self.message}"


@dataclass
class TensorRTReport:
    """What :func:`check_tensorrt_compat` found. ``ok`` means no errors (warnings allowed)."""

    findings: list[Finding] = field(default_factory=list)
    model: str | None = None
    opset: int | None = None
    precision: str | None = None  # the graph's main float type: fp32 / fp16 / bf16 / None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> dtype, shape
    #: Graph inputs that TensorRT will treat as shape tensors (TopK's K): they need min/opt/max
    #: *values* (``build_engine(shape_values=...)``), not shapes.
    shape_inputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing would make TensorRT reject the graph."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    def by_rule(self, rule: str) -> list[Finding]:
        """The findings of one rule (see :data:`RULES`)."""
        return [f for f in self.findings if f.rule == rule]

    @property
    def dynamic_inputs(self) -> dict[str, list[int | str | None]]:
        """Inputs with dynamic dims: ``{name: [dim, ...]}``, a name (str) or None per dynamic dim.

        These are the inputs :func:`build_engine` needs min/opt/max shapes for.
        """
        return {
            name: info["shape"]
            for name, info in self.inputs.items()
            if any(not isinstance(d, int) for d in info["shape"])
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for ``manifest.json``."""
        return {
            "ok": self.ok,
            "reference": REFERENCE,
            "model": self.model,
            "opset": self.opset,
            "precision": self.precision,
            "counts": {
                "error": len(self.errors),
                "warning": len(self.warnings),
                "info": len(self.infos),
            },
            "inputs": self.inputs,
            "shape_inputs": self.shape_inputs,
            "findings": [f.to_dict() for f in self.findings],
        }

    def __str__(self) -> str:
        name = Path(self.model).name if self.model else "ONNX graph"
        what = ", ".join(
            x for x in (f"opset {self.opset}" if self.opset else "", self.precision or "") if x
        )
        head = f"TensorRT static check of {name}" + (f" ({what})" if what else "")
        if not self.findings:
            return f"{head}: no findings; TensorRT's ONNX parser should accept this graph."
        counts = (
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s), {len(self.infos)} info"
        )
        verdict = "TensorRT would reject it" if self.errors else "TensorRT should accept it"
        order = {"error": 0, "warning": 1, "info": 2}
        lines = [f"{head}: {counts}; {verdict}."]
        lines += [f"  {f}" for f in sorted(self.findings, key=lambda f: order[f.severity])]
        return "\n".join(lines)


# --- errors -------------------------------------------------------------------------------------
class TensorRTUnavailableError(ImportError):
    """TensorRT cannot run here: the ``tensorrt`` package is missing or too old.

    An ``ImportError``, so an engine registry that picks ``auto`` can fall back quietly.
    """


class CudaDeviceUnavailableError(TensorRTUnavailableError):
    """TensorRT is installed but no CUDA GPU (or driver) is visible to this process."""


class TensorRTCompatError(ValueError):
    """The static check found errors; ``report`` holds every finding."""

    def __init__(self, report: TensorRTReport) -> None:
        self.report = report
        super().__init__(
            f"{report}\nFix the errors above (or re-export) before building a TensorRT engine."
        )


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


# --- small helpers ------------------------------------------------------------------------------
def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is in the test environment
        raise ImportError(
            "The TensorRT static check reads ONNX graphs and needs the `onnx` package: "
            'pip install "lite-export[onnx]"'
        ) from exc
    return onnx


def tensor_num_elements(tensor: onnx.TensorProto | Sequence[int]) -> int:
    """Number of elements of a tensor from its dims alone (no data is read; a scalar is 1).

    Works for tensors whose data lives in external files that were not loaded.
    """
    dims = getattr(tensor, "dims", tensor)
    return math.prod(int(d) for d in dims)


def _dtype_name(elem_type: int) -> str:
    onnx = _onnx()
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"dtype#{elem_type}"


def _opset_of(model: onnx.ModelProto) -> int | None:
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            return int(imp.version)
    return None


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    onnx = _onnx()
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_label(node: onnx.NodeProto, prefix: str = "") -> str:
    return prefix + (node.name or (f"<{node.op_type} -> {node.output[0]}>" if node.output else "?"))


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    onnx = _onnx()
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


@dataclass
class _Walked:
    node: Any  # onnx.NodeProto
    label: str


def _walk(model: onnx.ModelProto) -> tuple[list[_Walked], list[Any]]:
    """Every node to check (subgraphs and model-local function bodies inlined) and every graph."""
    functions = {(f.domain, f.name): f for f in model.functions}
    nodes: list[_Walked] = []
    graphs: list[Any] = []
    seen_fn: set[tuple[str, str]] = set()

    def visit_nodes(seq: Iterable[Any], prefix: str) -> None:
        for node in seq:
            key = (node.domain, node.op_type)
            if key in functions:  # the parser inlines model-local functions
                if key not in seen_fn:
                    seen_fn.add(key)
                    visit_nodes(functions[key].node, f"{prefix}{node.op_type}/")
                continue
            nodes.append(_Walked(node, _node_label(node, prefix)))
            for sub in _subgraphs(node):
                graphs.append(sub)
                visit_nodes(sub.node, f"{_node_label(node, prefix)}/")

    graphs.append(model.graph)
    visit_nodes(model.graph.node, "")
    return nodes, graphs


def _skeleton(model: onnx.ModelProto, keep_elements: int = 4096) -> onnx.ModelProto:
    """A light copy for shape inference: large initializers keep dims/type, lose their data."""
    onnx = _onnx()
    sk = onnx.ModelProto()
    sk.ir_version = model.ir_version
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    g, src = sk.graph, model.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    for init in src.initializer:
        external = init.data_location == onnx.TensorProto.EXTERNAL
        if tensor_num_elements(init) <= keep_elements and not external:
            g.initializer.append(init)
            continue
        t = g.initializer.add()
        t.name, t.data_type = init.name, init.data_type
        t.dims.extend(init.dims)
        t.data_location = onnx.TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", "__stripped_for_shape_inference__"
    return sk


def graph_float_precision(model: onnx.ModelProto | str | Path) -> str | None:
    """The graph's main float type from its weights: ``"fp32"``, ``"fp16"``, ``"bf16"`` or None.

    Counted in elements over float initializers and ``Constant`` values (dims only, so external
    data is never read). A strongly typed TensorRT engine runs in exactly this precision.
    """
    onnx = _onnx()
    model = _load(model)[0]
    names = {
        onnx.TensorProto.FLOAT: "fp32",
        onnx.TensorProto.FLOAT16: "fp16",
        onnx.TensorProto.BFLOAT16: "bf16",
    }
    counts: dict[str, int] = {}
    for t, _owner in _constants(model):
        if t.data_type in names:
            counts[names[t.data_type]] = counts.get(names[t.data_type], 0) + tensor_num_elements(t)
    return max(counts, key=lambda k: counts[k]) if counts else None


def _constants(model: onnx.ModelProto) -> Iterator[tuple[Any, Any]]:
    """(TensorProto, owning Constant node or None) for every initializer and Constant value."""
    nodes, graphs = _walk(model)
    for g in graphs:
        for init in g.initializer:
            yield init, None
    for w in nodes:
        if w.node.op_type == "Constant" and w.node.domain in _DEFAULT_DOMAINS:
            value = _attr(w.node, "value")
            if value is not None:
                yield value, w


def _load(model: onnx.ModelProto | str | Path) -> tuple[onnx.ModelProto, Path | None]:
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"No ONNX model at {path}")
        return onnx.load(str(path), load_external_data=False), path
    raise TypeError(f"Expected an onnx.ModelProto or a path, got {type(model).__name__}")


def _constant_node_tensor(node: onnx.NodeProto) -> Any:
    """The value of a ``Constant`` node as a TensorProto (any of its value_* forms), or None."""
    onnx = _onnx()
    value = _attr(node, "value")
    if value is not None:
        return value
    helper, tp = onnx.helper, onnx.TensorProto
    for attr, dtype, scalar in (
        ("value_int", tp.INT64, True),
        ("value_ints", tp.INT64, False),
        ("value_float", tp.FLOAT, True),
        ("value_floats", tp.FLOAT, False),
    ):
        v = _attr(node, attr)
        if v is not None:
            vals = [v] if scalar else list(v)
            return helper.make_tensor(node.output[0], dtype, [] if scalar else [len(vals)], vals)
    return None


class _ConstIndex:
    """Which tensors are build-time constants, and the value of the ones that are direct."""

    def __init__(self, nodes: list[_Walked], graphs: list[Any]) -> None:
        graph_inputs = {i.name for g in graphs for i in g.input}
        # An initializer that is also a graph input can be overridden at run time (IR < 4 style).
        self.values: dict[str, Any] = {
            t.name: t for g in graphs for t in g.initializer if t.name not in graph_inputs
        }
        self.producers: dict[str, Any] = {}
        for w in nodes:
            for out in w.node.output:
                self.producers[out] = w.node
            if w.node.op_type == "Constant" and w.node.domain in _DEFAULT_DOMAINS and w.node.output:
                # None: a constant whose value this check does not read (e.g. sparse_value).
                self.values[w.node.output[0]] = _constant_node_tensor(w.node)
        self.graph_inputs = graph_inputs
        self._foldable: dict[str, bool] = {}

    def source(self, name: str) -> str:
        """Follow pass-through ops (Cast, Reshape, ...) back to where the value comes from."""
        seen: set[str] = set()
        while name in self.producers and name not in self.values and name not in seen:
            seen.add(name)
            node = self.producers[name]
            if node.op_type not in _PASS_THROUGH or not node.input:
                break
            name = node.input[0]
        return name

    def value(self, name: str) -> Any:
        """The TensorProto behind ``name`` when it is (a pass-through of) a constant, else None."""
        return self.values.get(self.source(name))

    def is_constant(self, name: str) -> bool:
        """True when ``name`` is computable at build time (constants and ops on constants only)."""
        memo = self._foldable
        stack: list[tuple[str, bool]] = [(name, False)]
        on_path: set[str] = set()
        while stack:
            cur, expanded = stack.pop()
            if cur in memo:
                continue
            if expanded:  # every input has been decided
                node = self.producers[cur]
                memo[cur] = all(memo.get(i, False) for i in node.input if i)
                on_path.discard(cur)
                continue
            if cur in self.values:
                memo[cur] = True
                continue
            node = self.producers.get(cur)
            if node is None or cur in self.graph_inputs or node.op_type in _RANDOM_OPS:
                memo[cur] = False
                continue
            if cur in on_path:  # a cycle: malformed graph, not a constant
                memo[cur] = False
                continue
            on_path.add(cur)
            stack.append((cur, True))
            stack.extend((i, False) for i in node.input if i and i not in memo)
        return memo[name]


def _int_values(tensor: Any) -> list[int] | None:
    """Integer contents of a small constant TensorProto, or None if its data is not at hand."""
    onnx = _onnx()
    if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
        return None
    try:
        return [int(v) for v in onnx.numpy_helper.to_array(tensor).reshape(-1)]
    except Exception:  # noqa: BLE001 - malformed constant: report "unknown", do not crash
        return None


# --- the static check ---------------------------------------------------------------------------
def check_tensorrt_compat(
    model: onnx.ModelProto | str | Path,
    *,
    max_elements: int = MAX_ELEMENTS,
) -> TensorRTReport:
    """Report what TensorRT (10.x ONNX parser + builder) would reject or handle badly.

    Needs only ``onnx``; never imports TensorRT, never loads external data (sizes come from
    the TensorProto dims). ``model`` is a ``ModelProto`` or a path to a ``.onnx`` file; with a
    path the external-data files next to it are checked too. ``max_elements`` is the per-tensor
    limit (TensorRT's 2^31-1; smaller values are for tests). See the module docstring for rules.
    """
    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    proto, path = _load(model)
    report = TensorRTReport(model=str(path) if path else (proto.graph.name or None))
    add = report.findings.append
    report.opset = _opset_of(proto)
    report.precision = graph_float_precision(proto)

    _check_opset(report)
    inferred = _infer(proto, add)
    nodes, graphs = _walk(proto)
    consts = _ConstIndex(nodes, graphs)
    types = _value_types(inferred or proto, graphs)

    _check_inputs(proto, report)
    _check_ops(nodes, consts, types, add)
    _check_topk(nodes, consts, types, report)
    _check_constants(proto, max_elements, add)
    _check_volumes(inferred, max_elements, add)
    _check_dtypes(proto, nodes, types, add)
    if path is not None:
        _check_external_data(proto, path.parent, add)
    return report


def _check_opset(report: TensorRTReport) -> None:
    op = report.opset
    lo, hi = TRT_OPSET_RANGE
    if op is None:
        report.findings.append(
            Finding("opset", "error", "the model imports no default-domain (ai.onnx) opset")
        )
    elif op < lo:
        report.findings.append(
            Finding(
                "opset",
                "error",
                f"opset {op} is below {lo}, the oldest TensorRT's parser supports; re-export with "
                f"opset {TESTED_OPSET_RANGE[0]}-{TESTED_OPSET_RANGE[1]} or convert it with "
                "onnx.version_converter",
            )
        )
    elif op > hi:
        report.findings.append(
            Finding(
                "opset",
                "warning",
                f"opset {op} is newer than {hi}, the newest TensorRT 10.15 documents; parse may "
                f"fail on older TensorRT; export with opset {TESTED_OPSET_RANGE[1]} or lower",
            )
        )
    elif not TESTED_OPSET_RANGE[0] <= op <= TESTED_OPSET_RANGE[1]:
        report.findings.append(
            Finding(
                "opset",
                "info",
                f"opset {op} is inside TensorRT's range but outside the {TESTED_OPSET_RANGE[0]}-"
                f"{TESTED_OPSET_RANGE[1]} lite-export tests",
            )
        )


def _infer(proto: onnx.ModelProto, add: Any) -> onnx.ModelProto | None:
    onnx = _onnx()
    try:
        return onnx.shape_inference.infer_shapes(
            _skeleton(proto), strict_mode=False, data_prop=True
        )
    except Exception as exc:  # noqa: BLE001 - any inference failure only weakens the check
        add(
            Finding(
                "shape-inference",
                "info",
                f"ONNX shape inference failed ({type(exc).__name__}: {str(exc)[:200]}); dtype and "
                "shape rules only saw declared types. Run onnx.checker.check_model on the graph",
            )
        )
        return None


def _value_types(model: onnx.ModelProto, graphs: list[Any]) -> dict[str, Any]:
    """name -> onnx.TypeProto for every typed value (inputs, outputs, value_info, constants)."""
    onnx = _onnx()
    types: dict[str, Any] = {}
    for g in [model.graph, *graphs]:
        for vi in [*g.input, *g.output, *g.value_info]:
            if vi.type.WhichOneof("value") is not None:
                types.setdefault(vi.name, vi.type)
        for init in g.initializer:
            if init.name not in types:
                types[init.name] = onnx.helper.make_tensor_type_proto(init.data_type, init.dims)
    return types


def _elem_type(types: Mapping[str, Any], name: str) -> int | None:
    t = types.get(name)
    if t is None or t.WhichOneof("value") != "tensor_type":
        return None
    return t.tensor_type.elem_type or None


def _rank_and_dims(types: Mapping[str, Any], name: str) -> list[int | None] | None:
    t = types.get(name)
    if t is None or t.WhichOneof("value") != "tensor_type" or not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim]


def _check_inputs(proto: onnx.ModelProto, report: TensorRTReport) -> None:
    initializers = {t.name for t in proto.graph.initializer}
    for vi in proto.graph.input:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type if vi.type.WhichOneof("value") == "tensor_type" else None
        shape: list[int | str | None] = []
        if tt is not None and tt.HasField("shape"):
            for i, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    shape.append(int(d.dim_value))
                elif d.dim_param:
                    shape.append(d.dim_param)
                else:
                    shape.append(None)
                    report.findings.append(
                        Finding(
                            "dynamic-dim-unnamed",
                            "info",
                            f"dim {i} of input {vi.name!r} is dynamic but has no name; name it "
                            "(torch.onnx.export dynamic_shapes / dim_param) so optimisation "
                            "profiles and tools can refer to it. build_engine still takes a shape",
                            node=vi.name,
                            op_type="input",
                        )
                    )
        report.inputs[vi.name] = {
            "dtype": _dtype_name(tt.elem_type) if tt is not None else "non-tensor",
            "shape": shape,
        }


def _check_ops(nodes: list[_Walked], consts: _ConstIndex, types: Any, add: Any) -> None:
    for w in nodes:
        node, label, op = w.node, w.label, w.node.op_type
        if node.domain not in _DEFAULT_DOMAINS:
            if node.domain == "com.microsoft":
                add(
                    Finding(
                        "ort-contrib-op",
                        "error",
                        f"{op} is an ONNX Runtime contrib op (domain com.microsoft), typically "
                        "written by ONNX Runtime graph optimisation/fusion; TensorRT has no importer "
                        "for it. Build the engine from the graph before ORT optimisation (the "
                        "plain torch export) or disable the fusion that produced it",
                        label,
                        op,
                    )
                )
            else:
                add(
                    Finding(
                        "unsupported-op",
                        "error",
                        f"{op} is in domain {node.domain!r}, which TensorRT's ONNX parser does not "
                        f"implement; it would need a TensorRT plugin registered as {op!r} (the "
                        "parser falls back to the plugin registry), or rewrite it with standard "
                        "ONNX ops",
                        label,
                        op,
                    )
                )
            continue
        if op not in SUPPORTED_OPS:
            known = "lists it as unsupported" if op in UNSUPPORTED_OPS else "does not list it"
            add(
                Finding(
                    "unsupported-op",
                    "error",
                    f"TensorRT's ONNX operator support matrix {known}; replace {op} with supported "
                    "ops in the export (or move it out of the graph, e.g. into pre-/post-processing)",
                    label,
                    op,
                )
            )
            continue
        _check_restrictions(w, consts, add)
        # int64 data into an op TensorRT implements without INT64.
        if (
            op not in INT64_OPS
            and node.input
            and node.input[0]
            and _elem_type(types, node.input[0]) == _onnx().TensorProto.INT64
        ):
            add(
                Finding(
                    "int64-cast",
                    "warning",
                    f"{op} takes int64 input {node.input[0]!r}, but TensorRT implements {op} "
                    "for float types (and INT32 at most), so it must cast or reject it; cast "
                    "to float32/int32 in the model (e.g. do this arithmetic in float)",
                    label,
                    op,
                )
            )


def _check_restrictions(w: _Walked, consts: _ConstIndex, add: Any) -> None:
    node, label, op = w.node, w.label, w.node.op_type
    # Inputs that TensorRT needs at build time (support matrix "Restrictions" column).
    need: list[tuple[int, str]] = []
    if op in _REDUCE_OPS or op in ("Squeeze", "Unsqueeze"):
        need.append((1, "axes"))
    elif op == "CumSum":
        need.append((1, "axis"))
    elif op == "OneHot":
        need.append((1, "depth"))
    elif op == "Dropout":
        need.append((2, "training_mode"))
    for idx, what in need:
        if len(node.input) > idx and node.input[idx] and not consts.is_constant(node.input[idx]):
            add(
                Finding(
                    "constant-input-required",
                    "error",
                    f"TensorRT needs {op}'s {what!r} input at build time, but {node.input[idx]!r} "
                    "is computed at run time; make it a constant in the export (or constant-fold "
                    "the graph, e.g. `polygraphy surgeon sanitize --fold-constants`)",
                    label,
                    op,
                )
            )
    if op == "LayerNormalization" and any(o for o in node.output[1:]):
        add(
            Finding(
                "op-restriction",
                "error",
                "TensorRT imports only LayerNormalization's first output Y; drop the Mean/"
                "InvStdDev outputs from the node",
                label,
                op,
            )
        )
    elif op == "Constant":
        for bad in ("sparse_value", "value_string", "value_strings"):
            if any(a.name == bad for a in node.attribute):
                add(
                    Finding(
                        "op-restriction",
                        "error",
                        f"TensorRT does not import Constant with {bad!r}; use a dense numeric value",
                        label,
                        op,
                    )
                )
    elif op == "ScatterND" and _attr(node, "reduction", b"none") not in (b"none", "none"):
        add(
            Finding(
                "op-restriction",
                "error",
                "TensorRT supports ScatterND only with reduction='none'",
                label,
                op,
            )
        )
    elif op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        add(
            Finding(
                "op-restriction",
                "error",
                "TensorRT does not produce MaxPool's Indices output",
                label,
                op,
            )
        )


def _check_topk(
    nodes: list[_Walked], consts: _ConstIndex, types: Any, report: TensorRTReport
) -> None:
    add = report.findings.append
    for w in nodes:
        node, label = w.node, w.label
        if node.op_type != "TopK" or node.domain not in _DEFAULT_DOMAINS:
            continue
        if _attr(node, "sorted", 1) == 0:
            add(
                Finding(
                    "topk-unsorted",
                    "error",
                    "TensorRT imports TopK only with sorted=1; export a sorted top-k",
                    label,
                    "TopK",
                )
            )
        dims = _rank_and_dims(types, node.input[0]) if node.input else None
        axis = int(_attr(node, "axis", -1))
        axis_len = None
        if dims is not None and dims:
            a = axis + len(dims) if axis < 0 else axis
            if 0 <= a < len(dims):
                axis_len = dims[a]
                if len(dims) - a > 4:
                    add(
                        Finding(
                            "topk-axis",
                            "error",
                            f"TopK reduces axis {a} of a rank-{len(dims)} tensor; TensorRT's "
                            "TopK works on one of the last four axes only; transpose first",
                            label,
                            "TopK",
                        )
                    )
        k_name = node.input[1] if len(node.input) > 1 else ""
        if not k_name:  # opset < 10: k is an attribute
            k_vals: list[int] | None = [int(_attr(node, "k", 0))]
        else:
            k_vals = _int_values(consts.value(k_name))
        if k_vals is not None and len(k_vals) == 1:
            k = k_vals[0]
            if k > TOPK_MAX_K:
                add(
                    Finding(
                        "topk-k-too-large",
                        "error",
                        f"TopK K={k} exceeds TensorRT's limit of {TOPK_MAX_K}; export with k <= "
                        f"{TOPK_MAX_K} (re-rank a larger candidate set outside the engine, or take "
                        "top-k of per-chunk top-k's)",
                        label,
                        "TopK",
                    )
                )
            elif axis_len is not None and k > axis_len:
                add(
                    Finding(
                        "topk-k-too-large",
                        "error",
                        f"TopK K={k} is larger than the axis it selects from ({axis_len})",
                        label,
                        "TopK",
                    )
                )
            continue
        source = consts.source(k_name)
        if source in consts.graph_inputs:
            if source not in report.shape_inputs:
                report.shape_inputs.append(source)
            origin = f"graph input {source!r}"
            fix = (
                f"pass build_engine(..., shape_values={{{source!r}: ((1,), (10,), "
                f"({TOPK_MAX_K},))}}) so the profile bounds it"
            )
        elif consts.is_constant(k_name):
            origin = f"a constant expression ({k_name!r}) whose value this check cannot read"
            fix = "constant-fold the graph so K is a plain initializer"
        else:
            origin = f"computed at run time ({k_name!r})"
            fix = "make K a constant or a graph input bounded by the profile"
        add(
            Finding(
                "topk-k-not-constant",
                "warning",
                f"TopK K comes from {origin}. TensorRT needs K as a build-time shape value "
                f"<= {TOPK_MAX_K} (older releases: an initializer); export a fixed k, or {fix}, and "
                f"never ask for k > {TOPK_MAX_K}",
                label,
                "TopK",
            )
        )


def _consumers(proto: onnx.ModelProto) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for w in _walk(proto)[0]:
        for i in w.node.input:
            out.setdefault(i, []).append(w)
    return out


def _check_constants(proto: onnx.ModelProto, max_elements: int, add: Any) -> None:
    consumers: dict[str, list[Any]] | None = None
    for tensor, owner in _constants(proto):
        n = tensor_num_elements(tensor)
        if n <= max_elements:
            continue
        if consumers is None:
            consumers = _consumers(proto)
        name = owner.node.output[0] if owner is not None else tensor.name
        users = consumers.get(name, [])
        ops = sorted({u.node.op_type for u in users})
        if ops and set(ops) <= {"Gather"}:
            fix = (
                "split the table into chunks with lite_export.exporters.tensorrt."
                "split_large_gather(model, max_elements) (Gathers over chunks joined with Where)"
            )
        elif ops and set(ops) <= {"MatMul", "Gemm"}:
            fix = (
                "split the weight along its output axis with lite_export.exporters.tensorrt."
                "split_large_matmul(model, max_elements) (MatMuls over chunks + Concat)"
            )
        else:
            fix = "split it into several constants (e.g. by rows) and combine the partial results"
        used_by = f"; used by {', '.join(ops)}" if ops else ""
        kind = "Constant" if owner is not None else "initializer"
        add(
            Finding(
                "tensor-too-large",
                "error",
                f"{kind} {name!r} has {n:,} elements (dims {list(tensor.dims)}, "
                f"{_dtype_name(tensor.data_type)}){used_by}; TensorRT tensors and weights hold at "
                f"most {max_elements:,} elements. Fix: {fix}, or shrink the catalog/width",
                owner.label if owner is not None else name,
                "Constant" if owner is not None else "initializer",
            )
        )


def _check_volumes(inferred: onnx.ModelProto | None, max_elements: int, add: Any) -> None:
    if inferred is None:
        return
    g = inferred.graph
    initializers = {t.name for t in g.initializer}
    for vi in [*g.value_info, *g.output]:
        if vi.name in initializers or vi.type.WhichOneof("value") != "tensor_type":
            continue
        shape = vi.type.tensor_type.shape
        static = [d.dim_value for d in shape.dim if d.HasField("dim_value")]
        if static and math.prod(static) > max_elements:
            add(
                Finding(
                    "tensor-volume",
                    "warning",
                    f"tensor {vi.name!r} has {math.prod(static):,} elements from its static dims "
                    f"alone (every dynamic dim = 1); TensorRT tensors hold at most "
                    f"{max_elements:,}. Chunk the computation (e.g. score the catalog in slices)",
                    vi.name,
                    "tensor",
                )
            )


_NOT_TRT_DTYPES = {
    # ONNX TensorProto.DataType -> why
    8: "string",
    14: "complex64",
    15: "complex128",
    4: "uint16",
    5: "int16",
    12: "uint32",
    13: "uint64",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    24: "float8e8m0",
}


def _check_dtypes(proto: onnx.ModelProto, nodes: list[_Walked], types: Any, add: Any) -> None:
    onnx = _onnx()
    io_names = {v.name for v in [*proto.graph.input, *proto.graph.output]}
    by_dtype: dict[int, list[str]] = {}
    non_tensor: list[str] = []
    for name, t in types.items():
        kind = t.WhichOneof("value")
        if kind != "tensor_type":
            if kind is not None:
                non_tensor.append(f"{name} ({kind})")
            continue
        by_dtype.setdefault(t.tensor_type.elem_type, []).append(name)
    for w in nodes:  # Constant values and Cast targets, whether or not inference typed them
        if w.node.op_type == "Constant" and (v := _attr(w.node, "value")) is not None:
            by_dtype.setdefault(v.data_type, []).append(w.node.output[0])
        if w.node.op_type == "Cast" and (to := _attr(w.node, "to")) is not None:
            by_dtype.setdefault(int(to), []).append(w.node.output[0])

    def names(xs: list[str]) -> str:
        xs = sorted(set(xs))
        return ", ".join(repr(x) for x in xs[:5]) + (
            f" and {len(xs) - 5} more" if len(xs) > 5 else ""
        )

    for dtype, tensors in sorted(by_dtype.items()):
        first = sorted(set(tensors))[0]
        if dtype in _NOT_TRT_DTYPES:
            add(
                Finding(
                    "unsupported-dtype",
                    "error",
                    f"TensorRT has no {_NOT_TRT_DTYPES[dtype]} type; tensors {names(tensors)} use "
                    "it. Keep strings/complex numbers outside the graph and use float32/16, "
                    "bfloat16, int32/64, int8 or bool",
                    first,
                    "tensor",
                )
            )
        elif dtype == onnx.TensorProto.DOUBLE:
            add(
                Finding(
                    "float64-cast",
                    "warning",
                    f"tensors {names(tensors)} are float64; TensorRT casts DOUBLE down to FLOAT "
                    "(clamping to +-FLT_MAX), so results differ from ONNX Runtime; export in "
                    "float32 (or fp16/bf16)",
                    first,
                    "tensor",
                )
            )
        elif dtype == onnx.TensorProto.UINT8:
            inner = [t for t in tensors if t not in io_names]
            if inner:
                add(
                    Finding(
                        "unsupported-dtype",
                        "error",
                        f"TensorRT supports uint8 only for network inputs/outputs, but {names(inner)} "
                        "are uint8 inside the graph; cast to int32/float at the boundary",
                        sorted(inner)[0],
                        "tensor",
                    )
                )
    if non_tensor:
        add(
            Finding(
                "unsupported-dtype",
                "error",
                f"TensorRT handles only tensors; {names(non_tensor)} are sequences/maps/optionals",
                sorted(non_tensor)[0].split(" ")[0],
                "tensor",
            )
        )


def _check_external_data(proto: onnx.ModelProto, base: Path, add: Any) -> None:
    onnx = _onnx()
    for tensor, owner in _constants(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        file = base / location
        name = owner.node.output[0] if owner is not None else tensor.name
        if not location or not file.is_file():
            add(
                Finding(
                    "external-data",
                    "error",
                    f"tensor {name!r} keeps its data in {location!r}, which is not next to the "
                    f"model ({base}); TensorRT's parser reads external data relative to the model "
                    "file, so keep model.onnx and its .data file together",
                    name,
                    "initializer",
                )
            )
            continue
        offset = int(info.get("offset", 0) or 0)
        length = info.get("length")
        if length is not None and file.stat().st_size < offset + int(length):
            add(
                Finding(
                    "external-data",
                    "error",
                    f"tensor {name!r} needs bytes {offset}..{offset + int(length)} of {location!r}, "
                    f"but the file has {file.stat().st_size}; it is truncated: re-export",
                    name,
                    "initializer",
                )
            )


# --- splitting tables above the element limit ---------------------------------------------------
class _Names:
    """Fresh tensor/node names that do not collide with any name in the graph."""

    def __init__(self, graph: Any) -> None:
        self.used = {t.name for t in graph.initializer} | {v.name for v in graph.input}
        for node in graph.node:
            self.used.update(node.output)
            self.used.add(node.name)

    def __call__(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _table_array(tensor: Any, base_dir: str | Path | None) -> Any:
    onnx = _onnx()
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        if base_dir is None:
            raise ValueError(
                f"tensor {tensor.name!r} has external data that is not loaded; pass base_dir= the "
                "model's folder, or load the model with onnx.load(path) (external data included)"
            )
        onnx.external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
    return onnx.numpy_helper.to_array(tensor)


def _split_points(length: int, slab: int, max_elements: int, what: str) -> list[tuple[int, int]]:
    per_chunk = max_elements // slab
    if per_chunk < 1:
        raise ValueError(
            f"cannot split {what}: one slice along the split axis already has {slab:,} elements, "
            f"more than max_elements={max_elements:,}"
        )
    return [(o, min(per_chunk, length - o)) for o in range(0, length, per_chunk)]


def _require_opset13(model: onnx.ModelProto) -> None:
    opset = _opset_of(model)
    if opset is None or opset < 13:
        raise ValueError(f"splitting needs a model with opset >= 13, this one has {opset}")


def _graph_constants(graph: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (TensorProto, Constant node or None) for the top-level graph's constants."""
    inputs = {v.name for v in graph.input}
    out: dict[str, tuple[Any, Any]] = {
        t.name: (t, None) for t in graph.initializer if t.name not in inputs
    }
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            value = _attr(node, "value")
            if value is not None:
                out[node.output[0]] = (value, node)
    return out


def _drop_unused(graph: Any, candidates: Iterable[str]) -> None:
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for sub_node in graph.node:
        for sub in _subgraphs(sub_node):
            used.update(i for n in sub.node for i in n.input)
    drop = {c for c in candidates if c not in used}
    keep_inits = [t for t in graph.initializer if t.name not in drop]
    keep_nodes = [
        n for n in graph.node if not (n.op_type == "Constant" and n.output and n.output[0] in drop)
    ]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del graph.node[:]
    graph.node.extend(keep_nodes)


def split_large_gather(
    model: onnx.ModelProto,
    max_elements: int = MAX_ELEMENTS,
    *,
    base_dir: str | Path | None = None,
) -> onnx.ModelProto:
    """Rewrite every ``Gather`` over a constant table above ``max_elements`` into chunk Gathers.

    The table is cut along the gather axis into chunks of at most ``max_elements`` elements.
    For each chunk ``c`` covering ``[lo, hi)`` the graph computes ``in_c = lo <= idx < hi`` and
    ``Gather(chunk_c, Where(in_c, idx - lo, 0))``; ``Where`` on the broadcast mask picks each
    index's row from its chunk. Negative indices are wrapped first, as ``Gather`` does. The
    result equals the original Gather for every valid index (tested in ONNX Runtime).

    ``model`` is modified in place and returned (a copy of a multi-GB table is what this avoids).
    Tables in external data need ``base_dir`` (the model's folder) unless already loaded. Save
    the result with external data (``onnx.save(..., save_as_external_data=True)``).
    """
    onnx = _onnx()
    import numpy as np

    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    _require_opset13(model)
    helper, graph = onnx.helper, model.graph
    consts = _graph_constants(graph)
    fresh = _Names(graph)
    chunk_cache: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    replaced: set[str] = set()

    def scalar(value: int, base: str) -> str:
        name = fresh(base)
        new_inits.append(onnx.numpy_helper.from_array(np.array(value, dtype=np.int64), name))
        return name

    for node in graph.node:
        data = node.input[0] if node.input else ""
        if (
            node.op_type != "Gather"
            or node.domain not in _DEFAULT_DOMAINS
            or data not in consts
            or tensor_num_elements(consts[data][0]) <= max_elements
        ):
            new_nodes.append(node)
            continue
        tensor = consts[data][0]
        rank = len(tensor.dims)
        axis = int(_attr(node, "axis", 0))
        axis = axis + rank if axis < 0 else axis
        length = int(tensor.dims[axis])
        slab = tensor_num_elements(tensor) // max(length, 1)
        key = (data, axis)
        if key not in chunk_cache:
            array = _table_array(tensor, base_dir)
            chunks = []
            for lo, size in _split_points(length, slab, max_elements, f"table {data!r}"):
                index = (slice(None),) * axis + (slice(lo, lo + size),)
                name = fresh(f"{data}/chunk{lo}")
                part = np.ascontiguousarray(array[index])
                new_inits.append(onnx.numpy_helper.from_array(part, name))
                chunks.append((lo, size, name))
            chunk_cache[key] = chunks
            del array
        chunks = chunk_cache[key]
        p = fresh(f"{node.name or data}/split")
        zero, n_rows = scalar(0, f"{p}/zero"), scalar(length, f"{p}/n")
        idx = fresh(f"{p}/idx64")
        neg, wrapped, norm = fresh(f"{p}/neg"), fresh(f"{p}/wrapped"), fresh(f"{p}/norm")
        new_nodes += [
            helper.make_node("Cast", [node.input[1]], [idx], to=onnx.TensorProto.INT64),
            helper.make_node("Less", [idx, zero], [neg]),
            helper.make_node("Add", [idx, n_rows], [wrapped]),
            helper.make_node("Where", [neg, wrapped, idx], [norm]),
        ]
        axes = list(range(axis)) + [-(i + 1) for i in range(rank - 1 - axis)]
        axes_name = None
        if axes:
            axes_name = fresh(f"{p}/mask_axes")
            new_inits.append(onnx.numpy_helper.from_array(np.array(axes, np.int64), axes_name))
        acc = ""
        for c, (lo, size, chunk) in enumerate(chunks):
            q = f"{p}/c{c}"
            lo_name, hi_name = scalar(lo, f"{q}/lo"), scalar(lo + size, f"{q}/hi")
            ge, lt, inside = fresh(f"{q}/ge"), fresh(f"{q}/lt"), fresh(f"{q}/in")
            local, safe, got = fresh(f"{q}/local"), fresh(f"{q}/safe"), fresh(f"{q}/rows")
            new_nodes += [
                helper.make_node("GreaterOrEqual", [norm, lo_name], [ge]),
                helper.make_node("Less", [norm, hi_name], [lt]),
                helper.make_node("And", [ge, lt], [inside]),
                helper.make_node("Sub", [norm, lo_name], [local]),
                helper.make_node("Where", [inside, local, zero], [safe]),
                helper.make_node("Gather", [chunk, safe], [got], axis=axis, name=fresh(q)),
            ]
            if c == 0:
                acc = got
                continue
            mask = inside
            if axes_name is not None:
                mask = fresh(f"{q}/mask")
                new_nodes.append(helper.make_node("Unsqueeze", [inside, axes_name], [mask]))
            last = c == len(chunks) - 1
            out = node.output[0] if last else fresh(f"{q}/acc")
            new_nodes.append(
                helper.make_node("Where", [mask, got, acc], [out], name=node.name if last else "")
            )
            acc = out
        replaced.add(data)

    if replaced:
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(new_inits)
        _drop_unused(graph, replaced)
    return model


def split_large_matmul(
    model: onnx.ModelProto,
    max_elements: int = MAX_ELEMENTS,
    *,
    base_dir: str | Path | None = None,
) -> onnx.ModelProto:
    """Rewrite ``MatMul(A, W)`` / ``Gemm(A, W, b)`` with a constant ``W`` above ``max_elements``.

    ``W`` (the projection head, ``[d, N]`` or ``[N, d]`` with ``transB=1``) is cut along the
    output axis ``N`` into chunks of at most ``max_elements`` elements; each chunk gets its own
    MatMul/Gemm (with the matching slice of a constant bias) and a ``Concat`` on the last axis
    joins the scores. Same in-place contract as :func:`split_large_gather`.
    """
    onnx = _onnx()
    import numpy as np

    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements}")
    _require_opset13(model)
    helper, graph = onnx.helper, model.graph
    consts = _graph_constants(graph)
    fresh = _Names(graph)
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    replaced: set[str] = set()

    for node in graph.node:
        is_mm = node.op_type in ("MatMul", "Gemm") and node.domain in _DEFAULT_DOMAINS
        w = node.input[1] if is_mm and len(node.input) > 1 else ""
        if not is_mm or w not in consts or tensor_num_elements(consts[w][0]) <= max_elements:
            new_nodes.append(node)
            continue
        tensor = consts[w][0]
        rank = len(tensor.dims)
        if rank < 2:
            raise ValueError(f"cannot split {node.op_type} weight {w!r} of rank {rank}")
        trans_b = node.op_type == "Gemm" and int(_attr(node, "transB", 0)) == 1
        axis = 0 if trans_b else rank - 1  # the output (N) axis of W
        length = int(tensor.dims[axis])
        slab = tensor_num_elements(tensor) // max(length, 1)
        array = _table_array(tensor, base_dir)
        bias = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            if node.input[2] not in consts:
                raise ValueError(
                    f"cannot split Gemm {node.name!r}: its bias {node.input[2]!r} is not constant"
                )
            bias = _table_array(consts[node.input[2]][0], base_dir)
        p = fresh(f"{node.name or w}/split")
        parts: list[str] = []
        for c, (lo, size) in enumerate(_split_points(length, slab, max_elements, f"weight {w!r}")):
            index = (slice(None),) * axis + (slice(lo, lo + size),)
            w_name = fresh(f"{w}/chunk{lo}")
            new_inits.append(
                onnx.numpy_helper.from_array(np.ascontiguousarray(array[index]), w_name)
            )
            out = fresh(f"{p}/c{c}")
            inputs = [node.input[0], w_name]
            if bias is not None:
                b = bias
                if b.ndim >= 1 and b.shape[-1] == length and length > 1:
                    b = np.ascontiguousarray(b[..., lo : lo + size])
                b_name = fresh(f"{node.input[2]}/chunk{lo}")
                new_inits.append(onnx.numpy_helper.from_array(b, b_name))
                inputs.append(b_name)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            new_nodes.append(
                helper.make_node(node.op_type, inputs, [out], name=fresh(f"{p}/c{c}"), **attrs)
            )
            parts.append(out)
        new_nodes.append(
            helper.make_node("Concat", parts, [node.output[0]], axis=-1, name=node.name or p)
        )
        replaced.add(w)
        if bias is not None:
            replaced.add(node.input[2])
        del array

    if replaced:
        del graph.node[:]
        graph.node.extend(new_nodes)
        graph.initializer.extend(new_inits)
        _drop_unused(graph, replaced)
    return model


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
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10 or not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise TensorRTUnavailableError(
            f"TensorRT {getattr(trt, '__version__', '?')} is too old: lite-export builds strongly "
            f"typed networks and needs TensorRT >= 10. {INSTALL_HINT}"
        )
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
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
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
