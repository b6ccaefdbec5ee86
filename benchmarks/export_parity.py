"""Export a checkpoint and compare every engine's top-K with PyTorch on real histories.

    python benchmarks/export_parity.py CKPT --data ml-1m --data-dir ../shared/data/ml-1m

Writes benchmarks/results/export_parity.{json,md}: per engine, the fraction of users whose
top-K ids are identical to `LiteLLM4Rec.from_pretrained(CKPT).recommend`, and the largest score
difference, over the test histories of the data set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit, machine  # noqa: E402


def recommend_all(rec, hists: list[list[str]], k: int, batch: int = 256):
    """Top-k ids and scores [U, k] of every history, in batches."""
    ids, scores = [], []
    for start in range(0, len(hists), batch):
        top = rec.recommend(hists[start : start + batch], k=k)
        ids += top.ids
        scores.append(top.scores)
    return ids, np.concatenate(scores)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint")
    p.add_argument("--data", default="ml-1m")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "ml-1m"))
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--users", type=int, default=0, help="0 = every test user")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args()

    import lite_export
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    ds = load_dataset(args.data, args.data_dir)
    hists = [[ds.item_ids[i] for i in h] for h, _ in leave_one_out(ds).test]
    if args.users:
        hists = hists[: args.users]
    t = time.perf_counter()
    art = export_artifact(
        args.checkpoint, Path(tempfile.mkdtemp()) / "art", ExportOptions(k=args.k), log=None
    )
    export_s = time.perf_counter() - t
    manifest = json.loads((art / "manifest.json").read_text())
    model = lite_export.LiteLLM4Rec.from_pretrained(args.checkpoint)
    rows = []
    ref_ids, ref_scores = recommend_all(model, hists, args.k)
    for engine in ("onnxruntime", "torch"):
        ids, scores = recommend_all(lite_export.load(art, engine=engine), hists, args.k)
        rows.append(
            {
                "dataset": args.data,
                "engine": engine,
                "users": len(hists),
                "k": args.k,
                "identical_topk_users": float(
                    np.mean([a == b for a, b in zip(ids, ref_ids, strict=True)])
                ),
                "identical_top10_users": float(
                    np.mean([a[:10] == b[:10] for a, b in zip(ids, ref_ids, strict=True)])
                ),
                "max_abs_score_diff": float(np.abs(scores - ref_scores).max()),
                "export_seconds": round(export_s, 1),
                "manifest_parity": manifest["parity"],
                "checkpoint": str(args.checkpoint),
                "machine": machine(),
                "commit": commit(),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "manifest_parity"}), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_parity.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"# Export parity on {args.data} ({machine()}, commit {commit()})",
        "",
        f"`python benchmarks/export_parity.py CKPT --data {args.data}`: the checkpoint exported (fp32, "
        f"K={args.k}), then every test user's top-{args.k} from each engine compared with "
        "`LiteLLM4Rec.from_pretrained(CKPT).recommend` (history excluded).",
        "",
        "| engine | users | identical top-K | identical top-10 | max abs score diff |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['users']} | {r['identical_topk_users']:.4f} | "
            f"{r['identical_top10_users']:.4f} | {r['max_abs_score_diff']:.2e} |"
        )
    lines += [
        "",
        "Scores are compared position by position, so a max abs score diff below the fp32 "
        "tolerance (1e-4) means any top-K that is not identical differs only by swapping items "
        "whose scores are equal within that tolerance (ties).",
    ]
    (out / "export_parity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
