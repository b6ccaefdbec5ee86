"""Schemathesis against the server's own OpenAPI schema: no generated request gets a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")


def test_no_generated_request_gets_a_server_error(server, tmp_path):
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(exe),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "50",  # per operation: ~550 requests in all, ~15 s on 2 cores
        "--seed",
        "7",
        "--workers",
        "1",
        "--request-timeout",
        "30",
    ]
    # cwd: schemathesis and hypothesis keep their caches in the working directory
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # every operation, /admin/reload and the Open Inference Protocol's included
    assert "Tested: 14" in out, out[-3000:]
    assert " passed" in out and "failed" not in out.split("SUMMARY")[-1], out[-3000:]
    with server.client() as c:
        assert c.get("/readyz").status_code == 200
