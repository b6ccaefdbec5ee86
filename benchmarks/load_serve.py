"""Open-loop HTTP load against `lite serve` on loopback: p50/p99, errors, 503s, per offered rate.

Requests are sent at a fixed rate whatever the server does (open loop: latency is measured from
each request's *scheduled* send time, so a slow server cannot slow the generator down and hide
its queueing). Every run is bounded in time and count and only talks to 127.0.0.1.

    # start `lite serve ART` itself, histories of the ML-1M test users, find the highest rate
    # sustained for 60 s, then overload it and check it is healthy afterwards
    python benchmarks/load_serve.py --artifact /tmp/art-ml1m --data-dir ../shared/data/ml-1m --search

    # fixed rates against a server that is already running
    python benchmarks/load_serve.py --url http://127.0.0.1:8000 --rates 100,200 --duration 20

"Sustained" means every request answered 200 (no 503, no other status, no timeout or
connection error) with p99 latency within --slo-ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402

# ---------------------------------------------------------------------- a tiny HTTP/1.1 client
# (raw asyncio streams, keep-alive: a few times cheaper per request than a general client, which
# matters when the generator shares two cores with the server)


#: idle keep-alive connections older than this are not reused (uvicorn closes them after 5 s)
IDLE_S = 3.0


class Conn:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.last_used = 0.0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, dict, bytes]:
        if self.writer is None:
            await self.open()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if body or method == "POST":
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        hdrs = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        data = await self.reader.readexactly(int(hdrs.get("content-length", 0)))
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


class Pool:
    def __init__(self, host: str, port: int, size: int):
        self.host, self.port, self.size = host, port, size
        self.idle: list[Conn] = []
        self.count = 0
        self.free = asyncio.Condition()

    async def acquire(self) -> Conn:
        async with self.free:
            while not self.idle and self.count >= self.size:
                await self.free.wait()
            now = time.monotonic()
            while self.idle:
                conn = self.idle.pop()
                if now - conn.last_used < IDLE_S:
                    return conn
                conn.close()  # the server may close it any moment (keep-alive timeout)
                self.count -= 1
            self.count += 1
        return Conn(self.host, self.port)

    async def release(self, conn: Conn, ok: bool) -> None:
        async with self.free:
            if ok and conn.writer is not None:
                conn.last_used = time.monotonic()
                self.idle.append(conn)
            else:
                conn.close()
                self.count -= 1
            self.free.notify()

    def close(self) -> None:
        for c in self.idle:
            c.close()


# ---------------------------------------------------------------------- one open-loop run
async def run_rate(
    host: str,
    port: int,
    bodies: list[bytes],
    rate: float,
    duration: float,
    timeout: float,
    headers: dict,
    connections: int,
) -> dict:
    pool = Pool(host, port, connections)
    n = int(rate * duration)
    lat, lag, codes, errors = [], [], {}, {}
    loop = asyncio.get_running_loop()

    async def one(i: int, due: float) -> None:
        conn = None
        ok = False
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.acquire()
                lag.append(loop.time() - due)
                status, _, _ = await conn.request(
                    "POST", "/v1/recommend", bodies[i % len(bodies)], headers
                )
                ok = True
            codes[status] = codes.get(status, 0) + 1
            if status == 200:
                lat.append(loop.time() - due)
        except TimeoutError:
            errors["timeout"] = errors.get("timeout", 0) + 1
        except (
            OSError,
            ConnectionError,
            asyncio.IncompleteReadError,
            ValueError,
            IndexError,
        ) as exc:
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
        finally:
            if conn is not None:
                await pool.release(conn, ok)

    tasks = []
    start = loop.time() + 0.05
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    pool.close()
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    ok = codes.get(200, 0)
    return {
        "offered_rps": rate,
        "duration_s": duration,
        "sent": n,
        "ok": ok,
        "status_503": codes.get(503, 0),
        "other_status": {str(k): v for k, v in codes.items() if k not in (200, 503)},
        "errors": errors,
        "throughput_rps": round(ok / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(np.max(ms)), 2),
        "generator_lag_p99_ms": round(float(np.percentile(np.array(lag or [0]) * 1000, 99)), 2),
        "connections": pool.count,
    }


# ---------------------------------------------------------------------- server and data
def loop_factory():
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_server(artifact: str, args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    lite = Path(sys.executable).with_name("lite")
    cmd = [str(lite) if lite.exists() else "lite", "serve", artifact, "--port", str(port), *args]
    f = open(log, "w")  # noqa: SIM115 - the server's log, kept until the process ends
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"lite serve exited {proc.returncode}; see {log}")
        try:
            if http_get(url + "/readyz", {})[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"lite serve not ready after 180 s; see {log}")


def histories(args, url: str, headers: dict) -> tuple[list[bytes], str]:
    if args.data_dir:
        from lite_export.model.workflow import DataSpec, load_split

        ds, split = load_split(DataSpec(args.data, str(args.data_dir)))
        hists = [[ds.item_ids[i] for i in h] for h, _ in split.test]
        source = f"{ds.name} test users ({len(hists)})"
    else:  # random histories over the served catalog
        items = json.loads(http_get(url + "/v1/items?limit=100", headers)[1])["items"]
        rng = random.Random(0)
        hists = [rng.sample([i["id"] for i in items], rng.randint(1, 50)) for _ in range(2000)]
        source = "random histories of popular items"
    rng = random.Random(0)
    rng.shuffle(hists)
    return [json.dumps({"history": h, "k": args.k}).encode() for h in hists], source


def server_counters(url: str, headers: dict) -> dict:
    status, text = http_get(url + "/metrics", headers)
    out = {}
    for line in text.decode().splitlines():
        for name in ("lite_batch_size_sum", "lite_batch_size_count"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out


def healthy(url: str, headers: dict, body: bytes) -> dict:
    t = time.perf_counter()
    ready = http_get(url + "/readyz", {})[0]
    req = urllib.request.Request(
        url + "/v1/recommend", data=body, headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        rec = r.status
    return {"readyz": ready, "recommend": rec, "seconds": round(time.perf_counter() - t, 3)}


# ---------------------------------------------------------------------- driver
def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="a running server (else --artifact starts one on 127.0.0.1)")
    p.add_argument(
        "--artifact", help="artifact for `lite serve` (started and stopped by this script)"
    )
    p.add_argument(
        "--server-args", default="", help="extra `lite serve` flags, e.g. '--max-batch 64'"
    )
    p.add_argument("--api-key", default=os.environ.get("LITE_API_KEY"))
    p.add_argument("--data", default="ml-1m")
    p.add_argument("--data-dir", type=Path, help="histories of this data set's test users")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rates", default="", help="comma-separated offered rates (req/s) to run")
    p.add_argument(
        "--duration", type=float, default=60.0, help="seconds per --rates run / the confirm run"
    )
    p.add_argument(
        "--search", action="store_true", help="find the highest sustained rate, then overload"
    )
    p.add_argument("--start-rate", type=float, default=50.0)
    p.add_argument("--probe-seconds", type=float, default=10.0)
    p.add_argument("--overload-factor", type=float, default=2.5)
    p.add_argument("--overload-seconds", type=float, default=20.0)
    p.add_argument("--slo-ms", type=float, default=250.0, help="p99 bound for 'sustained'")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    p.add_argument("--connections", type=int, default=512)
    p.add_argument("--max-rate", type=float, default=5000.0, help="never offer more than this")
    p.add_argument("--out", type=Path, help="write rows to OUT.json and a table to OUT.md")
    p.add_argument("--append", action="store_true", help="keep the rows already in OUT.json")
    args = p.parse_args()
    if not args.url and not args.artifact:
        p.error("pass --url of a running server or --artifact to start one")

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    proc = None
    if args.artifact:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"load_serve_{os.getpid()}.log"
        proc, url = start_server(args.artifact, args.server_args.split(), log)
        print(
            f"started lite serve {args.artifact} {args.server_args} on {url} (log {log})",
            flush=True,
        )
    else:
        url = args.url.rstrip("/")
    host, port = url.split("//")[1].split(":")
    port = int(port)
    model = json.loads(http_get(url + "/v1/model", headers)[1])
    bodies, source = histories(args, url, headers)
    common = {
        "what": "lite serve load (open loop, loopback)",
        "artifact": model["artifact"],
        "model": model["id"],
        "engine": model["engine"],
        "num_items": model["num_items"],
        "max_history": model["max_history"],
        "serving": model["serving"],
        "histories": source,
        "k": args.k,
        "slo_p99_ms": args.slo_ms,
        "machine": machine(),
        "commit": commit(),
        "note": "generator and server share this machine's cores",
        "session": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rows: list[dict] = []

    def run(rate: float, seconds: float, kind: str) -> dict:
        load1 = round(os.getloadavg()[0], 2)  # other work on the machine, before this run
        before = server_counters(url, headers)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            row = runner.run(
                run_rate(host, port, bodies, rate, seconds, args.timeout, headers, args.connections)
            )
        after = server_counters(url, headers)
        n = after.get("lite_batch_size_count", 0) - before.get("lite_batch_size_count", 0)
        s = after.get("lite_batch_size_sum", 0) - before.get("lite_batch_size_sum", 0)
        row["mean_batch"] = round(s / n, 2) if n else None
        row["all_ok"] = row["ok"] == row["sent"] and not row["errors"]
        row["sustained"] = sustained(row)
        row["loadavg_1m_before"] = load1
        row = {"run": kind, **row, **common}
        rows.append(row)
        print(
            f"{kind:<10} {rate:>7.0f} req/s x {seconds:>4.0f}s: ok {row['ok']:>6}  503 {row['status_503']:>5}  "
            f"errors {sum(row['errors'].values()):>4}  p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms  "
            f"thr {row['throughput_rps']:>7.1f}/s  batch {row['mean_batch']}  -> "
            f"{'sustained' if row['sustained'] else 'NOT sustained'}",
            flush=True,
        )
        time.sleep(2)  # let the queue empty between runs
        return row

    def sustained(row: dict) -> bool:
        return row["ok"] == row["sent"] and not row["errors"] and row["p99_ms"] <= args.slo_ms

    try:
        for r in [float(x) for x in args.rates.split(",") if x]:
            run(r, args.duration, "fixed")
        if args.search:
            good, bad = 0.0, None
            rate = args.start_rate
            while rate <= args.max_rate and bad is None:
                if run(rate, args.probe_seconds, "probe")["sustained"]:
                    good, rate = rate, rate * 2
                else:
                    bad = rate
            bad = bad or args.max_rate
            for _ in range(3):  # bisect between the last good and the first bad rate
                mid = round((good + bad) / 2, -1)
                if mid in (good, bad):
                    break
                if run(mid, args.probe_seconds, "probe")["sustained"]:
                    good = mid
                else:
                    bad = mid
            best = good
            for _ in range(4):  # confirm for the full duration; step down 10% until it holds
                if best <= 0 or run(best, args.duration, "sustained")["sustained"]:
                    break
                best = round(best * 0.9, -1)
            over = run(
                min(args.max_rate, max(bad, best) * args.overload_factor),
                args.overload_seconds,
                "overload",
            )
            time.sleep(1)
            over["health_after"] = healthy(url, headers, bodies[0])
            print(f"after overload: {over['health_after']}", flush=True)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "killed"
            print(f"lite serve stopped (exit {rc})", flush=True)
            for row in rows:
                row["server_exit"] = rc
    if args.out:
        write(args.out, rows, args.append)
    best = [r["offered_rps"] for r in rows if r["run"] in ("sustained", "fixed") and r["all_ok"]]
    within = [
        r["offered_rps"] for r in rows if r["run"] in ("sustained", "fixed") and r["sustained"]
    ]
    print(
        f"highest rate held {args.duration:.0f} s with every request 200: {max(best, default=None)} "
        f"req/s; also within p99 <= {args.slo_ms:.0f} ms: {max(within, default=None)} req/s"
    )
    print(json.dumps(rows))


def write(out: Path, rows: list[dict], append: bool) -> None:
    """OUT.json (every row; --append keeps the rows of earlier sessions) and OUT.md."""
    path = out.with_suffix(".json")
    if append and path.exists():
        rows = json.loads(path.read_text()) + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows))
    print(f"wrote {path} and {out.with_suffix('.md')}")


def markdown(rows: list[dict]) -> str:
    """One table per session (one run of this script)."""
    out = ["# `lite serve` under open-loop load", ""]
    sessions: dict[str, list[dict]] = {}
    for r in rows:
        sessions.setdefault(r.get("session", "?"), []).append(r)
    for session, group in sessions.items():
        c = group[0]
        s = c["serving"]
        out += [
            f"## Session {session}",
            "",
            f"Model {c['model']} ({c['engine']}, {c['num_items']} items, max_history "
            f"{c['max_history']}), k={c['k']}, histories: {c['histories']}. Server: max_batch "
            f"{s['max_batch']}, max_delay_ms {s['max_delay_ms']}, max_queue {s['max_queue']}, threads "
            f"{s['threads']}. Machine: {c['machine']}; commit {c['commit']}; {c['note']}. Latency "
            "from each request's scheduled send time; 'all 200': every request answered 200, no "
            f"timeout or connection error; 'sustained': all 200 and p99 <= {c['slo_p99_ms']:.0f} ms. "
            "'load avg before' includes the previous run's server and generator.",
            "",
            "| run | offered req/s | seconds | sent | 200 | 503 | errors | p50 ms | p90 ms | p99 ms "
            "| max ms | served req/s | mean batch | load avg before | all 200 | sustained |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in group:
            errs = sum(r["errors"].values()) + sum(r["other_status"].values())
            all_ok = r.get("all_ok", r["ok"] == r["sent"] and not r["errors"])
            out.append(
                f"| {r['run']} | {r['offered_rps']:.0f} | {r['duration_s']:.0f} | {r['sent']} | "
                f"{r['ok']} | {r['status_503']} | {errs} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['throughput_rps']:.1f} | "
                f"{r['mean_batch']} | {r.get('loadavg_1m_before', '')} | {'yes' if all_ok else 'no'} | "
                f"{'yes' if r['sustained'] else 'no'} |"
            )
        for r in group:
            if "health_after" in r:
                h = r["health_after"]
                out += [
                    "",
                    f"After the overload run: /readyz {h['readyz']}, a recommendation "
                    f"{h['recommend']} ({h['seconds']} s); then SIGTERM stopped the server with exit "
                    f"{r.get('server_exit')}.",
                ]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
