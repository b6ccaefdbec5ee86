"""A bounded HTTP load generator (asyncio, a minimal HTTP/1.1 client) and real ``lite serve``
subprocesses.

Two ways to load a server, both bounded in time *and* in request count:

- **closed loop** (``concurrency=C``): C clients each send a request, wait for the answer, send
  the next. Throughput and latency settle where the server can keep up: the point a
  latency/throughput curve is drawn through. Latency is measured per request.
- **open loop** (``rate=R``): requests are sent at R per second whatever the server does, and
  latency counts from each request's *scheduled* time, so a server that falls behind shows its
  queueing instead of slowing the generator down.

The client is a few dozen lines over asyncio streams (keep-alive connections, one request at a
time on each, ``Content-Length`` or chunked answers), not a general HTTP library: the generator
shares the machine's cores with the server, and its own cost is part of every latency it
measures. On this project's 2-core machine, one client against the same server (ML-1M model,
history 50) spent 0.09-0.11 ms of CPU per request with it, 0.35-0.39 ms with aiohttp's client
(~1.5 ms with httpx's AsyncClient), and its requests took 0.35-0.45 ms less (each row records
``client_cpu_ms_per_request``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class LoadError(RuntimeError):
    """The server could not be started or measured; the message says why (and where its log is)."""


# ---------------------------------------------------------------------- request bodies
def sample_histories(
    ids: list[str], popularity: list[int], length: int, n: int, seed: int = 0
) -> list[list[str]]:
    """``n`` histories of ``length`` distinct items each, drawn by popularity (+1, so every item
    can appear). Inference cost depends on the shapes, not on which items, so these stand in for
    real users when only the artifact is at hand."""
    rng = np.random.default_rng(seed)
    length = min(length, len(ids))
    weights = np.asarray(popularity, dtype=np.float64) + 1.0
    weights /= weights.sum()
    return [
        [ids[i] for i in rng.choice(len(ids), size=length, replace=False, p=weights)]
        for _ in range(n)
    ]


def request_bodies(histories: list[list[str]], k: int) -> list[bytes]:
    return [json.dumps({"history": h, "k": k}).encode() for h in histories]


# ---------------------------------------------------------------------- results
@dataclass
class LoadResult:
    mode: str  # "closed" | "open"
    concurrency: int | None
    rate_rps: float | None
    sent: int
    wall_s: float
    latencies_ms: np.ndarray  # of the 200 answers
    status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return int(self.status.get(200, 0))

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    def summary(self) -> dict:
        lat = self.latencies_ms
        pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if lat.size else (lambda q: None)
        return {
            "load": self.mode,
            "concurrency": self.concurrency,
            "rate_rps": self.rate_rps,
            "sent": self.sent,
            "ok": self.ok,
            "status_503": int(self.status.get(503, 0)),
            "other_status": {str(k): v for k, v in self.status.items() if k not in (200, 503)},
            "errors": dict(self.errors),
            "wall_s": round(self.wall_s, 3),
            "throughput_rps": round(self.ok / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 3) if lat.size else None,
            "mean_ms": round(float(lat.mean()), 3) if lat.size else None,
            "client_cpu_ms_per_request": round(1000 * self.client_cpu_s / max(1, self.sent), 3),
        }


# ---------------------------------------------------------------------- the generator
def _loop_factory():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


class _Client:
    """Minimal HTTP/1.1 keep-alive client: POSTs on a pool of at most ``limit`` connections,
    one request at a time on each; answers with ``Content-Length`` or chunked bodies."""

    def __init__(self, url: str, limit: int, headers: dict, timeout_s: float):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in {"Content-Type": "application/json", **headers}.items()]
        self.head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self.timeout_s = timeout_s
        self.sem = asyncio.Semaphore(limit)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.conns: list[asyncio.StreamWriter] = []

    async def post(self, body: bytes) -> int:
        """The answer's status; raises TimeoutError, OSError or asyncio.IncompleteReadError."""
        async with self.sem:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.conns.append(writer)
            try:
                async with asyncio.timeout(self.timeout_s):
                    writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
                    status, close = await self._answer(reader)
            except BaseException:
                writer.close()
                raise
            if close:
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status

    @staticmethod
    async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close, chunked = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not chunked:
            await reader.readexactly(length)
            return status, close
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status, close

    def close(self) -> None:
        for writer in self.conns:
            writer.close()


