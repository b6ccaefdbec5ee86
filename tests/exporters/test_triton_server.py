"""`lite export --format triton`: model repository configs and a real Triton server.

The config tests parse every ``config.pbtxt`` with Triton's own model-config protobuf (from
``tritonclient``). The model.py tests run the python-backend model in this process with a small
stand-in for ``triton_python_backend_utils``. The ``slow`` server test uses the session's real
``tritonserver`` 2.51 that ``nvidia-pytriton==0.7.0`` bundles (python backend only, CPU), from the
separate virtual environment named by ``LITE_TRITON_VENV`` (it needs numpy<2; `.ci/run` makes it):
the ``triton_server`` fixture of tests/conftest.py, shared with tests/serving.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from lite_export.exporters.triton_server import (  # noqa: E402
    TritonRepositoryError,
    write_model_repository,
)

HISTORIES = [["S0001", "S0002", "S0003"], ["S0010"], [f"S{i:04d}" for i in range(1, 80)], []]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A small artifact (synthetic catalog, one epoch, K=20) from `lite export --format triton`."""
    from typer.testing import CliRunner

    from lite_export.cli import app

    root = tmp_path_factory.mktemp("triton")
    ckpt, art = root / "ckpt", root / "art"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            "synthetic",
            "--epochs",
            "1",
            "--out",
            str(ckpt),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    if res.exit_code != 0:
        raise RuntimeError(f"lite train failed: {res.output}")
    res = runner.invoke(
        app,
        [
            "export",
            str(ckpt),
            "--out",
            str(art),
            "--k",
            "20",
            "--format",
            "triton",
            "--triton-max-batch-size",
            "16",
            "--triton-instances",
            "2",
            "--triton-tensorrt",
        ],
    )
    if res.exit_code != 0:
        raise RuntimeError(f"lite export failed: {res.output}")
    return art


def _history_ids(artifact: Path) -> list[list[str]]:
    ids = [json.loads(line)["id"] for line in (artifact / "items.jsonl").read_text().splitlines()]
    return [ids[:3], [ids[9]], ids[:79], []]


def _parse(path: Path):
    from google.protobuf import text_format

    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


# ---------------------------------------------------------------------------- configs
def test_configs_parse_and_match_the_graph(artifact: Path, tmp_path: Path) -> None:
    import onnx

    repo = write_model_repository(
        artifact,
        tmp_path / "repo",
        max_batch_size=32,
        preferred_batch_sizes=(4, 8, 64),
        max_queue_delay_us=250,
        instance_count=2,
    )
    cfg = _parse(repo / "lite_onnx" / "config.pbtxt")
    graph = onnx.load(str(repo / "lite_onnx" / "1" / "model.onnx"), load_external_data=False).graph

    def graph_dims(values) -> dict[str, list[int]]:
        return {
            v.name: [
                d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim
            ]
            for v in values
        }

    gin, gout = graph_dims(graph.input), graph_dims(graph.output)
    assert cfg.backend == "onnxruntime"
    assert cfg.max_batch_size == 32
    assert {i.name: list(i.dims) for i in cfg.input} == {n: d[1:] for n, d in gin.items()}
    assert {o.name: list(o.dims) for o in cfg.output} == {n: d[1:] for n, d in gout.items()}
    assert all(d[0] == -1 for d in [*gin.values(), *gout.values()])  # batch dim is dynamic
    k = json.loads((artifact / "manifest.json").read_text())["dims"]["k"]
    assert list(cfg.output[0].dims) == [k]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]  # 64 > max_batch_size
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    kinds = pytest.importorskip("tritonclient.grpc.model_config_pb2").ModelInstanceGroup
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, kinds.KIND_CPU)]
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator

    py = _parse(repo / "lite" / "config.pbtxt")
    assert py.backend == "python"
    assert py.max_batch_size == 32
    assert {i.name: (list(i.dims), i.optional) for i in py.input} == {
        "HISTORY": ([-1], False),
        "K": ([1], True),
        "EXCLUDE_SEEN": ([1], True),
    }
    assert {o.name: list(o.dims) for o in py.output} == {"ITEM_IDS": [-1], "SCORES": [-1]}
    assert py.input[0].allow_ragged_batch
    for f in ("model.py", "artifact/model.onnx", "artifact/items.jsonl", "artifact/manifest.json"):
        assert (repo / "lite" / "1" / f).is_file(), f


