"""Quality on real data: Lite-LLM4Rec beside SASRec and most-popular, same split, same harness.

Leave-one-out, full ranking over all items, history masked, pessimistic ties.

Train (writes every run, with its validation and test metrics, to OUT/quality_runs.json):

    python benchmarks/quality.py --data-root ../shared/data --datasets ml-1m amazon-beauty --out OUT

Several runs (e.g. a small hyper-parameter grid run in parallel) are then merged: for each
(dataset, model) the run with the best *validation* NDCG@10 is selected, the same rule for every
model, and written to benchmarks/results/quality.json (one object per row) and quality.md:

    python benchmarks/quality.py --merge OUT1 OUT2 ... --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402
from lite_export.model.config import LiteConfig, TrainConfig  # noqa: E402
from lite_export.model.metrics import PROTOCOL  # noqa: E402
from lite_export.model.workflow import (  # noqa: E402
    DataSpec,
    load_split,
    most_popular_metrics,
    train_checkpoint,
)

# dataset key -> (loader name, folder under --data-root)
DATASETS = {
    "ml-1m": ("ml-1m", "ml-1m"),
    "amazon-beauty": ("amazon", "amazon-beauty"),
}
METRIC_KEYS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)]


def row(dataset, model, metrics, seconds, epochs, config, command, valid=None) -> dict:
    return {
        "dataset": dataset,
        "model": model,
        **{k: round(metrics[k], 5) for k in METRIC_KEYS},
        "valid_ndcg@10": round((valid or metrics)["ndcg@10"], 5),
        "train_seconds": round(seconds, 1),
        "epochs": epochs,
        "config": config,
        "protocol": PROTOCOL,
        "machine": machine(),
        "commit": commit(),
        "command": command,
    }


def run(args) -> list[dict]:
    import torch

    if torch.cuda.is_available():  # TF32 matmuls: the models train in fp32 weights either way
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    cmd = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    for key in args.datasets:
        loader, folder = DATASETS[key]
        spec = DataSpec(loader, str(Path(args.data_root) / folder))
        ds, split = load_split(spec)
        print(f"== {key}: {ds.summary()}", flush=True)
        if "most-popular" in args.models:
            rows.append(
                row(
                    key,
                    "most-popular",
                    most_popular_metrics(split),
                    0.0,
                    0,
                    {},
                    cmd,
                    valid=most_popular_metrics(split, "valid"),
                )
            )
        for name, preset in (("SASRec", "sasrec"), ("Lite-LLM4Rec", "small")):
            if name not in args.models:
                continue
            model_cfg = LiteConfig.from_name(
                preset,
                max_history=ds.max_history,
                d_model=args.d_model,
                dropout=args.dropout,
                n_layers=args.n_layers,
                rec_arch=args.rec_arch,
            )
            train_cfg = TrainConfig.from_name(
                preset,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                patience=args.patience,
                max_train_seconds=args.max_train_seconds,
                seed=args.seed,
            )
            out = Path(args.ckpt_root) / f"{key}-{preset}" if args.ckpt_root else None
            t0 = time.perf_counter()
            _, result, test = train_checkpoint(
                spec, model_cfg, train_cfg, out, progress=False, data=(ds, split), force=True
            )
            print(f"   {name}: test {test} in {time.perf_counter() - t0:.0f}s", flush=True)
            rows.append(
                row(
                    key,
                    name,
                    test,
                    result.train_seconds,
                    result.epochs_run,
                    {
                        "model": model_cfg.to_dict(),
                        "train": train_cfg.to_dict(),
                        "best_epoch": result.best_epoch,
                    },
                    cmd,
                    valid=result.best_valid,
                )
            )
    return rows


def select(runs: list[dict]) -> list[dict]:
    """Per (dataset, model), the run with the best validation NDCG@10 (test never looked at)."""
    best: dict[tuple, dict] = {}
    for r in runs:
        key = (r["dataset"], r["model"])
        if key not in best or r["valid_ndcg@10"] > best[key]["valid_ndcg@10"]:
            best[key] = r
    order = {"most-popular": 0, "SASRec": 1, "Lite-LLM4Rec": 2}
    return sorted(best.values(), key=lambda r: (r["dataset"], order.get(r["model"], 9)))


def render(rows: list[dict]) -> str:
    lines = [
        "# Quality on real data",
        "",
        f"Protocol: {PROTOCOL}. Machine and commit per row in `quality.json`.",
        "",
        "| dataset | model | R@5 | R@10 | R@20 | N@5 | N@10 | N@20 | train s | epochs | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = ROOT / "benchmarks" / "quality_notes.md"
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | "
            + " | ".join(f"{r[k]:.4f}" for k in METRIC_KEYS)
            + f" | {r['train_seconds']:.0f} | {r['epochs']} | {r['machine']} |"
        )
    text = "\n".join(lines) + "\n"
    if notes.exists():
        text += "\n" + notes.read_text()
    return text


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--models", nargs="+", default=["most-popular", "SASRec", "Lite-LLM4Rec"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--ckpt-root", default=None, help="keep the trained checkpoints here")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--d-model", type=int, default=None)
    p.add_argument("--n-layers", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--rec-arch", default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--max-train-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", nargs="+", default=None, help="run folders to merge and select from")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        runs = []
        for d in args.merge:
            f = Path(d) / "quality_runs.json"
            if f.exists():
                runs += json.loads(f.read_text())
        chosen = select(runs)
        (out / "quality_runs.json").write_text(json.dumps(runs, indent=2) + "\n")
        (out / "quality.json").write_text(json.dumps(chosen, indent=2) + "\n")
        (out / "quality.md").write_text(render(chosen))
        print(render(chosen))
        return
    rows = run(args)
    (out / "quality_runs.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(render(rows))


if __name__ == "__main__":
    main()
