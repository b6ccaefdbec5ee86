"""Helpers for the serving tests: a real `lite serve` subprocess and Prometheus parsing."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "test-key-1234"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lite_command() -> list[str]:
    exe = Path(sys.executable).with_name("lite")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lite_export.cli"]


def model_id(artifact: Path) -> str:
    return hashlib.sha256((Path(artifact) / "manifest.json").read_bytes()).hexdigest()[:16]


class Server:
    """One `lite serve` subprocess; ``startup`` records (healthz, readyz) statuses until ready."""

    def __init__(self, artifact: Path, args: list[str], log: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.cmd = [*lite_command(), "serve", str(artifact), "--port", str(self.port), *args]
        self.env = {k: v for k, v in os.environ.items() if k != "LITE_API_KEY"}
        self.env.update(env or {})
        self.startup: list[tuple[int, int]] = []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> Server:
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"lite serve exited {self.proc.returncode}:\n{self.logs()}")
                try:
                    pair = (c.get("/healthz").status_code, c.get("/readyz").status_code)
                except httpx.TransportError:
                    time.sleep(0.03)
                    continue
                self.startup.append(pair)
                if pair[1] == 200:
                    return self
                time.sleep(0.03)
        raise RuntimeError(f"lite serve not ready after {timeout}s:\n{self.logs()}")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), **kw)

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if "{" in key:
            n, rest = key.split("{", 1)
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            n, got = key, ""
        if n == name and got == want:
            return float(value)
    return 0.0