async def _load(
    url: str,
    bodies: list[bytes],
    *,
    concurrency: int | None,
    rate: float | None,
    duration_s: float,
    max_requests: int,
    timeout_s: float,
    warmup_s: float,
    headers: dict,
    connections: int,
    on_start,
) -> LoadResult:
    # time.perf_counter, not loop.time(): uvloop's clock has millisecond resolution
    limit = concurrency if concurrency else connections
    client = _Client(url, limit, headers, timeout_s)
    errors: Counter = Counter()
    status: Counter = Counter()
    latencies: list[float] = []

    async def one(body: bytes, since: float, record: bool) -> None:
        try:
            code = await client.post(body)
        except TimeoutError:
            if record:
                errors["timeout"] += 1
            return
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            if record:
                errors[type(exc).__name__] += 1
            return
        if record:
            status[code] += 1
            if code == 200:
                latencies.append((time.perf_counter() - since) * 1000.0)

    async def closed(clients: int, seconds: float, cap: int, record: bool) -> int:
        deadline = time.perf_counter() + seconds
        issued = 0

        async def client() -> None:
            nonlocal issued
            while issued < cap and time.perf_counter() < deadline:
                i = issued
                issued += 1
                await one(bodies[i % len(bodies)], time.perf_counter(), record)

        await asyncio.gather(*(client() for _ in range(clients)))
        return issued

    async def opened(per_s: float, seconds: float, cap: int) -> int:
        n = max(1, min(cap, int(per_s * seconds)))
        start = time.perf_counter() + 0.01
        tasks = []
        for i in range(n):
            due = start + i / per_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)], due, True)))
        await asyncio.gather(*tasks)
        return n

    try:
        if warmup_s > 0:  # connections opened, server and generator warm; not recorded
            await closed(concurrency or min(8, connections), warmup_s, max_requests, False)
        if on_start is not None:
            on_start()  # e.g. read the server's counters: after the warm-up, before the load
        cpu0, t0 = time.process_time(), time.perf_counter()
        async with asyncio.timeout(duration_s + timeout_s + 10):
            if concurrency:
                sent = await closed(concurrency, duration_s, max_requests, True)
            else:
                sent = await opened(rate, duration_s, max_requests)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        client.close()
    return LoadResult(
        "closed" if concurrency else "open",
        concurrency,
        rate,
        sent,
        wall,
        np.asarray(latencies, dtype=np.float64),
        dict(status),
        dict(errors),
        cpu,
    )


