"""C++ (`lite-recommend`, examples/cpp) vs Python ONNX Runtime engine: latency at batch 1.

Same artifact, same graph (model.ort.onnx), same ONNX Runtime library (the wheel's
libonnxruntime), the same intra-op thread count (1 and 2 by default), same histories: the 64 ML-1M test histories per
length that ``bench_engines.py`` draws (seed 0, lengths 50 and 200). Each side runs its
end-to-end ``recommend()`` (id mapping, padding, the ONNX Runtime call, ids/titles back) in its
own process, one history per call, cycling through the 64; the two sides alternate in rounds so
that drift on a shared machine hits both. "model" is the ONNX Runtime ``Run`` call alone. Both
sides must also return identical top-k ids (scores within 1e-5) for the 64 histories as a batch.

    lite export CKPT_ML1M --out /tmp/art-ml1m
    python benchmarks/bench_cpp.py --artifact /tmp/art-ml1m --data-dir ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit, machine  # noqa: E402

EXE = REPO / "examples" / "cpp" / "build" / "lite-recommend"
LENGTHS = (50, 200)


def build_cpp() -> Path:
    """examples/cpp/build.sh against this Python's onnxruntime wheel (incremental)."""
    env = {**os.environ, "PYTHON": sys.executable, "JOBS": os.environ.get("JOBS", "2")}
    subprocess.run(["bash", str(REPO / "examples" / "cpp" / "build.sh")], env=env, check=True)
    return EXE


def probes(data_dir: Path, seed: int = 0) -> dict[int, list[list[str]]]:
    """bench_engines.py's draw: per length, 64 test histories of at least that length, cut to it."""
    from lite_export.data import leave_one_out, load_dataset

    ds = load_dataset("ml-1m", data_dir)
    hists = [[ds.item_ids[i] for i in h] for h, _ in leave_one_out(ds).test]
    rng = np.random.default_rng(seed)
    out = {}
    for length in LENGTHS:
        pool = [h[-length:] for h in hists if len(h) >= length]
        out[length] = [pool[i] for i in rng.choice(len(pool), size=64, replace=False)]
    return out


def python_round(rec, hists, k: int, calls: int, warmup: int) -> tuple[list[float], list[float]]:
    """(end-to-end ms, ONNX Runtime Run ms) per call at batch 1, cycling through hists."""
    model_ms: list[float] = []
    run = rec._recommend_impl

    def timed_impl(*args):
        t = time.perf_counter()
        out = run(*args)
        model_ms.append((time.perf_counter() - t) * 1000.0)
        return out

    rec._recommend_impl = timed_impl  # instrument the Run call only
    try:
        for i in range(warmup):
            rec.recommend([hists[i % len(hists)]], k=k)
        model_ms.clear()
        total = []
        for i in range(calls):
            one = [hists[i % len(hists)]]
            t = time.perf_counter()
            rec.recommend(one, k=k)
            total.append((time.perf_counter() - t) * 1000.0)
    finally:
        rec._recommend_impl = run
    return total, model_ms


def cpp_round(
    exe: Path, art: Path, hfile: Path, k: int, threads: int, calls: int, warmup: int
) -> tuple[list[float], list[float], str]:
    cmd = [exe, art, "--histories", hfile, "-k", k, "--threads", threads, "--json"]
    cmd += ["--bench", calls, "--warmup", warmup]
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    return res["total_ms"], res["model_ms"], res["engine"]


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.median(a)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


