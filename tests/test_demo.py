"""`lite demo`: train, export, validate, serve over HTTP until Ctrl-C; and what it says when an
extra is missing (simulated by blocking the imports in a fresh interpreter)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest


def _lite(args: list[str], block: tuple[str, ...] = ()) -> list[str]:
    """`lite ARGS` in a fresh interpreter where the ``block`` modules cannot be imported."""
    code = (
        "import sys\n"
        f"for m in {list(block)!r}: sys.modules[m] = None\n"
        "from lite_export.cli import main\n"
        f"sys.argv = ['lite', *{args!r}]\n"
        "main()\n"
    )
    return [sys.executable, "-c", code]


SERVE_AND_EXPORT = ("fastapi", "uvicorn", "prometheus_client", "fastapi_offline", "onnxruntime")


def test_demo_without_the_serve_extra_says_what_to_install_before_training():
    t = time.monotonic()
    proc = subprocess.run(
        _lite(["demo"], block=SERVE_AND_EXPORT), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'pip install -e ".[serve,onnx]"' in proc.stderr
    assert "lite demo --no-serve" in proc.stderr
    assert "epoch" not in proc.stdout  # refused before training
    assert time.monotonic() - t < 60


def test_demo_no_serve_with_the_base_install_only(tmp_path):
    """`pip install -e . && lite demo --no-serve`: no onnx extra, so no export, but a clean run."""
    proc = subprocess.run(
        _lite(
            ["demo", "--no-serve", "--epochs", "1", "--out", str(tmp_path / "d")],
            block=("onnx", "onnxscript", "onnxruntime", "fastapi", "aiohttp"),
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "NDCG@10" in out and "most-popular" in out
    assert "export skipped" in out and "[onnx]" in out
    assert "checkpoint, in process" in out  # the recommendations still shown
    assert (tmp_path / "d" / "ckpt" / "model.safetensors").exists()
    assert not (tmp_path / "d" / "artifact").exists()


def test_demo_serves_until_ctrl_c(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("onnxruntime")
    from lite_export.perf.load import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lite_export.cli", "demo", "--epochs", "1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C to stop" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(600), "".join(lines) + proc.stderr.read()
        out = "".join(lines)
        assert "identical to the checkpoint's for 32/32 test users" in out
        assert out.count("POST /v1/recommend:") == 3  # three users, each with its latency
        assert "round trip" in out and "score" in out
        # the printed curl line sends the first table's request, so it gets the first table's items
        curl = next(line for line in lines if "curl -s" in line)
        body = json.loads(curl.split(" -d '", 1)[1].rsplit("'", 1)[0])
        first = out[out.index("last items") : out.index("POST /v1/recommend:")]
        shown = re.findall(r"│\s*\d+\s*│\s*(\S+)\s*│", first)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/recommend",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = [i["id"] for i in json.loads(r.read())["items"]]
        assert len(shown) == body["k"] == 5 and len(body["history"]) > 3
        assert answer == shown, (curl, first)
        # still serving: answer a request of our own
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/recommend",
            data=json.dumps({"history": [], "k": 3}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
        assert len(body["items"]) == 3 and body["fallback"] is True
        assert all(i["title"] for i in body["items"])
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
