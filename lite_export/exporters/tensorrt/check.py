"""The static check: what TensorRT's ONNX parser and builder would reject, read from the graph alone.

:func:`check_tensorrt_compat` reads an ONNX graph (a ``ModelProto`` or a path; external data is
never loaded) and reports what TensorRT's ONNX parser would reject or handle badly. It needs only
``onnx``: it runs on every export, CPU included, and its :meth:`TensorRTReport.to_dict` goes into
the artifact manifest. The rules are listed in :mod:`lite_export.exporters.tensorrt`.

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
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - type checkers only; onnx is imported on first use
    import onnx

__all__ = [
    "INT64_OPS",
    "MAX_ELEMENTS",
    "REFERENCE",
    "RULES",
    "SUPPORTED_OPS",
    "TESTED_OPSET_RANGE",
    "TOPK_MAX_K",
    "TRT_OPSET_RANGE",
    "UNSUPPORTED_OPS",
    "Finding",
    "TensorRTCompatError",
    "TensorRTReport",
    "check_tensorrt_compat",
    "graph_float_precision",
    "tensor_num_elements",
]

Severity = Literal["error", "warning", "info"]

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


class TensorRTCompatError(ValueError):
    """The static check found errors; ``report`` holds every finding."""

    def __init__(self, report: TensorRTReport) -> None:
        self.report = report
        super().__init__(
            f"{report}\nFix the errors above (or re-export) before building a TensorRT engine."
        )


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
