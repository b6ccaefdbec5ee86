"""Where one `lite serve` request's time goes: one client on loopback, the server sampled by py-spy.

Starts `lite serve ARTIFACT` (from this checkout, or from another source tree with --source, to
compare with an older version), sends one history at a time with `lite bench`'s load generator
for --seconds, samples the server with `py-spy record` (``pip install py-spy``; it needs ptrace,
which root or CAP_SYS_PTRACE has), and prints per request: the wall-clock p50 next to
``engine.recommend`` in this process, the CPU the server and the client spent, and the time the
server's threads spent in each stage (each stage's share of the event loop thread's samples,
times the mean wall time per request; ``waiting`` is time the loop was idle or blocked: the
client's turn, thread hand-offs, the batching window; on a busy machine every stage also holds
the time its thread waited for a core).

    python benchmarks/profile_serve.py /tmp/art-ml1m --history 50
    python benchmarks/profile_serve.py /tmp/art-ml1m --source /tmp/old --settings '{"max_delay_ms": 2}'

The last line is JSON; benchmarks/results/serve_profile.md holds the tables of issue 15.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402
from lite_export.perf.load import (  # noqa: E402
    ServeProcess,
    request_bodies,
    run_load,
    sample_histories,
)

#: (stage, frame names that mark it; the first matching frame from the root wins)
STAGES = [
    ("engine.recommend (the model, as in process)", ("Engine.recommend",)),
    ("write the response (uvicorn send, syscall)", ("RequestResponseCycle.send",)),
    ("FastAPI routing, validation, dependencies", ("get_request_handler.<locals>.app",)),
    ("JSON serialisation", ("_dumps", "JSONResponse.render", "JSONResponse.__init__")),
    ("item ids checked (ModelHandle.prepare)", ("ModelHandle.prepare",)),
    ("JSON parse + Pydantic validation, fast path", ("_Guard._answer",)),  # less the above
    ("HTTP parse (httptools), ASGI task start", ("HttpToolsProtocol.data_received",)),
    ("batcher hand-off (queue, wake-ups, results)", ("MicroBatcher.submit", "_deliver", "_settle")),
    ("metrics", ("MutexValue.inc", "Histogram.observe", "Counter.inc")),
]


def classify(frames: list[str]) -> str:
    names = [f.split(" (")[0] for f in frames]
    for stage, marks in STAGES:
        if any(m in names for m in marks):
            return stage
    return "other server code (event loop, middleware, ASGI)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("artifact")
    ap.add_argument("--source", help="source tree whose lite_export serves (default: this one)")
    ap.add_argument("--settings", default="{}", help="serve.json keys as JSON")
    ap.add_argument("--engine", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--history", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    args = ap.parse_args()

    import lite_export

    art = Path(args.artifact).resolve()
    eng = lite_export.load(art, engine=args.engine, threads=args.threads)
    hists = sample_histories(eng.catalog.ids, eng.catalog.popularity, args.history, 64, 0)
    inproc = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.5:
        t = time.perf_counter()
        eng.recommend([hists[len(inproc) % 64]], k=10)
        inproc.append((time.perf_counter() - t) * 1000)
    settings = {"engine": args.engine, "threads": args.threads, **json.loads(args.settings)}
    here = os.getcwd()
    if args.source:  # `python -m` imports from the working directory first
        os.chdir(args.source)
    try:
        srv = ServeProcess(art, settings).start()
    finally:
        os.chdir(here)
    spy = shutil.which("py-spy")
    out = Path(tempfile.mkdtemp(prefix="profile-serve-")) / "spy.txt"
    try:
        bodies = request_bodies(hists, 10)
        run_load(srv.url, bodies, concurrency=1, duration_s=1.0)  # warm

        def cpu(pid: int) -> float:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        if spy:  # it samples inside the load: started after the warm-up, stopped before the end
            cmd = [spy, "record", "-p", str(srv.proc.pid), "-d", str(int(args.seconds))]
            cmd += ["-r", str(args.rate), "-f", "raw", "-o", str(out), "--threads", "--idle"]
            threading.Timer(
                0.5,
                lambda: subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ).wait(),
            ).start()
        load1 = os.getloadavg()[0]
        s0 = cpu(srv.proc.pid)
        res = run_load(
            srv.url, bodies, concurrency=1, duration_s=args.seconds + 2, max_requests=10**6
        )
        server_cpu = cpu(srv.proc.pid) - s0
    finally:
        srv.stop()
        srv.cleanup()
    summary = res.summary()
    n = summary["sent"]
    row = {
        "what": "profile_serve.py: one client, POST /v1/recommend, server sampled by py-spy",
        "artifact": str(art),
        "source": args.source or str(ROOT),
        "settings": settings,
        "history": args.history,
        "requests": n,
        "inprocess_p50_ms": round(float(np.median(inproc)), 3),
        "http_p50_ms": summary["p50_ms"],
        "http_p99_ms": summary["p99_ms"],
        "server_cpu_ms_per_request": round(1000 * server_cpu / n, 3),
        "client_cpu_ms_per_request": summary["client_cpu_ms_per_request"],
        "loadavg_1m": round(load1, 2),
        "machine": machine(),
        "commit": commit(),
    }
    print(
        f"{row['source']} {json.dumps(settings)} history {args.history}: {n} requests; in "
        f"process p50 {row['inprocess_p50_ms']:.3f} ms, HTTP p50 {row['http_p50_ms']:.3f} ms; "
        f"server CPU {row['server_cpu_ms_per_request']:.3f} ms/request, client CPU "
        f"{row['client_cpu_ms_per_request']:.3f}; load average {row['loadavg_1m']}"
    )
    if spy and out.exists():
        # each thread's samples as shares of the event loop's time, times the wall time per
        # request: the event loop, and the batcher thread while it runs a batch
        stages: Counter = Counter()
        main_samples = 0
        for line in out.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            frames = stack.split(";")
            thread, frames = frames[0], frames[1:]
            busy = frames[-1].split(" (")[0] not in ("Condition.wait", "Runner.run", "_run_once")
            if "MainThread" in thread:
                main_samples += int(count)
                stages[classify(frames) if busy else "waiting (event loop idle)"] += int(count)
            elif busy:
                stages["batcher thread: " + classify(frames)] += int(count)
        wall_ms = 1000 * summary["wall_s"] / n
        per = {k: round(wall_ms * v / main_samples, 3) for k, v in stages.most_common()}
        row["stages_ms_per_request"] = per
        print("| stage | ms per request |\n|---|---:|")
        for k, v in per.items():
            print(f"| {k} | {v:.3f} |")
    else:
        print("(no py-spy here: pip install py-spy for the per-stage table)")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
