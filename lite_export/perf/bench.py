"""``lite bench``: latency (p50/p95/p99) and throughput over engines x precisions x threads x
batch sizes x history lengths, in process (``engine.recommend``) and over HTTP against real
``lite serve`` processes on 127.0.0.1.

In process, one point is ``engine.recommend(B histories of length L, k)`` called repeatedly for
``duration_s`` (or ``reps`` calls): latency per call, throughput in users/s (B / mean call time).
Over HTTP, one point is a bounded load (closed loop at a concurrency, or open loop at a rate;
see :mod:`lite_export.perf.load`) of ``POST /v1/recommend`` with one history of length L per
request against a server started with that engine and thread count (the server's micro-batching
forms the batches; the mean batch size comes from its ``/metrics``). Precision is each artifact's
own graph precision: pass several artifacts (e.g. fp32 and fp16 exports) to compare precisions.

Histories are drawn from the artifact's catalog by popularity: inference cost depends on the
shapes (batch, history length, k, catalog size), not on which items are in them.

Outputs: a table on stdout, ``bench.json`` (one object per row: what was measured, the numbers,
machine, commit, load average), ``bench.md``, and ``bench_inprocess.png`` / ``bench_http.png``
(p50 and p99 latency against throughput, one line per engine and precision). Each carries a
marker (a ``_written_by`` key in every JSON row, a first-line comment in the Markdown, the PNG's
``Software`` text): before any measurement, an existing file of those names is refused unless
lite-export wrote it, and replaced only with ``force`` (``--force``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ALL_ENGINES = ("torch", "onnxruntime", "tensorrt")


def default_threads() -> list[int]:
    """1, half the cores and all the cores (deduplicated): 1,2 on a 2-core machine."""
    n = os.cpu_count() or 1
    return sorted({1, max(1, n // 2), n})


@dataclass
class BenchConfig:
    artifacts: list[Path]
    out: Path
    #: None: every engine of ALL_ENGINES that loads here (the others are skipped with a note)
    engines: list[str] | None = None
    threads: list[int] = field(default_factory=default_threads)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    histories: list[int] = field(default_factory=lambda: [50, 200])
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    #: open-loop rates (requests/s) instead of concurrency levels, when given
    rates: list[float] | None = None
    k: int = 10
    inprocess: bool = True
    http: bool = True
    #: output file names: ``{name}.json``, ``{name}.md``, ``{name}_inprocess.png``, ``{name}_http.png``
    name: str = "bench"
    #: seconds per grid point (in process: at most this long or ``reps`` calls)
    duration_s: float = 1.5
    reps: int = 200
    #: most requests per HTTP grid point
    max_requests: int = 5000
    #: settings of every `lite serve` (ServeSettings keys); engine and threads come from the grid
    serve: dict = field(default_factory=dict)
    plots: bool = True
    seed: int = 0
    #: replace the outputs of an earlier run in ``out`` (never a file lite-export did not write)
    force: bool = False
    #: other files the run reads (e.g. the --config serve.json): never overwritten
    inputs: list[Path] = field(default_factory=list)

    def output_names(self) -> list[str]:
        """The files the run writes in ``out``."""
        names = [f"{self.name}.json", f"{self.name}.md"]
        if self.plots:
            names += [f"{self.name}_inprocess.png"] if self.inprocess else []
            names += [f"{self.name}_http.png"] if self.http else []
        return names

    def check_outputs(self) -> list[Path]:
        """Before any measurement: refuse to overwrite a file lite-export did not write (or,
        without ``force``, one it did); :class:`~lite_export.artifact.OutputDirError`."""
        from lite_export.artifact import check_output_files

        inputs = [*self.artifacts, *self.inputs]
        return check_output_files(self.out, self.output_names(), force=self.force, sources=inputs)

    def validate(self) -> None:
        if not self.artifacts:
            raise ValueError("name at least one artifact directory")
        if self.engines is not None:
            unknown = [e for e in self.engines if e not in ALL_ENGINES]
            if unknown or not self.engines:
                raise ValueError(f"unknown engines {unknown}; choose from {','.join(ALL_ENGINES)}")
        for name in ("threads", "batch_sizes", "histories", "concurrency"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a comma-separated list of integers >= 1, "
                    f"got {values}"
                )
        if self.rates is not None and (not self.rates or any(r <= 0 for r in self.rates)):
            raise ValueError(f"--rates must be positive requests/s, got {self.rates}")
        if self.k < 1:
            raise ValueError(f"--k must be >= 1, got {self.k}")
        if self.duration_s <= 0 or self.reps < 1 or self.max_requests < 1:
            raise ValueError("--duration-s must be > 0, --reps and --max-requests >= 1")
        if not (self.inprocess or self.http):
            raise ValueError("nothing to measure: --no-inprocess and --no-http together")


@dataclass
class BenchResult:
    rows: list[dict]
    files: list[Path]
    notes: list[str]


# ---------------------------------------------------------------------- helpers
def precision_of(manifest: dict) -> str:
    return manifest.get("export_options", {}).get("precision") or manifest.get("dtypes", {}).get(
        "compute", "fp32"
    )


def model_id(artifact: Path) -> str:
    import hashlib

    return hashlib.sha256((artifact / "manifest.json").read_bytes()).hexdigest()[:16]


def load_engine(artifact: Path, engine: str, threads: int):
    """The engine over the artifact (checksums were verified once already) at ``threads``
    (ONNX Runtime's intra-op threads; the PyTorch engine uses torch's global pool, which
    :func:`_inprocess` sets and restores around its measurements)."""
    from lite_export.engines.registry import load

    return load(artifact, engine=engine, verify=False, threads=threads)


def time_calls(fn, duration_s: float, reps: int, min_reps: int = 5) -> np.ndarray:
    """Milliseconds per call of ``fn`` after two warm-up calls: at most ``reps`` calls, stopping
    after ``duration_s`` once ``min_reps`` are in."""
    fn()
    fn()
    out = []
    start = time.perf_counter()
    while len(out) < reps:
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
        if len(out) >= min_reps and time.perf_counter() - start >= duration_s:
            break
    return np.asarray(out)


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


# ---------------------------------------------------------------------- the run
class BenchArtifact:
    def __init__(self, path: Path, cfg: BenchConfig, notes: list[str]):
        from lite_export.artifact import verify_artifact
        from lite_export.catalog import ItemCatalog

        self.path = Path(path).resolve()
        self.manifest = verify_artifact(self.path)  # once; engines then load with verify=False
        self.precision = precision_of(self.manifest)
        self.model = model_id(self.path)
        dims = self.manifest["dims"]
        self.max_history, self.max_k, self.num_items = (
            dims["max_history"],
            dims["k"],
            dims["num_items"],
        )
        if cfg.k > self.max_k:
            raise ValueError(
                f"--k {cfg.k} is more than the K={self.max_k} {self.path} was exported with; pass "
                f"--k {self.max_k} or less (or re-export with `lite export --k`)"
            )
        self.histories = sorted({min(h, self.max_history) for h in cfg.histories})
        capped = sorted(h for h in cfg.histories if h > self.max_history)
        if capped:
            notes.append(
                f"{self.path.name}: history lengths {capped} are beyond its max_history "
                f"{self.max_history}; measured at {self.max_history}"
            )
        catalog = ItemCatalog.read_jsonl(self.path / "items.jsonl")
        pool = max(64, max(cfg.batch_sizes))
        self.pools = {
            h: _sample(catalog, h, pool, cfg.seed + h) for h in self.histories
        }  # [n, h] external ids

    def common(self) -> dict:
        return {
            "artifact": str(self.path),
            "model": self.model,
            "precision": self.precision,
            "num_items": self.num_items,
            "max_history": self.max_history,
        }


def _sample(catalog, length: int, n: int, seed: int) -> list[list[str]]:
    from lite_export.perf.load import sample_histories

    return sample_histories(catalog.ids, catalog.popularity, length, n, seed)


def available_engines(arts: list[BenchArtifact], cfg: BenchConfig, notes: list[str]) -> dict:
    """{artifact path: [engines that load it here]}; the others get a note saying why."""
    from lite_export.engines.base import EngineUnavailableError

    wanted = cfg.engines or list(ALL_ENGINES)
    out = {}
    for art in arts:
        ok = []
        for name in wanted:
            try:
                load_engine(art.path, name, min(cfg.threads))
            except EngineUnavailableError as exc:
                first = str(exc).strip().splitlines()[0]
                notes.append(f"{name} skipped for {art.path.name}: {first}")
                continue
            ok.append(name)
        out[art.path] = ok
    if not any(out.values()):
        raise ValueError("no engine could load the artifact(s):\n  " + "\n  ".join(notes))
    return out


def run_bench(cfg: BenchConfig, progress: bool = True, console=None) -> BenchResult:
    """Run the grid and write bench.json, bench.md and the plots into ``cfg.out``."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lite_export.benchmarking import commit, machine
    from lite_export.perf.load import loadavg

    cfg.validate()
    cfg.check_outputs()
    if cfg.http:
        require_http()
    if cfg.plots:
        require_matplotlib()
    console = console or Console(stderr=True)
    notes: list[str] = []
    arts = [BenchArtifact(Path(a), cfg, notes) for a in cfg.artifacts]
    engines = available_engines(arts, cfg, notes)
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {escape(n)}")
    meta = {"machine": machine(), "commit": commit(), "k": cfg.k}
    loads = cfg.rates if cfg.rates else cfg.concurrency
    n_in = sum(
        len(engines[a.path]) * len(cfg.threads) * len(a.histories) * len(cfg.batch_sizes)
        for a in arts
    )
    n_http = sum(
        len(engines[a.path]) * len(cfg.threads) * len(a.histories) * len(loads) for a in arts
    )
    rows: list[dict] = []
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress,
    )
    with bar:
        stages = [
            (bar.add_task(label, total=total), measure)
            for enabled, label, total, measure in (
                (cfg.inprocess, "in process", n_in, _inprocess),
                (cfg.http, "HTTP", n_http, _http),
            )
            if enabled
        ]
        # each engine and thread count in process, then over HTTP (where one client's HTTP
        # overhead is measured call by call against the engine in this process)
        for art in arts:
            for name in engines[art.path]:
                for threads in cfg.threads:
                    for task, measure in stages:
                        rows += measure(art, name, threads, cfg, meta, bar, task, loadavg)
    files = write_results(rows, cfg, notes)
    return BenchResult(rows, files, notes)


