"""`lite serve --busy-poll-ms`: one client's latency and the saturated throughput, off against on.

    python benchmarks/bench_busy_poll.py ART                     # writes benchmarks/results/serve_busy_poll.{json,md}
    python benchmarks/bench_busy_poll.py ART --rounds 2 --out /tmp/r

Runs `lite bench`'s grid (``lite_export.perf.bench.run_bench``: engines x histories, 1 engine
thread) once per setting and round, the settings alternating round by round (off, on, off, on,
...) so that slow drifts of a shared machine hit both alike, and reports per setting the median
over rounds of: the in-process ``engine.recommend`` p50 (one history per call, calls back to
back), one client's HTTP p50 / p99 (closed loop, C=1), the paired overhead (HTTP minus an
in-process call of the same history, alternating call by call: ``http_overhead_p50_ms``) and the
requests/s of 32 clients (C=32, saturation). Each round's raw rows stay in the JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.artifact import check_output_files, written_by  # noqa: E402
from lite_export.benchmarking import commit, machine  # noqa: E402
from lite_export.perf.bench import BenchConfig, run_bench  # noqa: E402

FIELDS = {
    "inprocess_b1_p50_ms": "in process p50 ms",
    "http_c1_p50_ms": "HTTP C=1 p50 ms",
    "http_c1_p99_ms": "HTTP C=1 p99 ms",
    "paired_overhead_p50_ms": "paired overhead p50 ms",
    "c32_requests_s": "C=32 requests/s",
}


def one_round(art: Path, poll_ms: float, engines, histories, duration_s: float) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BenchConfig(
            artifacts=[art],
            out=Path(tmp),
            name="round",
            engines=engines,
            threads=[1],
            batch_sizes=[1],
            histories=histories,
            concurrency=[1, 32],
            duration_s=duration_s,
            serve={"busy_poll_ms": poll_ms},
            plots=False,
        )
        return run_bench(cfg, progress=False).rows


def summarize(rows: list[dict]) -> dict:
    """{(engine, history): {field: value}} of one round."""
    out: dict = {}
    for r in rows:
        key = (r["engine"], r["history"])
        d = out.setdefault(key, {})
        if r.get("mode") == "inprocess" and r.get("batch") == 1:
            d["inprocess_b1_p50_ms"] = r["p50_ms"]
        elif r.get("mode") == "http" and r.get("concurrency") == 1:
            d["http_c1_p50_ms"] = r["p50_ms"]
            d["http_c1_p99_ms"] = r["p99_ms"]
            d["paired_overhead_p50_ms"] = r.get("http_overhead_p50_ms")
        elif r.get("mode") == "http" and r.get("concurrency") == 32:
            d["c32_requests_s"] = r["throughput_rps"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", type=Path)
    p.add_argument("--poll-ms", type=float, default=10.0, help="the 'on' setting")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--engines", default="onnxruntime,torch")
    p.add_argument("--histories", default="50,200")
    p.add_argument("--duration-s", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--force", action="store_true", help="replace an earlier run's files")
    args = p.parse_args(argv)
    names = ["serve_busy_poll.json", "serve_busy_poll.md"]
    check_output_files(args.out, names, force=args.force, sources=[args.artifact])
    engines = args.engines.split(",")
    histories = [int(h) for h in args.histories.split(",")]
    settings = {"off": 0.0, "on": args.poll_ms}
    rounds: list[dict] = []
    for r in range(args.rounds):
        for label in ("off", "on") if r % 2 == 0 else ("on", "off"):
            rows = one_round(args.artifact, settings[label], engines, histories, args.duration_s)
            rounds.append(
                {"round": r, "setting": label, "busy_poll_ms": settings[label], "rows": rows}
            )
            print(
                f"round {r} {label}: {json.dumps({str(k): v for k, v in summarize(rows).items()})}",
                flush=True,
            )
    meta = {"machine": machine(), "commit": commit(), "artifact": str(args.artifact)}
    table = []
    keys = sorted({k for rd in rounds for k in summarize(rd["rows"])})
    for engine, hist in keys:
        row = {"engine": engine, "history": hist}
        for label in settings:
            per = [
                summarize(rd["rows"]).get((engine, hist), {})
                for rd in rounds
                if rd["setting"] == label
            ]
            for f in FIELDS:
                vals = [d[f] for d in per if d.get(f) is not None]
                row[f"{label}_{f}"] = round(statistics.median(vals), 3) if vals else None
        table.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / names[0]).write_text(
        json.dumps(
            {
                "_written_by": written_by("bench_busy_poll.py"),
                **meta,
                "table": table,
                "rounds": rounds,
            },
            indent=1,
        )
        + "\n"
    )
    lines = [
        "<!-- written by lite-export (bench_busy_poll.py) -->",
        f"# `lite serve --busy-poll-ms {args.poll_ms:g}`: off against on ({meta['machine']}, commit {meta['commit']})",
        "",
        f"`python benchmarks/bench_busy_poll.py {args.artifact} --rounds {args.rounds}`: lite bench's grid "
        "(1 engine thread, k = 10) per setting and round, settings alternating; medians over "
        f"{args.rounds} rounds. In process: `engine.recommend` of one history, calls back to back. "
        "HTTP C=1: one client, closed loop. Paired overhead: HTTP minus an in-process call of the "
        "same history, alternating call by call (lite bench's measure). C=32: 32 clients.",
        "",
        "| engine | history | setting | " + " | ".join(FIELDS.values()) + " |",
        "|---|---:|---|" + "---:|" * len(FIELDS),
    ]
    for row in table:
        for label in settings:
            vals = [row[f"{label}_{f}"] for f in FIELDS]
            shown = " | ".join(
                "" if v is None else f"{v:+.2f}" if f == "paired_overhead_p50_ms" else f"{v:g}"
                for f, v in zip(FIELDS, vals, strict=True)
            )
            lines.append(f"| {row['engine']} | {row['history']} | {label} | {shown} |")
    (args.out / names[1]).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
