"""The `gpu` extra pins a pair that loads: onnxruntime-gpu's TensorRT provider finds the libnvinfer
the pinned tensorrt ships, and both are built for the same CUDA major.

Reads the checked-in table tools/wheel_sonames.json (`python tools/wheel_sonames.py` writes it
from the real wheels with readelf), so CI downloads nothing. Bumping either pin without a table
entry, or to a pair whose sonames differ (tensorrt 11.x ships libnvinfer.so.11, onnxruntime-gpu
1.31.1's provider needs libnvinfer.so.10), fails here, as do an engine docstring and TensorRT
guide that name other versions.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "tools" / "wheel_sonames.json"


def _tool():
    spec = importlib.util.spec_from_file_location("wheel_sonames", ROOT / "tools/wheel_sonames.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    return _tool().gpu_pins()


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(TABLE.read_text())


def _entry(table: dict, name: str, version: str) -> dict:
    key = f"{name}=={version}"
    if key not in table["distributions"]:
        pytest.fail(
            f"tools/wheel_sonames.json has no entry for {key} (pinned in the gpu extra): run "
            "`python tools/wheel_sonames.py` and check the pair still loads"
        )
    return table["distributions"][key]


def _major(needed: list[str], lib: str) -> int | None:
    for soname in needed:
        m = re.fullmatch(rf"{re.escape(lib)}\.so\.(\d+)", soname)
        if m:
            return int(m.group(1))
    return None


def _provider_needs(table: dict, pins: dict) -> list[str]:
    ort = _entry(table, "onnxruntime-gpu", pins["onnxruntime-gpu"])
    (lib,) = [v for k, v in ort["libraries"].items() if k.endswith("providers_tensorrt.so")]
    return lib["needed"]


def _tensorrt_provides(table: dict, version: str) -> tuple[list[str], int]:
    """(the sonames the pinned tensorrt's libraries carry, its CUDA major), via the bindings."""
    meta = _entry(table, "tensorrt", version)
    (cu,) = [r for r in meta["requires"] if r.startswith("tensorrt_cu")]
    name, ver = cu.split("==")
    cuda = int(re.fullmatch(r"tensorrt_cu(\d+)", name).group(1))
    sub = _entry(table, name.replace("_", "-"), ver)
    (bindings,) = [r for r in sub["requires"] if "bindings" in r]
    b_name, b_ver = bindings.split("==")
    libs = _entry(table, b_name.replace("_", "-"), b_ver)["libraries"]
    # the bindings link the libraries of the libs wheel of the same version (pinned beside it)
    assert f"{name}_libs=={ver}" in sub["requires"]
    return [s for lib in libs.values() for s in lib["needed"] if s.startswith("libnv")], cuda


def test_the_table_was_written_for_these_pins(table, pins):
    assert table["pins"] == {n: pins[n] for n in ("onnxruntime-gpu", "tensorrt")}


def test_onnxruntime_tensorrt_provider_finds_the_pinned_tensorrt(table, pins):
    needed = _provider_needs(table, pins)
    provides, cuda = _tensorrt_provides(table, pins["tensorrt"])
    for lib in ("libnvinfer", "libnvonnxparser"):
        want = _major(needed, lib)
        assert want is not None, f"the provider no longer links {lib}: {needed}"
        assert f"{lib}.so.{want}" in provides, (
            f"onnxruntime-gpu=={pins['onnxruntime-gpu']}'s TensorRT provider needs "
            f"{lib}.so.{want}, tensorrt=={pins['tensorrt']} ships {provides}: pin a tensorrt "
            f"{want}.x or stop claiming the provider"
        )
    assert _major(needed, "libcudart") == cuda, (
        f"the provider is built for CUDA {_major(needed, 'libcudart')}, tensorrt "
        f"{pins['tensorrt']} resolves to its CUDA {cuda} build"
    )


def test_tensorrt_11_is_recorded_as_the_pair_that_does_not_load(table, pins):
    """The table keeps the evidence for the pin: 11.4's bindings link libnvinfer.so.11."""
    provides, _ = _tensorrt_provides(table, "11.4.0.106")
    assert "libnvinfer.so.11" in provides
    assert "libnvinfer.so.10" in _provider_needs(table, pins)


def test_engine_and_guide_name_the_pinned_pair(pins):
    from lite_export.engines import onnxruntime_engine

    ort_v, trt_v = pins["onnxruntime-gpu"], pins["tensorrt"]
    doc = onnxruntime_engine.__doc__
    assert f"onnxruntime-gpu {ort_v}" in doc and f"tensorrt {trt_v}" in doc
    major = trt_v.split(".")[0]
    assert f"libnvinfer.so.{major}" in onnxruntime_engine.TENSORRT_PROVIDER_NEEDS
    guide = (ROOT / "docs" / "tensorrt.md").read_text()
    assert f"onnxruntime-gpu {ort_v}" in guide and f"tensorrt {trt_v}" in guide


def test_a_tensorrt_provider_that_did_not_load_is_explained(artifact, monkeypatch):
    """ONNX Runtime falls back quietly (it prints "EP Error") when its TensorRT provider cannot
    load libnvinfer; the engine says which library the provider needs and what to install."""
    import onnxruntime as ort

    import lite_export
    from lite_export.engines.base import EngineUnavailableError

    real = ort.InferenceSession
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(
        ort,
        "InferenceSession",
        lambda path, so, providers: real(path, so, ["CPUExecutionProvider"]),
    )
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # not importable
    with pytest.raises(EngineUnavailableError) as info:
        lite_export.load(
            artifact,
            engine="onnxruntime",
            providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        )
    msg = str(info.value)
    assert "could not start ['TensorrtExecutionProvider', 'CUDAExecutionProvider']" in msg
    assert "libnvinfer.so.10" in msg and "tensorrt==10.16.1.11" in msg
    assert "import tensorrt failed" in msg and 'engine="tensorrt"' in msg
    # chosen automatically, a CUDA provider that did not load is a warning: CPU answers
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    rec = lite_export.load(artifact, engine="onnxruntime")
    assert rec.info["providers"] == ["CPUExecutionProvider"]


def test_every_version_the_docs_and_engine_name_is_the_pin(pins):
    """README.md, docs/ and the ONNX Runtime engine name the gpu pair in several places; a pin
    bump that leaves one of them behind fails here, naming it."""
    pattern = re.compile(
        r"(onnxruntime-gpu|tensorrt)`?(?: |==)`?(\d+\.\d+\.\d+(?:\.\d+)?)", re.IGNORECASE
    )
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files.append(ROOT / "lite_export" / "engines" / "onnxruntime_engine.py")
    seen, wrong = 0, []
    for path in files:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for m in pattern.finditer(line):
                name, version = m.group(1).lower(), m.group(2)
                if name == "tensorrt" and version.count(".") < 3:
                    continue  # "TensorRT 10.16" and the like: a release line, not a pin
                seen += 1
                if version != pins[name]:
                    wrong.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)}")
    assert seen >= 4, "the docs no longer name the gpu pair's versions"
    assert not wrong, f"gpu pins are {pins}; these name other versions:\n" + "\n".join(wrong)