@contextlib.contextmanager
def engine_in_process(art, name: str, threads: int):
    """The engine loaded here as `lite serve` holds it: ``threads`` intra-op threads, and what is
    alive once it is loaded moved out of the cyclic garbage collector (``ServerState._install``),
    so that both sides of the HTTP overhead run alike."""
    restore = None
    if name == "torch":
        import torch

        restore = torch.get_num_threads()
    try:
        eng = load_engine(art.path, name, threads)
        if restore is not None:
            import torch

            torch.set_num_threads(threads)
        gc.collect()
        gc.freeze()
        yield eng
    finally:
        gc.unfreeze()
        if restore is not None:
            import torch

            torch.set_num_threads(restore)


def _inprocess(art, name, threads, cfg, meta, bar, task, loadavg) -> list[dict]:
    from lite_export.perf.load import CpuWatch

    with engine_in_process(art, name, threads) as eng:
        rows = []
        for hist in art.histories:
            pool = art.pools[hist]
            for b in cfg.batch_sizes:
                bar.update(task, description=f"in process {name} t={threads} L={hist} B={b}")
                offset = [0]

                def call(pool=pool, b=b, offset=offset):  # a different slice of the pool each call
                    batch = [pool[(offset[0] + j) % len(pool)] for j in range(b)]
                    offset[0] += b
                    eng.recommend(batch, k=cfg.k)

                load1 = loadavg()
                watch = CpuWatch()
                watch.start()
                ms = time_calls(call, cfg.duration_s, cfg.reps)
                cpu = watch.stop()
                mean = float(ms.mean())
                rows.append(
                    {
                        "what": "lite bench: in process, engine.recommend",
                        "mode": "inprocess",
                        "engine": eng.name,
                        **art.common(),
                        "threads": threads,
                        "history": hist,
                        "batch": b,
                        "calls": int(ms.size),
                        "p50_ms": pct(ms, 50),
                        "p95_ms": pct(ms, 95),
                        "p99_ms": pct(ms, 99),
                        "mean_ms": round(mean, 3),
                        "throughput": round(b / (mean / 1000.0), 2),
                        "throughput_unit": "users/s",
                        "loadavg_1m": load1,
                        **cpu,
                        **meta,
                    }
                )
                bar.advance(task)
        return rows


