"""What new items cost the others: the cold-scale grid of a ``--cold-calibration`` checkpoint.

For a checkpoint trained under the cold-start protocol with ``--head-cold-scale
--cold-calibration F``, every (cold scale, bias offset) point of the calibration grid is scored
on validation (users whose target is a calibration item, and the others) and on test (cold
targets: the protocol's held-out items; warm: the rest), and the point that
``calibrate_cold_scale`` picks on validation is marked for several allowed warm costs. The test
columns show the trade-off the rule moves along; they are never used to choose.

    python benchmarks/cold_tradeoff.py CKPT --data-root ../shared/data --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quality import DATASETS  # noqa: E402  (benchmarks/quality.py, beside this script)

from lite_export.benchmarking import commit, machine  # noqa: E402
from lite_export.model import cold_calibration as cc  # noqa: E402
from lite_export.model.lite_llm4rec import LiteLLM4Rec  # noqa: E402
from lite_export.model.workflow import DataSpec, load_split  # noqa: E402

COSTS = (0.0, 0.02, 0.05, 0.10)
FOLDERS = {name: folder for name, folder in DATASETS.values()}  # loader name -> data folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    ckpt = Path(args.checkpoint)
    meta = json.loads((ckpt / "config.json").read_text())
    record = (meta.get("train_result") or {}).get("cold_calibration")
    if not record:
        sys.exit(f"{ckpt} was not trained with --cold-calibration (no train_result record)")
    stored = meta["data"]
    folder = Path(stored.get("data_dir") or "")
    if not folder.is_dir():  # the checkpoint's data directory is elsewhere here
        folder = Path(args.data_root) / FOLDERS.get(stored["name"], stored["name"])
    _, split = load_split(DataSpec.from_stored(stored, data_dir=str(folder)))
    model = LiteLLM4Rec.from_pretrained(ckpt).eval()
    learned = record["learned"]
    with torch.no_grad():  # the grid is anchored at the learned values
        model.match_scale_cold.fill_(learned["scale"])
        model.cold_bias.fill_(learned["bias"])
    _, grid = cc.cold_grid(model)
    text_only, held = model.text_only, set(split.cold_items)
    sets = {
        "valid_text_only": [e for e in split.valid if text_only[e[1]]],
        "valid_others": [e for e in split.valid if not text_only[e[1]]],
        "test_cold": [e for e in split.test if e[1] in held],
        "test_warm": [e for e in split.test if e[1] not in held],
    }
    metrics = {k: cc.evaluate_grid(model, grid, ex, ks=(10, 20)) for k, ex in sets.items()}
    cold = [m["ndcg@10"] for m in metrics["valid_text_only"]]
    others = [m["ndcg@10"] for m in metrics["valid_others"]]
    picks = {cost: cc.choose(cold, others, cost) for cost in COSTS}
    rows = []
    for i, (scale, bias) in enumerate(grid):
        row = {"scale": round(scale, 4), "bias": bias, "learned": i == 0}
        row["picked_at_warm_cost"] = [c for c, j in picks.items() if j == i]
        for k, ms in metrics.items():
            row[k] = {m: round(v, 5) for m, v in ms[i].items() if m != "users"}
        rows.append(row)
    users = {k: len(v) for k, v in sets.items()}
    result = {
        "checkpoint": str(ckpt),
        "dataset": stored["name"],
        "cold_items": stored.get("cold_items"),
        "warm_scale": record["warm_scale"],
        "users": users,
        "machine": machine(),
        "commit": commit(),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold_tradeoff.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Cold-scale trade-off (`benchmarks/cold_tradeoff.py`)",
        "",
        f"Checkpoint `{ckpt.name}` ({stored['name']}, {stored.get('cold_items'):.0%} of the items "
        f"held out for test), warm match scale {record['warm_scale']:.2f}; {machine()}, commit "
        f"{commit()}. Validation: {users['valid_text_only']:,} users whose target is a "
        f"calibration item, {users['valid_others']:,} others; test: {users['test_cold']:,} cold "
        f"and {users['test_warm']:,} warm targets. `picked`: the allowed warm cost(s) at which "
        "`--cold-calibration` chooses the point (on validation only).",
        "",
        "| cold scale | bias | picked | valid N@10 text-only | valid N@10 others | "
        "test R@10 cold | test R@10 warm | test N@10 cold | test N@10 warm |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        picked = ", ".join(f"{c:.0%}" for c in r["picked_at_warm_cost"])
        name = f"{r['scale']:.2f}" + (" (learned)" if r["learned"] else "")
        lines.append(
            f"| {name} | {r['bias']:+.2f} | {picked} | {r['valid_text_only']['ndcg@10']:.4f} | "
            f"{r['valid_others']['ndcg@10']:.4f} | {r['test_cold']['recall@10']:.4f} | "
            f"{r['test_warm']['recall@10']:.4f} | {r['test_cold']['ndcg@10']:.4f} | "
            f"{r['test_warm']['ndcg@10']:.4f} |"
        )
    (out / "cold_tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
