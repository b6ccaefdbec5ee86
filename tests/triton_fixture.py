"""A real Triton Inference Server for the tests: the ``tritonserver`` 2.51 that
``nvidia-pytriton==0.7.0`` bundles (python backend only, CPU), run from the separate virtual
environment named by ``LITE_TRITON_VENV`` (it needs numpy<2; `.ci/run` makes it), on 127.0.0.1.

The session fixture ``triton_server`` (tests/conftest.py) starts one for the whole run, so the
exporter test and the serving test that compares `lite serve` with it share it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HOW = (
    'python3 -m venv V && V/bin/pip install nvidia-pytriton==0.7.0 "numpy<2" '
    "onnxruntime==1.32.0 && export LITE_TRITON_VENV=V"
)


@dataclass
class TritonServer:
    url: str  # host:port of the HTTP endpoint, as tritonclient.http takes it
    log: Path
    artifact: Path  # the artifact whose `lite` model it serves


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def triton_venv() -> Path:
    """The venv with nvidia-pytriton==0.7.0 (numpy<2, onnxruntime), or skip saying how to make it."""
    raw = os.environ.get("LITE_TRITON_VENV")
    if not raw:
        pytest.skip(f"LITE_TRITON_VENV is not set (a real Triton server needs it): {HOW}")
    venv = Path(raw)
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"LITE_TRITON_VENV={venv} has no bin/python: {HOW}")
    return venv


def venv_info(venv: Path) -> dict:
    code = (
        "import json, sys, sysconfig, site, pytriton, os;"
        "print(json.dumps({'version': f'{sys.version_info[0]}.{sys.version_info[1]}',"
        "'libdir': sysconfig.get_config_var('LIBDIR'), 'site': site.getsitepackages(),"
        "'pytriton': os.path.dirname(pytriton.__file__)}))"
    )
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    if res.returncode != 0:
        pytest.skip(f"LITE_TRITON_VENV={venv} has no usable nvidia-pytriton: {res.stderr[-500:]}")
    return json.loads(res.stdout)


@contextmanager
def start_triton(artifact: Path, tmp_path: Path) -> Iterator[TritonServer]:
    """pytriton's bundled tritonserver on 127.0.0.1 with the artifact's python-backend model
    (``lite``, max_batch_size 8), ready; terminated on exit."""
    from lite_export.exporters.triton_server import write_model_repository

    venv = triton_venv()
    info = venv_info(venv)
    dist = Path(info["pytriton"]) / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    stub = dist / "python_backend_stubs" / info["version"] / "triton_python_backend_stub"
    if not binary.is_file() or not stub.is_file():
        pytest.skip(f"{dist} lacks tritonserver or a python {info['version']} backend stub")
    # pytriton's own layout: the backends dir with the stub for this Python put in python/
    backends = tmp_path / "backends"
    shutil.copytree(dist / "backends", backends)
    (backends / "python" / "triton_python_backend_stub").symlink_to(stub)
    repo = write_model_repository(artifact, tmp_path / "repo", onnx_model=False, max_batch_size=8)
    libs = Path(info["pytriton"]).parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (info["libdir"], str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(info["site"])  # the stub's interpreter finds numpy<2 here
    ports = [_free_port() for _ in range(3)]
    log_path = tmp_path / "tritonserver.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            str(binary),
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            f"--cache-directory={dist / 'caches'}",
            f"--http-port={ports[0]}",
            f"--grpc-port={ports[1]}",
            f"--metrics-port={ports[2]}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-http=true",
            "--allow-grpc=true",
            "--allow-metrics=false",
            "--log-verbose=0",
            "--exit-timeout-secs=10",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"127.0.0.1:{ports[0]}"
    try:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url)
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited ({proc.returncode}):\n" + log_path.read_text()[-4000:]
                )
            try:
                if client.is_server_ready() and client.is_model_ready("lite"):
                    break
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "tritonserver not ready within 120 s:\n" + log_path.read_text()[-4000:]
                )
            time.sleep(0.25)
        client.close()  # open keep-alive connections would hold up the server's shutdown
        yield TritonServer(url, log_path, Path(artifact))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
