"""The TensorRT builder's calls into TensorRT, on CPU, against a stand-in ``tensorrt`` module.

The stand-in implements the few Python API calls ``build_engine`` makes (Builder,
create_network, OnnxParser, optimisation profile, builder config, build_serialized_network) and
records them, so these tests check what a GPU host's TensorRT would be asked for: the network
creation flags on TensorRT 10.x and 11.x, and the optimisation profile `lite export --format
tensorrt` gives each input.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")

from lite_export.exporters import tensorrt as trt_export  # noqa: E402
from lite_export.exporters.tensorrt import (  # noqa: E402
    TensorRTUnavailableError,
    build_engine,
    network_creation_flags,
)
from lite_export.exporters.tensorrt import build as trt_build  # noqa: E402


def fake_tensorrt(version: str = "11.4.0.106", strongly_typed_flag: bool = True):
    """A ``tensorrt`` module with the builder API build_engine uses; ``mod.calls`` records it."""
    mod = types.ModuleType("tensorrt")
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec finds it
    mod.__version__ = version
    calls: dict = {"set_shape": {}, "create_network": []}
    mod.calls = calls

    class NetworkDefinitionCreationFlag:
        pass

    if strongly_typed_flag:
        NetworkDefinitionCreationFlag.STRONGLY_TYPED = 1  # its value in TensorRT 10.x
    mod.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag

    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    class ILogger:
        def __init__(self):
            pass

    ILogger.Severity = Severity
    mod.ILogger = ILogger
    mod.BuilderFlag = types.SimpleNamespace(TF32="TF32")
    mod.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape, self.is_shape_tensor = name, shape, False

    class Network:
        def __init__(self):
            self.inputs: list[Tensor] = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            graph = onnx.load(path, load_external_data=False).graph
            for vi in graph.input:
                dims = vi.type.tensor_type.shape.dim
                shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
                self.network.inputs.append(Tensor(vi.name, shape))
            return True

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls["set_shape"][name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def add_optimization_profile(self, profile):
            return 0

        def clear_flag(self, flag):
            calls.setdefault("cleared", []).append(flag)

        def set_memory_pool_limit(self, pool, size):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["create_network"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"fake plan"

    mod.Builder, mod.OnnxParser = Builder, OnnxParser
    return mod


@pytest.fixture
def gpu_host(monkeypatch):
    """A host where ``import tensorrt`` gives the stand-in and one CUDA device is visible."""

    def install(**kwargs):
        mod = fake_tensorrt(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", mod)
        monkeypatch.setattr(trt_build, "cuda_device_count", lambda: 1)
        return mod

    return install


# --- strongly typed on TensorRT 10.x and 11.x ------------------------------------------------
def test_network_creation_flags_follow_the_tensorrt_version():
    assert network_creation_flags(fake_tensorrt("10.16.1.11")) == 1 << 1
    assert network_creation_flags(fake_tensorrt("11.4.0.106")) == 1 << 1  # kept, ignored by 11
    # a TensorRT 11 that dropped the deprecated flag: strongly typed is its only mode
    assert network_creation_flags(fake_tensorrt("11.9.0", strongly_typed_flag=False)) == 0
    with pytest.raises(TensorRTUnavailableError, match="STRONGLY_TYPED"):
        network_creation_flags(fake_tensorrt("10.0.0", strongly_typed_flag=False))


@pytest.fixture
def ranking_onnx(artifact) -> Path:
    return artifact / "model.onnx"


@pytest.mark.parametrize("flag", [True, False])
def test_build_engine_on_tensorrt_11_with_and_without_the_flag(
    gpu_host, ranking_onnx, tmp_path, flag
):
    trt = gpu_host(version="11.4.0.106", strongly_typed_flag=flag)
    shapes = {"item_ids": (1, 1), "exclude_ids": (1, 1)}
    big = {"item_ids": (8, 20), "exclude_ids": (8, 64)}
    out = build_engine(
        ranking_onnx,
        tmp_path / "model.plan",
        min_shapes=shapes,
        opt_shapes=big,
        max_shapes=big,
        precision="fp32",
    )
    assert out.read_bytes() == b"fake plan"
    assert trt.calls["create_network"] == [1 << 1 if flag else 0]
    assert trt.calls["set_shape"]["exclude_ids"] == ((1, 1), (8, 64), (8, 64))


# --- the profile `lite export --format tensorrt` builds -----------------------------------------
def test_cli_gives_exclude_ids_its_own_profile(gpu_host, trained, tmp_path):
    from typer.testing import CliRunner

    from lite_export.cli import app

    trt = gpu_host(version="10.16.1.11")
    model, *_, ckpt = trained
    hist = model.config.max_history
    art = tmp_path / "art"
    args = ["export", str(ckpt), "--out", str(art), "--k", "20", "--format", "tensorrt"]
    args += ["--max-exclude", "300", "--max-shape", f"64,{hist}", "--no-optimize", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert trt.calls["set_shape"] == {
        "item_ids": ((1, 1), (16, hist), (64, hist)),
        "exclude_ids": ((1, 1), (16, hist), (64, 300)),
    }
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["profile"]["exclude_ids"] == {
        "min": [1, 1],
        "opt": [16, hist],
        "max": [64, 300],
    }
    assert manifest["files"]["model.plan"]["bytes"] == len(b"fake plan")
    assert manifest["tensorrt_build"] == {"tensorrt_version": "10.16.1.11"}
    assert "TensorRT plan: " in res.output and "TensorRT 10.16.1.11" in res.output
    assert "exclude_ids [1, 1]..[64, 300]" in res.output
    assert "TF32" in trt.calls["cleared"]  # fp32 parity: no TF32 matmuls
    assert trt_export.tensorrt_available()  # the stand-in counts as installed


# --- one concern per module, the old module's public names kept ---------------------------------
#: ``__all__`` of the single ``lite_export/exporters/tensorrt.py`` this package replaced
OLD_PUBLIC = [
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


def test_the_package_splits_check_rewrite_and_build_keeping_the_public_names():
    import subprocess

    from lite_export.exporters.tensorrt import build, check, rewrite

    assert hasattr(trt_export, "__path__")  # a package, not one module
    homes = {
        check: {"check_tensorrt_compat", "TensorRTReport", "Finding", "RULES", "MAX_ELEMENTS"},
        rewrite: {"split_large_gather", "split_large_matmul"},
        build: {"build_engine", "tensorrt_available", "TensorRTBuildError", "cuda_device_count"},
    }
    for module, names in homes.items():
        for name in names:
            assert getattr(trt_export, name) is getattr(module, name), name
    missing = [n for n in OLD_PUBLIC if n not in trt_export.__all__ or not hasattr(trt_export, n)]
    assert not missing
    # the static check needs no builder: check.py imports nothing from build.py or rewrite.py
    text = Path(check.__file__).read_text()
    assert "tensorrt.build" not in text and "tensorrt.rewrite" not in text
    # importing the package (as every export does, for the static check) loads neither
    # tensorrt nor onnx
    code = (
        "import sys, lite_export.exporters.tensorrt as t; t.check_tensorrt_compat; "
        "print([m for m in ('tensorrt', 'onnx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
