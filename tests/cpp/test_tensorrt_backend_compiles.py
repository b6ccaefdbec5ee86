"""The C++ library's TensorRT backend compiles, on a machine without TensorRT.

CMake builds ``examples/cpp/src/tensorrt_backend.cpp`` with ``LITE_WITH_TENSORRT`` only where it
finds TensorRT and CUDA, which no CPU machine has, so without this test a mistake in it (the
plan's profile read with ``getProfileShape``, the ``setInputShape`` refusal naming the profile)
would first show on a user's GPU host. Here it is compiled with the library's warning flags
against ``tests/cpp/tensorrt_stub/``: headers declaring exactly the TensorRT and CUDA runtime
calls it makes, with the signatures of TensorRT 10.x / 11.x's C++ API reference. The stand-ins
decide nothing at run time (they have no definitions); the backend's behaviour is the Python
engine's, tested in tests/engines/test_input_profile.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CPP = REPO / "examples" / "cpp"
STUB = Path(__file__).resolve().parent / "tensorrt_stub"


def _compiler() -> str:
    for cxx in (os.environ.get("CXX", "c++"), "g++", "clang++"):
        if shutil.which(cxx):
            return cxx
    if os.environ.get("CI"):
        pytest.fail("no C++ compiler (CI must build the C++ example: run .ci/cpp_deps.sh first)")
    pytest.skip("no C++ compiler (apt-get install g++)")


def _compile(source: Path, *defines: str) -> subprocess.CompletedProcess:
    cmd = [_compiler(), "-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
    cmd += ["-I", str(CPP / "include"), "-isystem", str(STUB), *defines]
    cmd += ["-c", str(source), "-o", os.devnull]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("major", [10, 11])
def test_tensorrt_backend_compiles_against_the_tensorrt_api(major):
    proc = _compile(
        CPP / "src" / "tensorrt_backend.cpp",
        "-DLITE_WITH_TENSORRT=1",
        f"-DNV_TENSORRT_MAJOR={major}",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_the_stand_in_headers_are_what_the_backend_compiles_against(tmp_path):
    """A backend calling something the stand-ins (and so TensorRT 10's API) lack does not compile:
    the check above is not vacuous."""
    src = (CPP / "src" / "tensorrt_backend.cpp").read_text()
    call = "engine_->getProfileShape(name, 0, sel[w])"
    assert call in src
    # TensorRT 8's binding-index API, removed in TensorRT 10
    broken = tmp_path / "tensorrt_backend.cpp"
    broken.write_text(src.replace(call, "engine_->getProfileDimensions(0, 0, sel[w])"))
    proc = _compile(broken, "-DLITE_WITH_TENSORRT=1")
    assert proc.returncode != 0 and "getProfileDimensions" in proc.stderr