def measure(exe: Path, art: Path, hists, length: int, threads: int, args, tmp: Path) -> list:
    """Two rows (C++, Python) at one history length and thread count."""
    import onnxruntime as ort

    import lite_export

    rec = lite_export.load(art, engine="onnxruntime", threads=threads)
    hfile = tmp / f"h{length}.jsonl"
    hfile.write_text("".join(json.dumps(h) + "\n" for h in hists))

    # the same answers first (the 64 histories as one batch)
    ref = rec.recommend(hists, k=args.k)
    cmd = [exe, art, "--histories", hfile, "-k", args.k, "--threads", threads, "--json"]
    out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=True)
    cpp = json.loads(out.stdout)["results"]
    identical = [r["ids"] for r in cpp] == ref.ids
    max_diff = float(np.abs(np.array([r["scores"] for r in cpp]) - ref.scores).max())

    load_before = os.getloadavg()[0]
    py_total, py_model, cpp_total, cpp_model = [], [], [], []
    cpp_engine = ""
    for _ in range(args.rounds):
        t, m, cpp_engine = cpp_round(exe, art, hfile, args.k, threads, args.calls, args.warmup)
        cpp_total += t
        cpp_model += m
        t, m = python_round(rec, hists, args.k, args.calls, args.warmup)
        py_total += t
        py_model += m
    dims = rec.manifest["dims"]
    common = {
        "history": length,
        "batch": 1,
        "k": args.k,
        "threads": threads,
        "calls": args.calls * args.rounds,
        "histories": len(hists),
        "topk_identical": identical,
        "max_abs_score_diff": max_diff,
        "graph": rec.graph,
        "onnxruntime": ort.__version__,
        "artifact": {"num_items": dims["num_items"], "max_history": dims["max_history"]},
        "source_checkpoint": Path(rec.manifest.get("source_checkpoint", "?")).name,
        # other processes on the machine (1-minute load average around the timing)
        "load_avg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": machine(),
        "commit": commit(),
    }
    rows = []
    for runtime, total, model, engine in (
        ("c++ lite-recommend", cpp_total, cpp_model, cpp_engine),
        ("python lite_export.load", py_total, py_model, f"onnxruntime {ort.__version__}"),
    ):
        model_stats = {f"model_{k}": v for k, v in stats(model).items()}
        rows.append({"runtime": runtime, **stats(total), **model_stats, "engine": engine, **common})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--artifact", required=True, help="an artifact exported from an ML-1M model")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "ml-1m"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--calls", type=int, default=1000, help="timed calls per side per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-build", action="store_true", help="use the built lite-recommend as is")
    args = p.parse_args()

    exe = EXE if args.no_build else build_cpp()
    art = Path(args.artifact)
    tmp = Path(tempfile.mkdtemp(prefix="bench_cpp_"))
    rows = []
    for length, hists in probes(Path(args.data_dir)).items():
        for threads in args.threads:
            rows += measure(exe, art, hists, length, threads, args, tmp)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cpp.json").write_text(json.dumps(rows, indent=1) + "\n")
    r0 = rows[0]
    loads = ", ".join(
        f"history {r['history']}/{r['threads']} threads {r['load_avg']}" for r in rows[::2]
    )
    lines = [
        f"# C++ vs Python ONNX Runtime at batch 1 (ML-1M, checkpoint {r0['source_checkpoint']}; "
        f"{r0['machine']}, commit {r0['commit']})",
        "",
        f"`python benchmarks/bench_cpp.py --artifact ART` — both sides run `{r0['graph']}` with "
        f"ONNX Runtime {r0['onnxruntime']} (the wheel's libonnxruntime; C++ through "
        f"`examples/cpp`) and the same intra-op thread count, k={args.k}, one history per call "
        f"cycling through 64 ML-1M test histories, {args.rounds} alternating rounds of "
        f"{args.calls} calls per side ({args.calls * args.rounds} calls each, {args.warmup} "
        "warm-up per round). `recommend()`: end to end (id mapping, padding, Run, ids and titles "
        "back); `model`: the ONNX Runtime Run call alone. `same top-K`: identical ids, scores "
        "within 1e-5, on the 64 histories as one batch. The machine is shared: p99 includes "
        f"other processes' load (1-minute load average before/after: {loads}).",
        "",
        "| history | threads | runtime | recommend() p50 ms | p99 ms | model p50 ms "
        "| model p99 ms | recommend() − model p50 ms | Python / C++ p50 | same top-K "
        "| max score diff |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        cpp_row = next(
            x
            for x in rows
            if (x["history"], x["threads"]) == (r["history"], r["threads"])
            and x["runtime"].startswith("c++")
        )
        lines.append(
            f"| {r['history']} | {r['threads']} | {r['runtime']} | {r['p50_ms']:.3f} | "
            f"{r['p99_ms']:.3f} | {r['model_p50_ms']:.3f} | {r['model_p99_ms']:.3f} | "
            f"{r['p50_ms'] - r['model_p50_ms']:.3f} | {r['p50_ms'] / cpp_row['p50_ms']:.2f} | "
            f"{r['topk_identical'] and r['max_abs_score_diff'] <= 1e-5} | "
            f"{r['max_abs_score_diff']:.1e} |"
        )
    (out_dir / "cpp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"rows": len(rows), "out": str(out_dir / "cpp.json")}))


if __name__ == "__main__":
    main()