def test_tensorrt_accelerator_block_and_gpu_kind(artifact: Path, tmp_path: Path) -> None:
    repo = write_model_repository(
        artifact, tmp_path / "repo", tensorrt_accelerator=True, kind="KIND_GPU", name="rec"
    )
    cfg = _parse(repo / "rec_onnx" / "config.pbtxt")
    (accel,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    assert dict(accel.parameters)["precision_mode"] == "FP16"
    kinds = pytest.importorskip("tritonclient.grpc.model_config_pb2").ModelInstanceGroup
    assert cfg.instance_group[0].kind == kinds.KIND_GPU
    # the python model on a GPU instance ranks with the fused kernel (ranker "auto")
    py = _parse(repo / "rec" / "config.pbtxt")
    assert py.instance_group[0].kind == kinds.KIND_GPU
    assert py.parameters["ranker"].string_value == "auto"


def test_tensorrt_accelerator_has_the_artifacts_profile_and_an_engine_cache(
    artifact: Path, tmp_path: Path
) -> None:
    """One TensorRT engine per instance for the whole profile, kept across restarts: without
    profile shapes ONNX Runtime rebuilds an engine for every new input width."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    prof = manifest["profile"]
    items, excl = prof["item_ids"], prof["exclude_ids"]
    repo = write_model_repository(
        artifact, tmp_path / "repo", tensorrt_accelerator=True, kind="KIND_GPU", max_batch_size=32
    )
    (accel,) = _parse(
        repo / "lite_onnx" / "config.pbtxt"
    ).optimization.execution_accelerators.gpu_execution_accelerator
    params = dict(accel.parameters)
    assert params == {
        "precision_mode": "FP16",
        "trt_profile_min_shapes": (f"item_ids:1x{items['min'][1]},exclude_ids:1x{excl['min'][1]}"),
        "trt_profile_opt_shapes": (
            f"item_ids:16x{items['opt'][1]},exclude_ids:16x{excl['opt'][1]}"
        ),
        # the batch up to Triton's max_batch_size; widths up to the artifact's profile
        "trt_profile_max_shapes": (
            f"item_ids:32x{items['max'][1]},exclude_ids:32x{excl['max'][1]}"
        ),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/lite-export-trt-cache",
    }
    text = (repo / "lite_onnx" / "config.pbtxt").read_text()
    assert f"exclude_ids is at most {excl['max'][1]} wide" in text
    # the CLI's --triton-tensorrt repository says the same, for its max_batch_size (16)
    (accel,) = _parse(
        artifact / "triton" / "lite_onnx" / "config.pbtxt"
    ).optimization.execution_accelerators.gpu_execution_accelerator
    assert dict(accel.parameters)["trt_profile_max_shapes"] == (
        f"item_ids:16x{items['max'][1]},exclude_ids:16x{excl['max'][1]}"
    )
    repo2 = write_model_repository(
        artifact,
        tmp_path / "repo2",
        tensorrt_accelerator=True,
        tensorrt_cache_dir="/var/cache/trt",
    )
    cfg2 = _parse(repo2 / "lite_onnx" / "config.pbtxt")
    (accel,) = cfg2.optimization.execution_accelerators.gpu_execution_accelerator
    assert dict(accel.parameters)["trt_engine_cache_path"] == "/var/cache/trt"
    with pytest.raises(ValueError, match="absolute path on the Triton server"):
        write_model_repository(
            artifact, tmp_path / "r3", tensorrt_accelerator=True, tensorrt_cache_dir="cache"
        )


def test_repository_is_atomic_and_refuses_to_overwrite(artifact: Path, tmp_path: Path) -> None:
    target = tmp_path / "repo"
    write_model_repository(artifact, target)
    marker = target / "lite" / "1" / "model.py"
    with pytest.raises(FileExistsError, match="force"):
        write_model_repository(artifact, target)
    with pytest.raises(TritonRepositoryError, match="nothing does not exist"):
        write_model_repository(tmp_path / "nothing", target, force=True)
    ckpt = tmp_path / "ckpt"  # a training checkpoint's marker: named as one
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"format": "lite-export-checkpoint", "format_version": 1}')
    with pytest.raises(TritonRepositoryError, match="is a training checkpoint.*lite export"):
        write_model_repository(ckpt, target, force=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TritonRepositoryError, match="has no manifest.json"):
        write_model_repository(empty, target, force=True)
    assert marker.is_file()  # a failed rewrite leaves the old repository
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "empty", "repo"]  # no temp dirs
    write_model_repository(artifact, target, force=True, max_batch_size=8)
    assert _parse(target / "lite_onnx" / "config.pbtxt").max_batch_size == 8
    with pytest.raises(ValueError, match="kind"):
        write_model_repository(artifact, tmp_path / "r2", kind="KIND_TPU")


def test_model_py_is_self_contained(artifact: Path, tmp_path: Path) -> None:
    import ast

    repo = write_model_repository(artifact, tmp_path / "repo")
    tree = ast.parse((repo / "lite" / "1" / "model.py").read_text())

    def imports(nodes) -> set[str]:
        found = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                found.add((node.module or "").split(".")[0])
        return found

    assert imports(tree.body) <= {
        "contextlib",
        "json",
        "os",
        "numpy",
        "onnxruntime",
        "triton_python_backend_utils",
    }
    # lite-export and torch only inside the optional kernel ranker, behind an ImportError guard
    ranker = next(n for n in ast.walk(tree) if getattr(n, "name", "") == "_kernel_ranker")
    assert imports(ast.walk(tree)) - imports(tree.body) == {"torch", "safetensors", "lite_export"}
    assert imports(ast.walk(ranker)) == {"torch", "safetensors", "lite_export"}
    files = {p.name for p in (repo / "lite" / "1" / "artifact").iterdir()}
    assert {"user_encoder.onnx", "head.safetensors", "model.onnx", "items.jsonl"} <= files


def test_cli_format_triton_puts_the_repository_in_the_artifact(artifact: Path) -> None:
    from lite_export.artifact import verify_artifact

    manifest = verify_artifact(artifact)  # the repository's files are checksummed too
    files = {f for f in manifest["files"] if f.startswith("triton/")}
    assert {
        "triton/lite_onnx/config.pbtxt",
        "triton/lite_onnx/1/model.onnx",
        "triton/lite/config.pbtxt",
        "triton/lite/1/model.py",
        "triton/lite/1/artifact/items.jsonl",
        "triton/lite/1/artifact/manifest.json",
        "triton/lite/1/artifact/model.onnx",
    } <= files
    assert manifest["triton"]["max_batch_size"] == 16
    cfg = _parse(artifact / "triton" / "lite_onnx" / "config.pbtxt")
    kinds = pytest.importorskip("tritonclient.grpc.model_config_pb2").ModelInstanceGroup
    assert cfg.max_batch_size == 16
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, kinds.KIND_GPU)]
    (accel,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    assert (
        json.loads((artifact / "triton/lite/1/artifact/manifest.json").read_text())["dims"]
        == (manifest["dims"])
    )


def test_external_data_is_copied(artifact: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    art = tmp_path / "art"
    art.mkdir()
    for f in ("manifest.json", "items.jsonl", "user_encoder.onnx", "head.safetensors"):
        shutil.copy(artifact / f, art / f)
    model = onnx.load(str(artifact / "model.onnx"))
    onnx.save(
        model,
        str(art / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    repo = write_model_repository(art, tmp_path / "repo")
    for d in ("lite_onnx/1", "lite/1/artifact"):
        assert (repo / d / "model.onnx.data").is_file(), d
        ort.InferenceSession(str(repo / d / "model.onnx"), providers=["CPUExecutionProvider"])


# ------------------------------------------------------- model.py with stand-in Triton utils
class _Tensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class _Response:
    def __init__(self, output_tensors=(), error=None):
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class _Error:
    def __init__(self, msg: str):
        self.msg = msg

    def message(self) -> str:
        return self.msg


def _stub_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor
    mod.InferenceResponse = _Response
    mod.TritonError = _Error
    mod.TritonModelException = RuntimeError
    mod.get_input_tensor_by_name = lambda req, name: req.get(name)
    return mod


def _request(history: list[str], k: int | None = None, exclude_seen: bool | None = None) -> dict:
    req = {"HISTORY": _Tensor("HISTORY", np.array([[h.encode() for h in history]], np.object_))}
    if not history:
        req["HISTORY"] = _Tensor("HISTORY", np.zeros((1, 0), np.object_))
    if k is not None:
        req["K"] = _Tensor("K", np.array([[k]], np.int32))
    if exclude_seen is not None:
        req["EXCLUDE_SEEN"] = _Tensor("EXCLUDE_SEEN", np.array([[exclude_seen]], np.bool_))
    return req


def _model_py(artifact: Path, tmp_path: Path, monkeypatch, ranker="auto", kind="CPU"):
    """The repository's model.py for ``artifact``, initialised with stand-in Triton utils."""
    repo = write_model_repository(artifact, tmp_path / "repo", python_model=True)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stub_utils())
    spec = importlib.util.spec_from_file_location("lite_triton_model", repo / "lite/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    params = {"graph": {"string_value": "model.onnx"}, "ranker": {"string_value": ranker}}
    model.initialize(
        {
            "model_config": json.dumps({"parameters": params}),
            "model_repository": str(repo / "lite"),
            "model_version": "1",
            "model_instance_kind": kind,
            "model_instance_device_id": "0",
        }
    )
    return model


RANKERS = [
    ("auto", "CPU"),  # a CPU instance: the ONNX ranking graph
    ("lite_export", "CPU"),  # user_encoder.onnx + lite_export.kernels.rank (the CPU path)
    pytest.param("auto", "GPU", marks=pytest.mark.gpu),  # the fused kernel on the GPU
]


@pytest.mark.parametrize(("ranker", "instance_kind"), RANKERS)
def test_model_py_matches_the_python_engine(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ranker, instance_kind
) -> None:
    import torch

    import lite_export

    if instance_kind == "GPU" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    model = _model_py(artifact, tmp_path, monkeypatch, ranker, instance_kind)
    uses_kernel = ranker == "lite_export" or instance_kind == "GPU"
    assert (model.kernel is not None) == uses_kernel
    if uses_kernel:
        assert model.kernel[3].type == ("cuda" if instance_kind == "GPU" else "cpu")
    hists = _history_ids(artifact)
    engine = lite_export.load(artifact, engine="onnxruntime")
    for exclude_seen in (True, False):
        ref = engine.recommend(hists, k=7, exclude_seen=exclude_seen)
        out = model.execute([_request(h, 7, exclude_seen) for h in hists])
        for r, resp in enumerate(out):
            assert resp.error is None
            assert [b.decode() for b in resp.outputs["ITEM_IDS"][0]] == ref.ids[r]
            np.testing.assert_allclose(resp.outputs["SCORES"][0], ref.scores[r], atol=1e-5)
    # unknown ids: an error response for that request only, naming them; the others still answer
    out = model.execute([_request(["nope", hists[0][0], "gone"]), _request(hists[1], 3)])
    assert out[0].error is not None and "'nope', 'gone'" in out[0].error.message()
    assert out[1].error is None and out[1].outputs["ITEM_IDS"].shape == (1, 3)
    bad_k = model.execute([_request(hists[0], 21)])[0]
    assert bad_k.error is not None and "between 1 and 20" in bad_k.error.message()
    assert model.execute([_request(hists[0])])[0].outputs["SCORES"].shape == (1, 10)
    model.finalize()


def test_model_py_refuses_an_unknown_ranker(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = write_model_repository(artifact, tmp_path / "repo", python_model=True)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stub_utils())
    spec = importlib.util.spec_from_file_location("lite_triton_model2", repo / "lite/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = {"ranker": {"string_value": "faiss"}}
    args = {"model_config": json.dumps({"parameters": params}), "model_version": "1"}
    args["model_repository"] = str(repo / "lite")
    with pytest.raises(RuntimeError, match="ranker must be auto, onnx or lite_export, got 'faiss'"):
        module.TritonPythonModel().initialize(args)


def test_model_py_gpu_instance_uses_its_own_device(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KIND_GPU instance on GPU 1 (Triton's args) puts the encoder session, the head and the
    fused kernel's current device on GPU 1, not GPU 0; emulated on CPU."""
    import safetensors.torch
    import torch

    repo = write_model_repository(artifact, tmp_path / "repo", python_model=True)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stub_utils())
    spec = importlib.util.spec_from_file_location("lite_triton_model3", repo / "lite/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    set_devices, sessions, moved = [], [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: set_devices.append(torch.device(d)))

    class Head:
        def to(self, device):
            moved.append(torch.device(device))
            return self

    monkeypatch.setattr(
        safetensors.torch, "load_file", lambda path: {"weight": Head(), "bias": Head()}
    )
    ort = module.ort
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )

    def session(path, so=None, providers=None):
        sessions.append((Path(path).name, providers))
        return object()

    monkeypatch.setattr(ort, "InferenceSession", session)
    model = module.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps({"parameters": {"ranker": {"string_value": "auto"}}}),
            "model_repository": str(repo / "lite"),
            "model_version": "1",
            "model_instance_kind": "GPU",
            "model_instance_device_id": "1",
            "model_instance_name": "lite_0_1",
        }
    )
    gpu1 = torch.device("cuda:1")
    assert set_devices == [gpu1]
    assert model.kernel[3] == gpu1 and moved == [gpu1, gpu1]
    encoder = dict(sessions)["user_encoder.onnx"]
    assert encoder == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


# --------------------------------------------------------------------- the real server
# the session fixture `triton_server` (tests/conftest.py, tests/triton_fixture.py) serves the
# session's tiny artifact; tests/serving/test_serve_oip.py compares `lite serve` with it


def _infer(client, history: list[str], k: int | None, asynchronous: bool = False):
    import tritonclient.http as httpclient

    hist = np.array([[h.encode() for h in history]], dtype=np.object_).reshape(1, len(history))
    inputs = [httpclient.InferInput("HISTORY", list(hist.shape), "BYTES")]
    inputs[0].set_data_from_numpy(hist)
    if k is not None:  # K is optional (default 10)
        inputs.append(httpclient.InferInput("K", [1, 1], "INT32"))
        inputs[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
    outputs = [
        httpclient.InferRequestedOutput("ITEM_IDS"),
        httpclient.InferRequestedOutput("SCORES"),
    ]
    if asynchronous:
        return client.async_infer("lite", inputs, outputs=outputs)
    return client.infer("lite", inputs, outputs=outputs)


@pytest.mark.slow
def test_real_triton_server_matches_the_python_engine(triton_server) -> None:
    import tritonclient.http as httpclient

    import lite_export

    client = httpclient.InferenceServerClient(triton_server.url, concurrency=8)
    hists = _history_ids(triton_server.artifact)
    ref = lite_export.load(triton_server.artifact, engine="onnxruntime").recommend(hists, k=10)
    try:
        _check_server(client, hists, ref)
    finally:
        client.close()


def _check_server(client, hists: list[list[str]], ref) -> None:
    from tritonclient.utils import InferenceServerException

    for r, h in enumerate(hists):
        res = _infer(client, h, 10)
        ids = [b.decode() for b in res.as_numpy("ITEM_IDS").reshape(-1)]
        assert ids == ref.ids[r], f"history {r}"
        np.testing.assert_allclose(res.as_numpy("SCORES").reshape(-1), ref.scores[r], atol=1e-5)
    with pytest.raises(InferenceServerException, match="unknown item ids: 'no-such-item'"):
        _infer(client, [hists[0][0], "no-such-item"], 5)
    assert client.is_server_ready() and client.is_model_ready("lite")
    res = _infer(client, hists[1], 3)  # still answers after the error
    assert res.as_numpy("ITEM_IDS").shape == (1, 3)
    res = _infer(client, hists[0], None)  # K left out: 10
    assert [b.decode() for b in res.as_numpy("ITEM_IDS").reshape(-1)] == ref.ids[0]
    with pytest.raises(InferenceServerException, match="between 1 and 20"):
        _infer(client, hists[0], 50)
    # concurrent requests of different lengths: the dynamic batcher groups them (ragged input)
    pending = [
        (r, _infer(client, h, 10, asynchronous=True)) for r in range(4) for h in [hists[r]] * 4
    ]
    for r, req in pending:
        res = req.get_result(timeout=60)
        assert [b.decode() for b in res.as_numpy("ITEM_IDS").reshape(-1)] == ref.ids[r]
        np.testing.assert_allclose(res.as_numpy("SCORES").reshape(-1), ref.scores[r], atol=1e-5)


def test_model_py_never_recommends_removed_items(text_head_artifact, tmp_path, monkeypatch):
    # `lite catalog remove` then a repository from the edited artifact: neither the graph nor
    # the empty-history fallback (ordered by model.py itself) returns a removed item
    from lite_export.catalog import ItemCatalog
    from lite_export.catalog_edit import edit_catalog

    cat = ItemCatalog.read_jsonl(text_head_artifact / "items.jsonl")
    gone = [cat.ids[i] for i in cat.most_popular(3)[0]]
    out = edit_catalog(text_head_artifact, tmp_path / "removed", "remove", ids=gone, log=None)
    model = _model_py(out, tmp_path, monkeypatch)
    answers = model.execute([_request([], 10), _request([gone[0], cat.ids[7]], 10)])
    for resp in answers:
        assert resp.error is None
        assert not set(gone) & {b.decode() for b in resp.outputs["ITEM_IDS"][0]}
    model.finalize()
