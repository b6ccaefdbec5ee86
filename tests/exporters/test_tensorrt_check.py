"""The TensorRT static check, the table-splitting rewrites and the builder's guards, on CPU.

Every rule gets a small ``onnx.helper`` graph that breaks it; nothing here needs TensorRT
except the one build test marked ``tensorrt`` (skipped without TensorRT and a CUDA GPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from lite_export.exporters import tensorrt as trt_export  # noqa: E402
from lite_export.exporters.tensorrt import (  # noqa: E402
    MAX_ELEMENTS,
    TOPK_MAX_K,
    TensorRTCompatError,
    TensorRTUnavailableError,
    build_engine,
    check_tensorrt_compat,
    split_large_gather,
    split_large_matmul,
    tensor_num_elements,
    tensorrt_available,
)

OPSET = 18
D, N = 8, 100


# --- graph builders -----------------------------------------------------------------------------
def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET, extra_opsets=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10  # what onnxruntime 1.32 reads
    return model


def i64(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def ranking_model(k=10, *, k_as_input=False, sorted_=1, opset=OPSET):
    """h [B, D] -> MatMul W [D, N] + b -> TopK(k): the shape of our model's head."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((D, N)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(N).astype(np.float32), "b")
    inputs = [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", D])]
    inits = [w, b]
    if k_as_input:
        inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    else:
        inits.append(i64("k", [k]))
    nodes = [
        helper.make_node("MatMul", ["h", "W"], ["hw"], name="head_matmul"),
        helper.make_node("Add", ["hw", "b"], ["scores"], name="head_bias"),
        helper.make_node(
            "TopK", ["scores", "k"], ["values", "indices"], name="topk", axis=-1, sorted=sorted_
        ),
    ]
    outputs = [
        helper.make_tensor_value_info("values", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("indices", TensorProto.INT64, None),
    ]
    return make_model(nodes, inputs, outputs, inits, opset=opset)


def huge_external_initializer(name="item_table", dims=(65536, 32768)):
    """A TensorProto that claims 2^31 elements but holds no data (external, never loaded)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT16, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "model.onnx.data"), ("offset", "0"), ("length", "0")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def gather_model(table: TensorProto):
    ids = helper.make_tensor_value_info("item_ids", TensorProto.INT64, ["batch", "history"])
    out = helper.make_tensor_value_info("emb", table.data_type, None)
    node = helper.make_node("Gather", [table.name, "item_ids"], ["emb"], name="embed", axis=0)
    return make_model([node], [ids], [out], [table])


def rules(report):
    return {f.rule for f in report.findings}


def run_ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# --- the clean graph ----------------------------------------------------------------------------
def test_clean_ranking_graph_passes():
    report = check_tensorrt_compat(ranking_model(k=10))
    assert report.ok, str(report)
    assert report.errors == [] and report.warnings == [], str(report)
    assert report.opset == OPSET and report.precision == "fp32"
    assert report.dynamic_inputs == {"h": ["batch", D]}
    assert "no findings" in str(report)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["counts"] == {"error": 0, "warning": 0, "info": 0}
    assert data["inputs"]["h"] == {"dtype": "float", "shape": ["batch", D]}


def test_k_at_the_limit_is_accepted():
    big_n = TOPK_MAX_K + 10
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", big_n])
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")]
    outs = [
        helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("i", TensorProto.INT64, None),
    ]
    report = check_tensorrt_compat(make_model(nodes, [x], outs, [i64("k", [TOPK_MAX_K])]))
    assert report.ok and "topk-k-too-large" not in rules(report), str(report)


# --- operators ----------------------------------------------------------------------------------
def test_custom_domain_op_is_an_error_with_plugin_hint():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("MyScorer", ["x"], ["y"], name="scorer", domain="com.example")
    model = make_model([node], [x], [y], extra_opsets=[helper.make_opsetid("com.example", 1)])
    report = check_tensorrt_compat(model)
    assert not report.ok
    (f,) = report.by_rule("unsupported-op")
    assert f.severity == "error" and f.node == "scorer" and f.op_type == "MyScorer"
    assert "com.example" in f.message and "plugin" in f.message
    assert "scorer" in str(report) and "unsupported-op" in str(report)


def test_string_normalizer_is_rejected_with_its_string_dtype():
    s = helper.make_tensor_value_info("text", TensorProto.STRING, [None])
    out = helper.make_tensor_value_info("norm", TensorProto.STRING, None)
    node = helper.make_node("StringNormalizer", ["text"], ["norm"], name="normalize")
    report = check_tensorrt_compat(make_model([node], [s], [out]))
    (f,) = report.by_rule("unsupported-op")
    assert f.node == "normalize" and "lists it as unsupported" in f.message
    (d,) = report.by_rule("unsupported-dtype")
    assert d.severity == "error" and "string" in d.message
    assert report.by_rule("dynamic-dim-unnamed")[0].severity == "info"


def test_onnxruntime_contrib_op_is_named_as_such():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], name="fused", domain="com.microsoft")
    model = make_model([node], [a, b], [y], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    (f,) = check_tensorrt_compat(model).by_rule("ort-contrib-op")
    assert f.severity == "error" and "ONNX Runtime" in f.message


def test_computed_reduce_axes_are_an_error_constant_axes_are_not():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    axes_in = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    dynamic = make_model(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")], [x, axes_in], [y]
    )
    (f,) = check_tensorrt_compat(dynamic).by_rule("constant-input-required")
    assert f.node == "mean" and "axes" in f.message
    folded = make_model(
        [
            helper.make_node("Constant", [], ["one"], value=helper.make_tensor("", 7, [1], [1])),
            helper.make_node("Identity", ["one"], ["axes"]),
            helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean"),
        ],
        [x],
        [y],
    )
    assert check_tensorrt_compat(folded).ok


def test_int64_into_a_float_only_op_warns():
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "history"])
    pos = helper.make_tensor_value_info("pos", TensorProto.INT64, None)
    node = helper.make_node("CumSum", ["mask", "axis"], ["pos"], name="positions")
    report = check_tensorrt_compat(make_model([node], [mask], [pos], [i64("axis", 1)]))
    assert report.ok
    (f,) = report.by_rule("int64-cast")
    assert f.severity == "warning" and f.node == "positions" and f.op_type == "CumSum"


def test_layernorm_extra_outputs_break_a_restriction():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "mean")]
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y", "mean"], name="ln")
    (f,) = check_tensorrt_compat(make_model([node], [x], outs, inits)).by_rule("op-restriction")
    assert f.node == "ln"


# --- TopK ---------------------------------------------------------------------------------------
def test_topk_with_k_4096_is_an_error():
    report = check_tensorrt_compat(ranking_model(k=4096))
    assert not report.ok
    (f,) = report.by_rule("topk-k-too-large")
    assert f.severity == "error" and f.node == "topk" and "4096" in f.message
    assert str(TOPK_MAX_K) in f.message


def test_topk_k_as_graph_input_is_a_warning_and_a_shape_input():
    report = check_tensorrt_compat(ranking_model(k_as_input=True))
    assert report.ok
    (f,) = report.by_rule("topk-k-not-constant")
    assert f.severity == "warning" and "'k'" in f.message and "3840" in f.message
    assert report.shape_inputs == ["k"]


def test_topk_k_through_a_cast_is_still_read():
    model = ranking_model(k=5000)
    # K = Cast(k_i32): the check follows pass-through ops back to the constant.
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "k"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([5000], np.int32), "k32"))
    model.graph.node.insert(0, helper.make_node("Cast", ["k32"], ["k"], to=TensorProto.INT64))
    assert check_tensorrt_compat(model).by_rule("topk-k-too-large")


def test_unsorted_topk_is_an_error():
    assert check_tensorrt_compat(ranking_model(sorted_=0)).by_rule("topk-unsorted")


# --- sizes --------------------------------------------------------------------------------------
def test_tensor_num_elements_reads_dims_only():
    t = huge_external_initializer()
    assert tensor_num_elements(t) == 2**31 > MAX_ELEMENTS
    assert tensor_num_elements([]) == 1
    assert tensor_num_elements([3, 0, 5]) == 0
    assert not t.raw_data  # nothing was allocated


def test_huge_external_initializer_is_an_error_naming_the_split():
    report = check_tensorrt_compat(gather_model(huge_external_initializer()))
    assert not report.ok
    (f,) = report.by_rule("tensor-too-large")
    assert f.node == "item_table" and f.op_type == "initializer"
    assert "2,147,483,648" in f.message and "split_large_gather" in f.message
    assert report.precision == "fp16"


def test_huge_constant_node_value_is_an_error():
    table = huge_external_initializer("table_value", dims=(2, 2**30))
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    nodes = [
        helper.make_node("Constant", [], ["table"], name="table_const", value=table),
        helper.make_node("MatMul", ["ids_f", "table"], ["y"], name="mm"),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT16),
    ]
    (f,) = check_tensorrt_compat(make_model(nodes, [ids], [out])).by_rule("tensor-too-large")
    assert f.op_type == "Constant" and "split_large_matmul" in f.message


def test_model_file_with_external_data_is_checked_without_loading_it(tmp_path):
    model = ranking_model()
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model, path, save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    report = check_tensorrt_compat(path)
    assert report.ok and report.model == str(path), str(report)
    (tmp_path / "model.onnx.data").unlink()
    (f, *_) = check_tensorrt_compat(path).by_rule("external-data")
    assert f.severity == "error" and "model.onnx.data" in f.message


def test_small_forced_limit_flags_and_split_fixes_it():
    model = gather_model(numpy_helper.from_array(np.ones((10, 3), np.float32), "table"))
    assert check_tensorrt_compat(model, max_elements=7).by_rule("tensor-too-large")
    split_large_gather(model, max_elements=7)
    report = check_tensorrt_compat(model, max_elements=7)
    assert report.ok and not report.by_rule("tensor-too-large"), str(report)


# --- dtypes and shapes --------------------------------------------------------------------------
def test_float64_warns_and_complex_is_an_error():
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)
    w = numpy_helper.from_array(np.ones(2, np.float64), "w")
    report = check_tensorrt_compat(
        make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [x], [y], [w])
    )
    assert report.ok and report.by_rule("float64-cast")[0].severity == "warning"

    c = helper.make_tensor_value_info("c", TensorProto.COMPLEX64, [2])
    out = helper.make_tensor_value_info("o", TensorProto.COMPLEX64, None)
    report = check_tensorrt_compat(
        make_model([helper.make_node("Identity", ["c"], ["o"])], [c], [out])
    )
    (f,) = report.by_rule("unsupported-dtype")
    assert f.severity == "error" and "complex64" in f.message


def test_unnamed_dynamic_dim_is_info_only():
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None, "history"])
    table = numpy_helper.from_array(np.ones((5, 2), np.float32), "t")
    out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    model = make_model([helper.make_node("Gather", ["t", "ids"], ["e"])], [ids], [out], [table])
    report = check_tensorrt_compat(model)
    assert report.ok
    (f,) = report.by_rule("dynamic-dim-unnamed")
    assert f.severity == "info" and f.node == "ids"
    assert report.dynamic_inputs == {"ids": [None, "history"]}


def test_opset_outside_the_parser_range():
    assert check_tensorrt_compat(ranking_model(opset=8)).by_rule("opset")[0].severity == "error"
    assert check_tensorrt_compat(ranking_model(opset=15)).by_rule("opset")[0].severity == "info"


def test_wrong_inputs_raise():
    with pytest.raises(FileNotFoundError):
        check_tensorrt_compat("/nonexistent/model.onnx")
    with pytest.raises(TypeError):
        check_tensorrt_compat(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_tensorrt_compat(ranking_model(), max_elements=0)


# --- split_large_gather / split_large_matmul ----------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "axis", "max_elements"),
    [((10, 3), 0, 7), ((10, 3), 0, 29), ((3, 10), 1, 8), ((4, 5, 2), 1, 17)],
)
def test_split_large_gather_matches_onnxruntime(shape, axis, max_elements):
    table = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    length = shape[axis]
    ids = np.array([[0, length - 1, 3, -1], [-length, 2, 1, 4]], dtype=np.int64)
    ids_vi = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "history"])
    out = helper.make_tensor_value_info("emb", TensorProto.FLOAT, None)
    node = helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed", axis=axis)
    model = make_model([node], [ids_vi], [out], [numpy_helper.from_array(table, "table")])
    (expected,) = run_ort(model, {"ids": ids})
    np.testing.assert_array_equal(expected, np.take(table, ids, axis=axis))

    split_large_gather(model, max_elements=max_elements)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # well-formed and typed
    chunks = [t for t in model.graph.initializer if t.name.startswith("table/chunk")]
    assert len(chunks) > 1 and all(tensor_num_elements(t) <= max_elements for t in chunks)
    assert "table" not in {t.name for t in model.graph.initializer}
    (got,) = run_ort(model, {"ids": ids})
    np.testing.assert_array_equal(got, expected)


def test_split_large_gather_keeps_bf16_and_small_tables():
    import ml_dtypes

    table = np.arange(12, dtype=np.float32).reshape(6, 2).astype(ml_dtypes.bfloat16)
    model = gather_model(numpy_helper.from_array(table, "table"))
    untouched = gather_model(numpy_helper.from_array(table, "table"))
    split_large_gather(untouched)  # under the default limit: nothing changes
    assert [n.op_type for n in untouched.graph.node] == ["Gather"]
    split_large_gather(model, max_elements=4)
    chunks = [t for t in model.graph.initializer if t.name.startswith("table/chunk")]
    assert {t.data_type for t in chunks} == {TensorProto.BFLOAT16}
    joined = np.concatenate([numpy_helper.to_array(t) for t in chunks])
    np.testing.assert_array_equal(joined.astype(np.float32), table.astype(np.float32))


def test_split_large_gather_needs_the_data_and_a_splittable_table():
    with pytest.raises(ValueError, match="external data"):
        split_large_gather(gather_model(huge_external_initializer()))
    model = gather_model(numpy_helper.from_array(np.ones((4, 5), np.float32), "table"))
    with pytest.raises(ValueError, match="one slice"):
        split_large_gather(model, max_elements=4)


@pytest.mark.parametrize("op", ["MatMul", "GemmTransB"])
def test_split_large_matmul_matches_onnxruntime(op):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 10)).astype(np.float32)  # [d, N]
    b = rng.standard_normal(10).astype(np.float32)
    h = rng.standard_normal((3, 4)).astype(np.float32)
    h_vi = helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", 4])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)
    if op == "MatMul":
        inits = [numpy_helper.from_array(w, "W")]
        node = helper.make_node("MatMul", ["h", "W"], ["scores"], name="head")
    else:  # Linear(d, N) as torch exports it: Gemm(h, W[N, d], b, transB=1)
        inits = [numpy_helper.from_array(w.T.copy(), "W"), numpy_helper.from_array(b, "b")]
        node = helper.make_node("Gemm", ["h", "W", "b"], ["scores"], name="head", transB=1)
    model = make_model([node], [h_vi], [out], inits)
    (expected,) = run_ort(model, {"h": h})
    split_large_matmul(model, max_elements=12)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # well-formed and typed
    assert check_tensorrt_compat(model, max_elements=12).ok
    (got,) = run_ort(model, {"h": h})
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


# --- lean import, availability, builder guards --------------------------------------------------
def test_import_does_not_import_tensorrt_or_runtimes():
    code = (
        "import sys, json, lite_export.exporters.tensorrt as m; "
        "print(json.dumps([x for x in ('tensorrt', 'onnxruntime', 'torch', 'onnx') "
        "if x in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail even where it is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def clean_onnx(tmp_path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save_model(ranking_model(), path)
    return path


SHAPES = {"min_shapes": {"h": (1, D)}, "opt_shapes": {"h": (8, D)}, "max_shapes": {"h": (64, D)}}


def test_tensorrt_available_never_raises(no_tensorrt):
    assert tensorrt_available() is False


def test_build_engine_without_tensorrt_says_how_to_install(no_tensorrt, clean_onnx, tmp_path):
    with pytest.raises(TensorRTUnavailableError) as info:
        build_engine(clean_onnx, tmp_path / "model.plan", precision="fp32", **SHAPES)
    message = str(info.value)
    assert isinstance(info.value, ImportError)
    assert "not installed" in message and "NVIDIA GPU" in message
    assert 'pip install "lite-export[gpu]"' in message and "docs.nvidia.com" in message
    assert not (tmp_path / "model.plan").exists()


def test_build_engine_refuses_a_graph_with_errors_before_touching_tensorrt(no_tensorrt, tmp_path):
    path = tmp_path / "big_k.onnx"
    onnx.save_model(ranking_model(k=4096), path)
    with pytest.raises(TensorRTCompatError) as info:
        build_engine(path, tmp_path / "m.plan", precision="fp32", **SHAPES)
    assert "topk-k-too-large" in str(info.value) and info.value.report.errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "int8"}, "precision must be"),
        ({"precision": "fp16"}, "holds fp32 weights"),
        ({"min_shapes": {"h": (2, D)}, "opt_shapes": {"h": (1, D)}}, "min <= opt <= max"),
        ({"max_shapes": {"h": (64, D), "x": (4, D)}}, "'x' has no min/opt"),
        (
            {
                "max_shapes": {"h": (64, D), "x": (1,)},
                "min_shapes": {"h": (1, D), "x": (1,)},
                "opt_shapes": {"h": (1, D), "x": (1,)},
            },
            "not inputs of the model",
        ),
        ({"min_shapes": {}, "opt_shapes": {}, "max_shapes": {}}, "dynamic shape"),
        (
            {"min_shapes": {"h": (1, 3)}, "opt_shapes": {"h": (1, 3)}, "max_shapes": {"h": (1, 3)}},
            "fixes it at 8",
        ),
        ({"workspace_gb": 0}, "workspace_gb"),
    ],
)
def test_build_engine_validates_arguments(no_tensorrt, clean_onnx, tmp_path, kwargs, match):
    args = {**SHAPES, "precision": "fp32", **kwargs}
    with pytest.raises(ValueError, match=match):
        build_engine(clean_onnx, tmp_path / "m.plan", **args)


def test_build_engine_needs_bounds_for_a_k_input(no_tensorrt, tmp_path):
    path = tmp_path / "k_input.onnx"
    onnx.save_model(ranking_model(k_as_input=True), path)
    with pytest.raises(ValueError, match="shape_values"):
        build_engine(path, tmp_path / "m.plan", precision="fp32", **SHAPES)
    with pytest.raises(ValueError, match="K <= 3840"):
        build_engine(
            path,
            tmp_path / "m.plan",
            precision="fp32",
            shape_values={"k": ((1,), (10,), (5000,))},
            **SHAPES,
        )
    with pytest.raises(TensorRTUnavailableError):  # arguments fine: only TensorRT is missing
        build_engine(
            path,
            tmp_path / "m.plan",
            precision="fp32",
            shape_values={"k": ((1,), (10,), (100,))},
            **SHAPES,
        )


def _trt_and_gpu() -> bool:
    return tensorrt_available() and trt_export.cuda_device_count() > 0


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not _trt_and_gpu(), reason="needs TensorRT >= 10 and an NVIDIA CUDA GPU")
def test_build_engine_writes_a_plan_and_timing_cache(clean_onnx, tmp_path):
    plan, cache = tmp_path / "model.plan", tmp_path / "timing.cache"
    out = build_engine(clean_onnx, plan, precision="fp32", timing_cache=cache, **SHAPES)
    assert out == plan and plan.stat().st_size > 0 and cache.stat().st_size > 0
    # A rebuild reuses the cache.
    build_engine(clean_onnx, plan, precision="fp32", timing_cache=cache, **SHAPES)
    assert not list(tmp_path.glob(".model.plan.*.tmp"))
