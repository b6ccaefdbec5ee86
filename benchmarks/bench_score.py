"""`lite score` in one process against Ray Data (``--cluster ray``), plain and with shards.

A tiny model is trained on the built-in synthetic catalog (1,000 items) and exported (or pass
``--art`` to use an artifact), and ``--users`` histories (default 5,000, the synthetic users'
sequences repeated) are scored with ``-k 10``. Two ways, each path ``--repeats`` times
(medians):

* ``cli``: the command as a user runs it, a fresh process each time (Python start-up, engine
  load, and for the Ray path starting a local cluster and its actors, all included);
* ``in-process``: :func:`lite_export.cluster.score.score_file` in this process, with the Ray
  cluster already up (the Ray path still starts its actor pools each run).

Rows go to ``OUT/score.json`` (one object per measurement) and ``OUT/score.md``.

    python benchmarks/bench_score.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402

#: (path name, score_file options)
PATHS = [
    ("local", {}),
    ("local --shards 2", {"shards": 2}),
    ("--cluster ray", {"cluster": "ray"}),
    ("--cluster ray --shards 2", {"cluster": "ray", "shards": 2}),
]
#: `lite score` as a command without depending on its registration in lite_export.cli
RUNNER = "import typer; from lite_export.cli_score import score; typer.run(score)"


def make_artifact(workdir: Path) -> Path:
    from accelerate import Accelerator

    from lite_export.data import leave_one_out, load_dataset
    from lite_export.exporters.onnx import ExportOptions, export_artifact
    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.workflow import DataSpec, train_checkpoint

    ds = load_dataset("synthetic")
    train_checkpoint(
        DataSpec("synthetic"),
        LiteConfig.from_name("tiny", max_history=ds.max_history),
        TrainConfig.from_name("tiny", epochs=1, seed=0),
        workdir / "ckpt",
        accelerator=Accelerator(cpu=True),
        progress=False,
        log=None,
        data=(ds, leave_one_out(ds)),
    )
    return export_artifact(workdir / "ckpt", workdir / "art", ExportOptions(k=20), log=None)


def write_users(art: Path, path: Path, n: int) -> None:
    from lite_export.catalog import ItemCatalog
    from lite_export.data import load_dataset

    ids = ItemCatalog.read_jsonl(art / "items.jsonl").ids
    sequences = load_dataset("synthetic").sequences
    with open(path, "w") as f:
        for u in range(n):
            seq = sequences[u % len(sequences)]
            f.write(json.dumps({"user": f"u{u}", "history": [ids[i] for i in seq]}) + "\n")


def cli_args(art: Path, users: Path, out: Path, options: dict) -> list[str]:
    args = [str(art), "--histories", str(users), "--out", str(out), "-k", "10", "--force"]
    for name, value in options.items():
        args += [f"--{name}", str(value)]
    return [*args, "--no-progress"]


def time_cli(art, users, out, options) -> float:
    cmd = [sys.executable, "-c", RUNNER, *cli_args(art, users, out, options)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def time_in_process(art, users, out, options) -> float:
    from lite_export.cluster.score import score_file

    start = time.perf_counter()
    score_file(art, users, out, k=10, force=True, progress=False, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--art", type=Path, help="artifact to use (default: train a tiny one)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    art = args.art or make_artifact(work)
    users = work / "users.jsonl"
    write_users(art, users, args.users)
    recs = work / "recs.parquet"
    where, rev = machine(), commit()
    rows = []
    for mode, timer in (("cli", time_cli), ("in-process", time_in_process)):
        if mode == "in-process":
            from lite_export.cluster.runtime import init_ray

            init_ray()
        for name, options in PATHS:
            seconds = [timer(art, users, recs, options) for _ in range(args.repeats)]
            p50 = statistics.median(seconds)
            row = {
                "path": name,
                "mode": mode,
                "users": args.users,
                "k": 10,
                "batch_size": 256,
                "seconds_p50": round(p50, 3),
                "users_per_s": round(args.users / p50, 1),
                "seconds": [round(s, 3) for s in seconds],
                "machine": where,
                "commit": rev,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "score.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# `lite score`: one process against Ray Data",
        "",
        f"{args.users:,} users (synthetic catalog, 1,000 items, histories of the synthetic "
        f"users), `-k 10`, `--batch-size 256`; median of {args.repeats} runs. "
        f"Machine: {where}; commit {rev}. `python benchmarks/bench_score.py`.",
        "",
        "`cli`: a fresh `lite score` process per run (start-up, engine load and, for Ray, a "
        "local cluster and its actors included). `in-process`: `score_file()` with the Ray "
        "cluster already up (the actor pools still start each run).",
        "",
        "| path | mode | seconds (p50) | users/s |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| `{r['path']}` | {r['mode']} | {r['seconds_p50']:.2f} | {r['users_per_s']:,.0f} |"
        for r in rows
    ]
    (args.out / "score.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'score.json'} and {args.out / 'score.md'}")


if __name__ == "__main__":
    main()