def run_load(
    url: str,
    bodies: list[bytes],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    duration_s: float = 2.0,
    max_requests: int = 10_000,
    timeout_s: float = 10.0,
    warmup_s: float = 0.2,
    headers: dict | None = None,
    connections: int = 256,
    path: str = "/v1/recommend",
    on_start=None,
) -> LoadResult:
    """POST ``bodies`` (cycled) to ``url + path``: closed loop with ``concurrency`` clients, or
    open loop at ``rate`` requests/s. Stops after ``duration_s`` or ``max_requests`` requests,
    whichever comes first; every request gives up after ``timeout_s``. ``warmup_s`` of closed-loop
    load comes first, unrecorded; then ``on_start()`` is called, and the measured load begins."""
    if (concurrency is None) == (rate is None):
        raise ValueError("pass exactly one of concurrency (closed loop) or rate (open loop)")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if duration_s <= 0 or max_requests < 1:
        raise ValueError("duration_s must be > 0 and max_requests >= 1")
    if not bodies:
        raise ValueError("no request bodies")
    coro = _load(
        url.rstrip("/") + path,
        bodies,
        concurrency=concurrency,
        rate=rate,
        duration_s=duration_s,
        max_requests=max_requests,
        timeout_s=timeout_s,
        warmup_s=warmup_s,
        headers=headers or {},
        connections=connections,
        on_start=on_start,
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(coro)


# ---------------------------------------------------------------------- a real server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def batch_counters(url: str) -> tuple[float, float]:
    """(sum, count) of the server's ``lite_batch_size`` histogram (requests per engine batch)."""
    _, text = http_get(url.rstrip("/") + "/metrics")
    total = count = 0.0
    for line in text.decode().splitlines():
        if line.startswith("lite_batch_size_sum "):
            total = float(line.split()[1])
        elif line.startswith("lite_batch_size_count "):
            count = float(line.split()[1])
    return total, count


class ServeProcess:
    """``lite serve ARTIFACT --config SETTINGS --port FREE`` on 127.0.0.1, ready when /readyz is
    200; ``stop()`` sends SIGTERM (the server drains and exits 0) and returns the exit code.

    ``settings`` are ServeSettings keys (engine, threads, max_batch, max_delay_ms, max_queue, ...);
    they go through a settings file, the way ``lite tune``'s serve.json does.
    """

    def __init__(self, artifact: str | os.PathLike, settings: dict | None = None):
        from lite_export.serving.settings import ServeSettings

        self.artifact = Path(artifact)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # loopback, no API key (the generator sends none), quiet logs
        values = {k: v for k, v in (settings or {}).items() if k not in ("api_key", "insecure")}
        values = {"log_level": "warning", **values, "host": "127.0.0.1", "port": self.port}
        ServeSettings.resolve(self.artifact, **values)  # refuse bad settings before starting
        self._dir = Path(tempfile.mkdtemp(prefix="lite-perf-"))
        self.config = self._dir / "serve.json"
        self.config.write_text(json.dumps(values, indent=2) + "\n")
        self.log_path = self._dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def start(self, timeout_s: float = 180.0) -> ServeProcess:
        cmd = [sys.executable, "-m", "lite_export.cli", "serve", str(self.artifact)]
        cmd += ["--config", str(self.config)]
        env = {k: v for k, v in os.environ.items() if k != "LITE_API_KEY"}
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise LoadError(
                        f"lite serve exited with {self.proc.returncode} before it was ready:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(OSError):
                    if http_get(self.url + "/readyz", timeout=2)[0] == 200:
                        return self
                time.sleep(0.05)
            raise LoadError(f"lite serve was not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
        except BaseException:  # not ready, or interrupted (Ctrl-C): never leave the server behind
            self.stop()
            raise

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def model(self) -> dict:
        return json.loads(http_get(self.url + "/v1/model")[1])

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc is not None and self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.returncode = self.proc.returncode
            self._log.close()
        return self.returncode

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is None:
            self.cleanup()


class CpuWatch:
    """CPU used by other work on the machine while we measure: the machine's busy CPU time
    (``/proc/stat``) less this process's and the server's (``/proc/PID/stat``), per second of
    wall time, in cores. The load average cannot tell that apart from our own load. Linux only;
    elsewhere every value is None."""

    def __init__(self, *pids: int):
        self.pids = [os.getpid(), *pids]
        self._start: tuple | None = None

    @staticmethod
    def _busy() -> float | None:
        try:
            fields = [
                float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _proc(pid: int) -> float:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        return (float(fields[11]) + float(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._start = (time.perf_counter(), self._busy(), sum(map(self._proc, self.pids)))

    def stop(self) -> dict:
        if self._start is None or self._start[1] is None:
            return {"machine_busy_cores": None, "other_work_cores": None}
        t0, busy0, ours0 = self._start
        wall = max(1e-9, time.perf_counter() - t0)
        busy = (self._busy() - busy0) / wall
        ours = (sum(map(self._proc, self.pids)) - ours0) / wall
        return {
            "machine_busy_cores": round(busy, 2),
            "other_work_cores": round(max(0.0, busy - ours), 2),
        }


def loadavg() -> float | None:
    """The 1-minute load average (other work on the machine skews every number here)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