def paired_overhead(eng, url: str, histories: list[list[str]], k: int, cfg) -> dict:
    """What HTTP adds for one client, measured call by call: ``engine.recommend`` of a history in
    this process, then ``POST /v1/recommend`` of the same history to the server (one kept-alive
    connection, a blocking client), alternating for ``cfg.duration_s`` (at most ``cfg.reps``
    pairs). Drift of the machine's speed over the run (other tenants, clocks) hits both sides
    alike, where two separately timed runs each see their own. Returns the in-process and HTTP
    percentiles of these calls and ``http_overhead_p50_ms`` / ``_p99_ms`` (HTTP minus in process)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    bodies = [json.dumps({"history": h, "k": k}).encode() for h in histories]
    headers = {"Content-Type": "application/json"}

    def post(body: bytes) -> None:
        conn.request("POST", "/v1/recommend", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"lite serve answered {resp.status}: {data[:200]!r}")

    local, remote = [], []
    try:
        for i in range(2):  # warm-up, both sides
            eng.recommend([histories[i % len(histories)]], k=k)
            post(bodies[i % len(bodies)])
        start = time.perf_counter()
        for i in range(cfg.reps):
            h, body = histories[i % len(histories)], bodies[i % len(bodies)]
            t = time.perf_counter()
            eng.recommend([h], k=k)
            t1 = time.perf_counter()
            post(body)
            t2 = time.perf_counter()
            local.append((t1 - t) * 1000.0)
            remote.append((t2 - t1) * 1000.0)
            if i >= 4 and t2 - start >= cfg.duration_s:
                break
    finally:
        conn.close()
    a, b = np.asarray(local), np.asarray(remote)
    return {
        "pairs": int(a.size),
        "inprocess_p50_ms": pct(a, 50),
        "inprocess_p99_ms": pct(a, 99),
        "paired_http_p50_ms": pct(b, 50),
        "paired_http_p99_ms": pct(b, 99),
        "http_overhead_p50_ms": round(pct(b, 50) - pct(a, 50), 3),
        "http_overhead_p99_ms": round(pct(b, 99) - pct(a, 99), 3),
    }


def _http(art, name, threads, cfg, meta, bar, task, loadavg) -> list[dict]:
    from lite_export.perf.load import (
        CpuWatch,
        ServeProcess,
        batch_counters,
        request_bodies,
        run_load,
    )

    settings = {**cfg.serve, "engine": name, "threads": threads}
    bar.update(task, description=f"HTTP {name} t={threads}: starting lite serve")
    srv = ServeProcess(art.path, settings).start()
    rows = []
    pair = cfg.inprocess and not cfg.rates and 1 in cfg.concurrency
    stack = contextlib.ExitStack()
    try:
        serving = srv.model().get("serving", {})
        eng = stack.enter_context(engine_in_process(art, name, threads)) if pair else None
        for hist in art.histories:
            bodies = request_bodies(art.pools[hist], cfg.k)
            for load in cfg.rates or cfg.concurrency:
                what = f"rate {load:g}/s" if cfg.rates else f"C={load}"
                bar.update(task, description=f"HTTP {name} t={threads} L={hist} {what}")
                load1 = loadavg()
                counters = {}
                watch = CpuWatch(srv.proc.pid)

                def on_start(c=counters, u=srv.url, w=watch):
                    c["before"] = batch_counters(u)
                    w.start()

                res = run_load(
                    srv.url,
                    bodies,
                    concurrency=None if cfg.rates else int(load),
                    rate=float(load) if cfg.rates else None,
                    duration_s=cfg.duration_s,
                    max_requests=cfg.max_requests,
                    on_start=on_start,
                )
                cpu = watch.stop()
                after, before = batch_counters(srv.url), counters["before"]
                batches = after[1] - before[1]
                summary = res.summary()
                if pair and int(load) == 1:
                    bar.update(task, description=f"HTTP {name} t={threads} L={hist} paired")
                    summary.update(paired_overhead(eng, srv.url, art.pools[hist], cfg.k, cfg))
                rows.append(
                    {
                        "what": "lite bench: HTTP POST /v1/recommend against lite serve (loopback)",
                        "mode": "http",
                        "engine": name,
                        **art.common(),
                        "threads": threads,
                        "history": hist,
                        **summary,
                        "throughput": summary["throughput_rps"],
                        "throughput_unit": "requests/s",
                        "mean_batch": round((after[0] - before[0]) / batches, 2)
                        if batches
                        else None,
                        "serving": serving,
                        "loadavg_1m": load1,
                        **cpu,
                        "note": "load generator and server share this machine's cores",
                        **meta,
                    }
                )
                bar.advance(task)
    finally:
        stack.close()
        code = srv.stop()
        srv.cleanup()
    for r in rows:
        r["server_exit"] = code
    return rows


def require_http() -> None:
    import importlib.util

    missing = [
        m
        for m in ("fastapi", "uvicorn", "prometheus_client", "fastapi_offline")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ImportError(
            f'the HTTP part needs {", ".join(missing)}: pip install "lite-export[serve]" '
            "(or pass --no-http to measure in process only)"
        )


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(
            'the plots need matplotlib: pip install "lite-export[bench]" (or pass --no-plots)'
        )


# ---------------------------------------------------------------------- output
def tables(rows: list[dict]):
    """Rich tables of the in-process and HTTP rows."""
    from rich.table import Table

    out = []
    inproc = [r for r in rows if r["mode"] == "inprocess"]
    if inproc:
        t = Table(title="in process: engine.recommend (ms per call; users/s)")
        for c in ("engine", "prec", "threads", "history", "batch", "p50", "p95", "p99", "users/s"):
            t.add_column(c, justify="left" if c in ("engine", "prec") else "right")
        for r in inproc:
            t.add_row(
                r["engine"],
                r["precision"],
                str(r["threads"]),
                str(r["history"]),
                str(r["batch"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['throughput']:,.0f}",
            )
        out.append(t)
    http = [r for r in rows if r["mode"] == "http"]
    if http:
        t = Table(title="HTTP: POST /v1/recommend, one history per request (ms; requests/s)")
        cols = ("engine", "prec", "threads", "history", "load", "p50", "p95", "p99", "req/s")
        for c in (*cols, "ok/sent", "mean batch"):
            t.add_column(c, justify="left" if c in ("engine", "prec", "load") else "right")
        for r in http:
            t.add_row(
                r["engine"],
                r["precision"],
                str(r["threads"]),
                str(r["history"]),
                _load_label(r),
                _ms(r["p50_ms"]),
                _ms(r["p95_ms"]),
                _ms(r["p99_ms"]),
                f"{r['throughput']:,.0f}",
                f"{r['ok']}/{r['sent']}",
                "-" if r["mean_batch"] is None else f"{r['mean_batch']:.1f}",
            )
        out.append(t)
    over = [r for r in http if "http_overhead_p50_ms" in r]
    if over:
        t = Table(title="HTTP overhead, one client: each call in process, then over HTTP (ms)")
        cols = ("engine", "prec", "threads", "history", "in-proc p50", "HTTP p50", "+p50")
        for c in (*cols, "in-proc p99", "HTTP p99", "+p99", "batching"):
            t.add_column(c, justify="left" if c in ("engine", "prec", "batching") else "right")
        for r in over:
            t.add_row(
                r["engine"],
                r["precision"],
                str(r["threads"]),
                str(r["history"]),
                f"{r['inprocess_p50_ms']:.2f}",
                f"{r['paired_http_p50_ms']:.2f}",
                f"{r['http_overhead_p50_ms']:+.2f}",
                f"{r['inprocess_p99_ms']:.2f}",
                f"{r['paired_http_p99_ms']:.2f}",
                f"{r['http_overhead_p99_ms']:+.2f}",
                _batching(r),
            )
        out.append(t)
    return out


def _batching(r: dict) -> str:
    serving = r.get("serving") or {}
    mode = serving.get("batching", "?")
    out = f"timed {serving.get('max_delay_ms'):g} ms" if mode == "timed" else mode
    poll = serving.get("busy_poll_ms") or 0
    return f"{out}, busy poll {poll:g} ms" if poll else out


def machine_load(rows: list[dict]) -> list[str]:
    """What else the machine did while the rows were measured (each number is skewed by it)."""
    out = []
    loads = [r["loadavg_1m"] for r in rows if r.get("loadavg_1m") is not None]
    if loads:
        out.append(f"load average (1 min) before the points: {min(loads):.2f}-{max(loads):.2f}")
    other = [r["other_work_cores"] for r in rows if r.get("other_work_cores") is not None]
    if other:
        out.append(
            f"CPU used by other work during the points: median {float(np.median(other)):.2f}, "
            f"max {max(other):.2f} cores of {os.cpu_count()}"
        )
    return out


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _load_label(r: dict) -> str:
    return f"{r['rate_rps']:g}/s" if r["load"] == "open" else f"C={r['concurrency']}"


def markdown(rows: list[dict], notes: list[str]) -> str:
    first = rows[0] if rows else {}
    lines = [
        f"# lite bench ({first.get('machine', '?')}, commit {first.get('commit', '?')})",
        "",
        f"k = {first.get('k')}. In process: `engine.recommend` of B histories of length L "
        "(ms per call, users/s). HTTP: `POST /v1/recommend`, one history per request, against "
        "`lite serve` on 127.0.0.1 (C=n: n clients in a closed loop; n/s: an open-loop rate; the "
        "load generator shares the cores). Rows, with the load average before each point, in "
        "`bench.json`.",
        "",
    ]
    lines += [f"- {line}" for line in machine_load(rows)]
    lines += [f"- note: {n}" for n in notes]
    inproc = [r for r in rows if r["mode"] == "inprocess"]
    if inproc:
        lines += [
            "",
            "| engine | precision | threads | history | batch | p50 ms | p95 ms | p99 ms | users/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['engine']} | {r['precision']} | {r['threads']} | {r['history']} | {r['batch']} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['throughput']:,.0f} |"
            for r in inproc
        ]
    http = [r for r in rows if r["mode"] == "http"]
    if http:
        lines += [
            "",
            "| engine | precision | threads | history | load | p50 ms | p95 ms | p99 ms | req/s | ok/sent | mean batch |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['engine']} | {r['precision']} | {r['threads']} | {r['history']} | {_load_label(r)} | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} | {r['throughput']:,.0f} | "
            f"{r['ok']}/{r['sent']} | {r['mean_batch'] if r['mean_batch'] is not None else '-'} |"
            for r in http
        ]
    over = [r for r in http if "http_overhead_p50_ms" in r]
    if over:
        lines += [
            "",
            "What HTTP adds for one client: `engine.recommend` of one history in this process, "
            "then `POST /v1/recommend` of the same history to `lite serve` (one kept-alive "
            "connection), call after call, same engine, threads and history (the target: p50 "
            "within 0.5 ms).",
            "",
            "| engine | precision | threads | history | in process p50 / p99 ms | HTTP p50 / p99 ms "
            "| overhead p50 ms | overhead p99 ms | p50 within 0.5 ms | batching |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        lines += [
            f"| {r['engine']} | {r['precision']} | {r['threads']} | {r['history']} | "
            f"{r['inprocess_p50_ms']:.2f} / {r['inprocess_p99_ms']:.2f} | "
            f"{r['paired_http_p50_ms']:.2f} / {r['paired_http_p99_ms']:.2f} | "
            f"{r['http_overhead_p50_ms']:+.2f} | "
            f"{r['http_overhead_p99_ms']:+.2f} | "
            f"{'yes' if r['http_overhead_p50_ms'] <= 0.5 else 'no'} | {_batching(r)} |"
            for r in over
        ]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], cfg: BenchConfig, notes: list[str]) -> list[Path]:
    from lite_export.artifact import WRITTEN_BY_KEY, written_by

    out = Path(cfg.out)
    cfg.check_outputs()  # again: the last line of defence after the measurements
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{cfg.name}.json", out / f"{cfg.name}.md"]
    mark = written_by("lite bench")
    files[0].write_text(json.dumps([{WRITTEN_BY_KEY: mark, **r} for r in rows], indent=1) + "\n")
    files[1].write_text(f"<!-- written by {mark} -->\n" + markdown(rows, notes))
    if cfg.plots:
        from lite_export.perf.plots import plot_curves

        for mode, name, point in (
            ("inprocess", f"{cfg.name}_inprocess.png", "batch"),
            ("http", f"{cfg.name}_http.png", "concurrency" if not cfg.rates else "rate_rps"),
        ):
            sel = [r for r in rows if r["mode"] == mode]
            if sel:
                files.append(plot_curves(sel, out / name, point_key=point))
    return files
