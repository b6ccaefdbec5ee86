"""The Ray Serve application (``lite serve --cluster ray``) against single-process serving.

For each (shards S, replicas R) the script deploys the application on a local Ray cluster
(127.0.0.1) and measures, over HTTP through Ray Serve's proxy: one client's request latency
(p50, p99) and the throughput of C concurrent clients. Beside it, in the same run: in-process
``recommend()`` of the ONNX Runtime engine and of the in-process sharded engine (the merge's
cost), a plain ``lite serve`` process over HTTP, and one shard's ranking call alone. Rows go to
``OUT/cluster.json`` (one object per measurement) and ``cluster.md``.

    python benchmarks/bench_cluster.py ART --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.quantile(ms, 0.99)), 3),
    }


def _histories(ids: list[str], n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(ids, size=int(rng.integers(5, 50)))) for _ in range(n)]


def _latency(call, histories, warmup: int = 20) -> dict:
    for h in histories[:warmup]:
        call(h)
    times = []
    for h in histories:
        start = time.perf_counter()
        call(h)
        times.append(time.perf_counter() - start)
    return _stats(times) | {"requests": len(times)}


def _http_latency(url: str, histories) -> dict:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:

        def call(h):
            r = c.post("/v1/recommend", json={"history": h, "k": 10})
            r.raise_for_status()

        return _latency(call, histories)


def _http_throughput(url: str, histories, clients: int, seconds: float) -> dict:
    import httpx

    done, errors, stop = [0] * clients, [0] * clients, time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            j = i
            while time.monotonic() < stop:
                r = c.post(
                    "/v1/recommend", json={"history": histories[j % len(histories)], "k": 10}
                )
                done[i] += r.status_code == 200
                errors[i] += r.status_code != 200
                j += clients

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"clients": clients, "requests_per_s": round(sum(done) / wall, 1), "errors": sum(errors)}


def _wait_ready(url: str, timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("artifact")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()

    import lite_export
    from lite_export.cluster.shards import CatalogShard, shard_bounds

    art = str(Path(args.artifact).resolve())
    ref = lite_export.load(art, engine="onnxruntime", threads=1)
    dims = ref.manifest["dims"]
    histories = _histories(ref.catalog.ids, args.requests)
    base = {
        "artifact": Path(art).name,
        "items": dims["num_items"],
        "d": dims["d_model"],
        "k": 10,
        "machine": machine(),
        "commit": commit(),
    }
    rows = []

    def add(path: str, **values) -> None:
        row = base | {"path": path} | values
        rows.append(row)
        print(json.dumps(row), flush=True)

    add(
        "in-process recommend (onnxruntime)",
        **_latency(lambda h: ref.recommend([h], k=10), histories),
    )
    for s in args.shards:
        eng = lite_export.load(art, engine="sharded", shards=s, threads=1)
        add(
            f"in-process sharded engine, {s} shard(s)",
            shards=s,
            **_latency(lambda h, e=eng: e.recommend([h], k=10), histories),
        )
        users = eng.encoder(np.full((1, 50), 0, np.int64))
        a, b = shard_bounds(dims["num_items"], s)[0]
        shard = CatalogShard.from_artifact(art, a, b, "cpu")
        add(
            f"one shard's top-k call ({b - a} items)",
            shards=s,
            **_latency(lambda h, sh=shard, u=users: sh.topk(u, None, 10), histories),
        )

    # a plain lite serve process (one engine, no Ray) over HTTP
    port = _free_port()
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    srv = subprocess.Popen(
        [sys.executable, "-m", "lite_export.cli", "serve", art, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        add(
            "lite serve (one process), HTTP",
            **_http_latency(url, histories),
            **_http_throughput(url, histories, args.clients, args.seconds),
        )
    finally:
        srv.terminate()
        srv.wait(60)

    from lite_export.cluster.runtime import init_ray

    init_ray()
    from ray import serve

    from lite_export.cluster.ray_app import APP_NAME, build

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    try:
        for r in args.replicas:
            for s in args.shards:
                start = time.perf_counter()
                serve.run(build({"artifact": art, "shards": s, "replicas": r}), name=APP_NAME)
                _wait_ready(url)
                deploy_s = round(time.perf_counter() - start, 1)
                add(
                    f"Ray Serve, {s} shard(s) x {r} replica(s), HTTP",
                    shards=s,
                    replicas=r,
                    deploy_s=deploy_s,
                    **_http_latency(url, histories),
                    **_http_throughput(url, histories, args.clients, args.seconds),
                )
                serve.delete(APP_NAME)
    finally:
        serve.shutdown()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "cluster.md").write_text(render(rows))
    print(render(rows))


def render(rows: list[dict]) -> str:
    r0 = rows[0]
    lines = [
        "# Ray Serve with a sharded catalog, against single-process serving",
        "",
        f"Artifact `{r0['artifact']}` ({r0['items']:,} items, d = {r0['d']}), k = 10, one user per "
        f"request; machine: {r0['machine']}; commit {r0['commit']}. Command: "
        "`python benchmarks/bench_cluster.py ART --out benchmarks/results`.",
        "",
        "| path | p50 ms | p99 ms | requests/s (clients) | deploy s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        tput = f"{r['requests_per_s']:,} ({r['clients']})" if "requests_per_s" in r else ""
        lines.append(
            f"| {r['path']} | {r['p50_ms']} | {r['p99_ms']} | {tput} | {r.get('deploy_s', '')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
