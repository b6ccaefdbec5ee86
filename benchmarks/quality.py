"""Quality on real data: Lite-LLM4Rec beside SASRec and most-popular, same split, same harness.

Leave-one-out, full ranking over all items, history masked, pessimistic ties.

Train (writes every run, with its validation and test metrics, to OUT/quality_runs.json):

    python benchmarks/quality.py --data-root ../shared/data --datasets ml-1m amazon-beauty --out OUT

Cold start (``--cold-items 0.1``): a seeded 10% of the items is held out of training and
validation entirely; every run then gives two rows, ``"split": "cold"`` (test users whose target
is a held-out item) and ``"split": "warm"`` (the others). ``--heads id text text+id`` trains one
Lite-LLM4Rec per head; ``--models text-cosine`` adds the text-only peer (cosine between each
item's item-LLM vector and the mean of the history's):

    python benchmarks/quality.py --datasets amazon-beauty --cold-items 0.1 \
        --models most-popular text-cosine SASRec Lite-LLM4Rec --heads id text text+id --out OUT

Several runs (e.g. a small hyper-parameter grid run in parallel) are then merged: for each
(dataset, model, split) the run with the best *validation* NDCG@10 is selected, the same rule for
every model, and written to benchmarks/results/quality.json (one object per row) and quality.md:

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
    train_checkpoint,
)

# dataset key -> (loader name, folder under --data-root)
DATASETS = {
    "ml-1m": ("ml-1m", "ml-1m"),
    "amazon-beauty": ("amazon", "amazon-beauty"),
}
METRIC_KEYS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)]


#: the code a run was launched with (set when the runs start: a long run outlives commits)
LAUNCH_COMMIT: str | None = None


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
        "commit": LAUNCH_COMMIT or commit(),
        "command": command,
    }


def run(args) -> list[dict]:
    import torch

    from lite_export.model.train import reuse_freed_memory

    reuse_freed_memory()  # as `lite train` does: CPU steps ~35% faster

    if torch.cuda.is_available():  # TF32 matmuls: the models train in fp32 weights either way
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from lite_export.model.metrics import (
        MostPopular,
        TextCosine,
        evaluate_ranking,
        metrics_from_ranks,
    )

    global LAUNCH_COMMIT
    LAUNCH_COMMIT = commit()
    rows = []
    cmd = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    cold_protocol = {"cold_items": args.cold_items, "cold_seed": args.cold_seed}

    def emit(key, name, split, metrics, ranks, seconds, epochs, config, valid, extra):
        """One row, or under the cold-start protocol one row per target kind."""
        if not split.cold_items:
            rows.append(row(key, name, metrics, seconds, epochs, config, cmd, valid) | extra)
            return
        for which, (m, users) in by_target(split, ranks).items():
            rows.append(
                row(key, name, m, seconds, epochs, config, cmd, valid)
                | extra
                | {"split": which, "users": users, **cold_protocol}
            )

    for key in args.datasets:
        loader, folder = DATASETS[key]
        spec = DataSpec(
            loader, str(Path(args.data_root) / folder), args.cold_items or 0.0, args.cold_seed
        )
        ds, split = load_split(spec)
        n = ds.num_items
        print(f"== {key}: {ds.summary()}", flush=True)
        peers = []
        if "most-popular" in args.models:
            peers.append(("most-popular", MostPopular(split.popularity), 1))
        if "text-cosine" in args.models:
            from lite_export.model.item_llm import precompute_item_vectors

            small = LiteConfig.from_name("small")
            vectors = precompute_item_vectors(
                small.item_llm, list(ds.item_texts), small.item_llm_max_tokens
            )
            peers.append(("text-cosine", TextCosine(vectors), ds.max_history))
        for name, score_fn, hist in peers:  # untrained peers: test and validation metrics
            _, ranks = save_ranks(score_fn, split, args.out, f"{key}-{name}", n, hist)
            valid = evaluate_ranking(score_fn, split.valid, n, hist)
            emit(key, name, split, metrics_from_ranks(ranks), ranks, 0.0, 0, {}, valid, {})
        trained = [("SASRec", "sasrec", "id")] if "SASRec" in args.models else []
        if "Lite-LLM4Rec" in args.models:
            trained += [("Lite-LLM4Rec", "small", h) for h in args.heads]
        for name, preset, head in trained:
            model_cfg = LiteConfig.from_name(
                preset,
                max_history=ds.max_history,
                d_model=args.d_model,
                dropout=args.dropout,
                resid_dropout=args.resid_dropout,
                item_fusion=args.item_fusion if name == "Lite-LLM4Rec" else None,
                n_layers=args.n_layers,
                rec_arch=args.rec_arch,
                head=head,
                head_residual_dropout=args.head_residual_dropout if head == "text+id" else None,
                head_match=args.head_match if name == "Lite-LLM4Rec" and head != "id" else None,
                head_cold_scale=args.head_cold_scale if head == "text+id" else None,
            )
            train_cfg = TrainConfig.from_name(
                preset,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                label_smoothing=args.label_smoothing,
                patience=args.patience,
                max_train_seconds=args.max_train_seconds,
                seed=args.seed,
                cold_calibration=args.cold_calibration if model_cfg.head_cold_scale else None,
            )
            label = model_label(name, model_cfg, train_cfg)
            tag = label.replace(" (head ", "-head-").rstrip(")")
            out = Path(args.ckpt_root) / f"{key}-{tag}" if args.ckpt_root else None
            t0 = time.perf_counter()
            model, result, test = train_checkpoint(
                spec, model_cfg, train_cfg, out, progress=False, data=(ds, split), force=True
            )
            print(f"   {label}: test {test} in {time.perf_counter() - t0:.0f}s", flush=True)
            model.eval()
            ranks_file, ranks = save_ranks(
                model.frozen_scorer(),
                split,
                args.out,
                f"{key}-{tag}-seed{args.seed}",
                n,
                ds.max_history,
            )
            config = {
                "model": model_cfg.to_dict(),
                "train": train_cfg.to_dict(),
                "best_epoch": result.best_epoch,
            }
            extra = {"seed": args.seed, "ranks_file": ranks_file}
            emit(
                key,
                label,
                split,
                test,
                ranks,
                result.train_seconds,
                result.epochs_run,
                config,
                result.best_valid,
                extra,
            )
    return rows


def save_ranks(score_fn, split, out: str, name: str, num_items: int, max_history: int):
    """Every test user's target rank (0-based, pessimistic), for paired comparisons of runs;
    written to OUT/ranks/NAME.json. Returns (the path relative to OUT, the ranks)."""
    from lite_export.model.metrics import target_ranks

    ranks = target_ranks(score_fn, split.test, num_items, max_history).tolist()
    rel = f"ranks/{name}.json"
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ranks))
    return rel, ranks


def by_target(split, ranks: list[int]) -> dict[str, tuple[dict, int]]:
    """Cold-start protocol: the test metrics of the users whose target is a held-out item
    ("cold") and of the others ("warm"), from the per-user ranks, with the user counts."""
    from lite_export.model.metrics import metrics_from_ranks

    cold = set(split.cold_items)
    out = {}
    for which in ("cold", "warm"):
        sel = [
            r
            for r, (_, t) in zip(ranks, split.test, strict=True)
            if (t in cold) == (which == "cold")
        ]
        out[which] = (metrics_from_ranks(sel), len(sel))
    return out


def model_label(name: str, model_cfg, train_cfg=None) -> str:
    """Lite-LLM4Rec rows name their head when it is not the learned id head."""
    head = getattr(model_cfg, "head", "id")
    head += "+match" if getattr(model_cfg, "head_match", False) else ""
    head += "+cold-scale" if getattr(model_cfg, "head_cold_scale", False) else ""
    if getattr(train_cfg, "cold_calibration", 0.0):
        head += f"+cold-calibration-{train_cfg.cold_calibration:g}"
    return name if name != "Lite-LLM4Rec" or head == "id" else f"{name} (head {head})"


def config_key(r: dict) -> str:
    """A run's settings without its seed: runs that differ only by seed share it (settings a
    run recorded before they existed count at their defaults)."""
    cfg = json.loads(json.dumps(r.get("config", {})))
    cfg.pop("best_epoch", None)
    defaults = {"model": LiteConfig().to_dict(), "train": TrainConfig().to_dict()}
    for part, values in defaults.items():
        if part in cfg:
            cfg[part] = {**values, **cfg[part]}
    cfg.get("train", {}).pop("seed", None)
    return json.dumps(cfg, sort_keys=True)


def run_seed(r: dict):
    return r.get("seed", r.get("config", {}).get("train", {}).get("seed"))


def seed_spread(runs: list[dict], chosen: dict) -> dict:
    """Mean and standard deviation of the test metrics over the seeds of the chosen config."""
    import statistics

    same = [
        r
        for r in runs
        if (r["dataset"], r["model"]) == (chosen["dataset"], chosen["model"])
        and config_key(r) == config_key(chosen)
    ]
    out = {"seeds": len(same)}
    for k in ("ndcg@10", "recall@10"):
        vals = [r[k] for r in same]
        out[k] = {
            "mean": round(statistics.fmean(vals), 5),
            "std": round(statistics.stdev(vals), 5) if len(vals) > 1 else None,
        }
    return out


def paired_bootstrap(a: list[int], b: list[int], k: int = 10, draws: int = 10_000, seed: int = 0):
    """95% interval of mean(metric_a - metric_b) over test users resampled with replacement
    (the same users for both models), for NDCG@k and Recall@k."""
    import numpy as np

    ra, rb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if ra.shape != rb.shape:
        raise ValueError(
            f"rank lists differ in length ({ra.size} vs {rb.size}): not the same users"
        )

    def per_user(r):
        hit = r < k
        return {"ndcg": np.where(hit, 1.0 / np.log2(r + 2.0), 0.0), "recall": hit.astype(float)}

    ua, ub = per_user(ra), per_user(rb)
    rng = np.random.default_rng(seed)
    diffs = {m: ua[m] - ub[m] for m in ua}
    boots: dict = {m: [] for m in ua}
    for start in range(0, draws, 500):  # 500 resamples at a time: bounded memory
        idx = rng.integers(0, ra.size, size=(min(500, draws - start), ra.size))
        for m, d in diffs.items():
            boots[m].append(d[idx].mean(1))
    out = {}
    for m, d in diffs.items():
        lo, hi = np.percentile(np.concatenate(boots[m]), [2.5, 97.5])
        out[f"{m}@{k}"] = {
            "diff": round(float(d.mean()), 5),
            "ci95": [round(float(lo), 5), round(float(hi), 5)],
        }
    return out


def select(runs: list[dict]) -> list[dict]:
    """Per (dataset, model), the run with the best validation NDCG@10 (test never looked at)."""
    best: dict[tuple, dict] = {}
    for r in runs:
        key = (r["dataset"], r["model"], r.get("split", "all"))
        if key not in best or r["valid_ndcg@10"] > best[key]["valid_ndcg@10"]:
            best[key] = r
    order = {"most-popular": 0, "text-cosine": 1, "SASRec": 2, "Lite-LLM4Rec": 3}
    splits = {"all": 0, "cold": 1, "warm": 2}
    return sorted(
        (dict(r) for r in best.values()),  # copies: annotate() must not write into the runs
        key=lambda r: (
            splits.get(r.get("split", "all"), 9),
            r["dataset"],
            order.get(r["model"].split(" (")[0], 9),
            r["model"],
        ),
    )


#: what annotate() adds to a selected row (older merges also wrote them into quality_runs.json)
ANNOTATIONS = ("seed_spread", "vs_sasrec")


def annotate(chosen: list[dict], runs: list[dict], dirs: list[Path]) -> list[dict]:
    """Each selected row gets the seed spread of its config; each selected Lite-LLM4Rec row a
    paired bootstrap against the selected SASRec row of its data set (same seed), where both
    runs kept their per-user test ranks."""

    def ranks(r):
        for d in dirs:
            if r.get("ranks_file") and (d / r["ranks_file"]).exists():
                return json.loads((d / r["ranks_file"]).read_text())
        return None

    standard = [r for r in chosen if r.get("split", "all") == "all"]
    runs = [r for r in runs if r.get("split", "all") == "all"]
    for r in standard:
        if r["model"] not in ("most-popular", "text-cosine"):
            r["seed_spread"] = seed_spread(runs, r)
    for lite in (r for r in standard if r["model"] == "Lite-LLM4Rec"):
        peer = next(
            (r for r in standard if r["model"] == "SASRec" and r["dataset"] == lite["dataset"]),
            None,
        )
        if peer is None:
            continue
        pairs = []  # (Lite run, SASRec run) of the chosen configs, seed by seed
        for a in runs:
            if a["model"] == "Lite-LLM4Rec" and config_key(a) == config_key(lite):
                for b in runs:
                    if (
                        b["model"] == "SASRec"
                        and b["dataset"] == lite["dataset"]
                        and config_key(b) == config_key(peer)
                        and run_seed(b) == run_seed(a)
                    ):
                        pairs.append((a, b))
        for a, b in pairs:
            ra, rb = ranks(a), ranks(b)
            if ra is not None and rb is not None:
                lite.setdefault("vs_sasrec", []).append(
                    {"seed": run_seed(a), **paired_bootstrap(ra, rb)}
                )
    return chosen


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
    cold_rows = [r for r in rows if r.get("split", "all") != "all"]
    for r in (r for r in rows if r.get("split", "all") == "all"):
        lines.append(
            f"| {r['dataset']} | {r['model']} | "
            + " | ".join(f"{r[k]:.4f}" for k in METRIC_KEYS)
            + f" | {r['train_seconds']:.0f} | {r['epochs']} | {r['machine']} |"
        )
    spread = [r for r in rows if r.get("seed_spread")]
    if spread:
        lines += [
            "",
            "Seed spread of each selected configuration (test split, mean ± std over seeds):",
            "",
            "| dataset | model | seeds | N@10 | R@10 |",
            "|---|---|---|---|---|",
        ]
        for r in spread:
            sp = r["seed_spread"]

            def cell(m, sp=sp):
                std = sp[m]["std"]
                return f"{sp[m]['mean']:.4f}" + (f" ± {std:.4f}" if std is not None else "")

            lines.append(
                f"| {r['dataset']} | {r['model']} | {sp['seeds']} | {cell('ndcg@10')} | "
                f"{cell('recall@10')} |"
            )
    paired = [(r, c) for r in rows for c in r.get("vs_sasrec", [])]
    if paired:
        lines += [
            "",
            "Lite-LLM4Rec minus SASRec, paired over the same test users (10,000 bootstrap "
            "resamples, 95% interval):",
            "",
            "| dataset | seed | ΔN@10 [95% CI] | ΔR@10 [95% CI] |",
            "|---|---|---|---|",
        ]
        for r, c in paired:
            n, rc = c["ndcg@10"], c["recall@10"]
            lines.append(
                f"| {r['dataset']} | {c['seed']} | {n['diff']:+.4f} [{n['ci95'][0]:+.4f}, "
                f"{n['ci95'][1]:+.4f}] | {rc['diff']:+.4f} [{rc['ci95'][0]:+.4f}, "
                f"{rc['ci95'][1]:+.4f}] |"
            )
    if cold_rows:
        r0 = cold_rows[0]
        lines += [
            "",
            f"Cold start: {r0['cold_items']:.0%} of the items (seed {r0['cold_seed']}) held out "
            "of training and validation; test users split by whether their target is a held-out "
            "item (cold) or not (warm). Same protocol otherwise.",
            "",
            "| split | dataset | model | users | R@10 | R@20 | N@10 | N@20 | valid N@10 | machine |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cold_rows:
            lines.append(
                f"| {r['split']} | {r['dataset']} | {r['model']} | {r['users']:,} | "
                + " | ".join(f"{r[k]:.4f}" for k in ("recall@10", "recall@20"))
                + " | "
                + " | ".join(f"{r[k]:.4f}" for k in ("ndcg@10", "ndcg@20"))
                + f" | {r['valid_ndcg@10']:.4f} | {r['machine']} |"
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
    p.add_argument("--resid-dropout", type=float, default=None)
    p.add_argument("--item-fusion", default=None, choices=["sum", "gate"])
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--rec-arch", default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--max-train-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cold-items",
        type=float,
        default=None,
        help="cold-start protocol: hold this fraction of the items out of training (e.g. 0.1)",
    )
    p.add_argument("--cold-seed", type=int, default=0)
    p.add_argument(
        "--heads",
        nargs="+",
        default=["id"],
        choices=["id", "text", "text+id"],
        help="Lite-LLM4Rec heads to train (one run each)",
    )
    p.add_argument("--head-residual-dropout", type=float, default=None)
    p.add_argument(
        "--head-match",
        action="store_true",
        help="text heads: add the text-match term (LiteConfig.head_match)",
    )
    p.add_argument(
        "--head-cold-scale",
        action="store_true",
        help="text+id with --head-match: text-only rows' own match scale (head_cold_scale)",
    )
    p.add_argument(
        "--cold-calibration",
        type=float,
        default=None,
        help="with --head-cold-scale: the fraction of training items that calibrates it",
    )
    p.add_argument("--merge", nargs="+", default=None, help="run folders to merge and select from")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        runs = []
        for d in args.merge:
            f = Path(d) / "quality_runs.json"
            if not f.exists():
                continue
            for r in json.loads(f.read_text()):
                r = {k: v for k, v in r.items() if k not in ANNOTATIONS}
                if r not in runs:  # a run merged before (e.g. one already in OUT) is kept once
                    runs.append(r)
        chosen = annotate(select(runs), runs, [Path(d) for d in args.merge])
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
