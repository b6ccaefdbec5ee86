"""Cost of `lite catalog add` against retraining: seconds to add 1, 100 and 10,000 items.

    python benchmarks/bench_catalog_edit.py ART --checkpoint CKPT --out benchmarks/results

ART is a text-head artifact (``lite train --head text+id`` then ``lite export``), CKPT the
checkpoint it was exported from (its item LLM encodes the new text). Each count is added
``--repeats`` times to ART (a fresh edit each time, written to a temporary directory) and timed
end to end in process: read and verify the artifact, encode the new texts, rebuild the model,
export and validate the graphs, check the untouched items, publish. The phases come from the
new manifest's ``catalog_change.seconds``.

New items are copies of existing items' texts with a distinct suffix (same lengths, so the
encoding cost is the catalog's own). Retraining is the measured training time of CKPT per epoch
on this machine times the epochs the selected run of ``quality_runs.json`` for the data set
trained (``--retrain-epochs`` overrides): an estimate, labelled as one.

Writes OUT/catalog.json and OUT/catalog.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lite_export.benchmarking import commit, machine  # noqa: E402


def new_items(art: Path, count: int, tag: str):
    from lite_export.catalog import ItemCatalog
    from lite_export.catalog_edit import NewItem

    cat = ItemCatalog.read_jsonl(art / "items.jsonl")
    n = len(cat)
    return [
        NewItem(f"new-{tag}-{i}", f"{cat.texts[i % n]} (edition {i + 2})", f"new {i}")
        for i in range(count)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def retrain_estimate(ckpt: Path, dataset: str, epochs: int | None) -> dict:
    meta = json.loads((ckpt / "config.json").read_text())
    res = meta.get("train_result", {})
    per_epoch = res["train_seconds"] / max(1, res["epochs_run"])
    source = "--retrain-epochs"
    if epochs is None:
        runs = ROOT / "benchmarks" / "results" / "quality.json"
        rows = json.loads(runs.read_text()) if runs.exists() else []
        row = next(
            (
                r
                for r in rows
                if r["dataset"] == dataset
                and r["model"] == "Lite-LLM4Rec"
                and r.get("split", "all") == "all"
            ),
            None,
        )
        if row is None:
            raise SystemExit(f"no selected {dataset} Lite-LLM4Rec run: pass --retrain-epochs")
        epochs = int(row["epochs"])
        source = f"selected {dataset} Lite-LLM4Rec run in quality.json ({row['machine']})"
    return {
        "seconds_per_epoch_here": round(per_epoch, 1),
        "epochs": epochs,
        "epochs_from": source,
        "seconds": round(per_epoch * epochs, 1),
        "checkpoint_epochs_measured": res["epochs_run"],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("artifact", type=Path)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--counts", type=int, nargs="+", default=[1, 100, 10_000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dataset", default="ml-1m", help="the quality.json data set for retraining")
    p.add_argument("--retrain-epochs", type=int, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--note", default="", help="a line on the conditions, kept with the results")
    args = p.parse_args()

    from lite_export.artifact import read_manifest
    from lite_export.catalog_edit import edit_catalog

    manifest = read_manifest(args.artifact)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        for count in args.counts:
            runs = []
            for r in range(args.repeats):
                items = new_items(args.artifact, count, f"{count}-{r}")
                out = Path(tmp) / f"add-{count}-{r}"
                t = time.perf_counter()
                edit_catalog(
                    args.artifact, out, "add", items=items, checkpoint=args.checkpoint, log=None
                )
                wall = time.perf_counter() - t
                change = read_manifest(out)["catalog_change"]
                runs.append({"wall": wall, **change["seconds"]})
                print(f"add {count:>6}: {wall:7.1f} s  {change['seconds']}", flush=True)
            walls = [x["wall"] for x in runs]
            rows.append(
                {
                    "items_added": count,
                    "repeats": len(runs),
                    "median_s": round(statistics.median(walls), 2),
                    "p99_s": round(pct(walls, 0.99), 2),
                    "encode_median_s": round(statistics.median(x["encode"] for x in runs), 2),
                    "export_median_s": round(statistics.median(x["export"] for x in runs), 2),
                    "runs": runs,
                }
            )
    retrain = retrain_estimate(args.checkpoint, args.dataset, args.retrain_epochs)
    result = {
        "benchmark": "lite catalog add vs retraining",
        "artifact": {
            "num_items": manifest["dims"]["num_items"],
            "d_model": manifest["dims"]["d_model"],
            "max_history": manifest["dims"]["max_history"],
            "precision": manifest["export_options"]["precision"],
            "head": manifest["model"]["head"],
            "item_llm": manifest["model"]["item_llm"],
        },
        "rows": rows,
        "retrain_estimate": retrain,
        "machine": machine(),
        "commit": commit(),
        "command": "python benchmarks/bench_catalog_edit.py " + " ".join(sys.argv[1:]),
        "note": args.note,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalog.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "catalog.md").write_text(render(result))
    print(render(result))


def render(res: dict) -> str:
    a, rt = res["artifact"], res["retrain_estimate"]
    lines = [
        "# Adding items to a deployed catalog: `lite catalog add` vs retraining",
        "",
        f"Artifact: {a['num_items']:,} items, d={a['d_model']}, history {a['max_history']}, "
        f"{a['precision']}, head {a['head']}, item LLM {a['item_llm']}. Machine: "
        f"{res['machine']}; commit {res['commit']}. Command: `{res['command']}`.",
        "",
        "End to end in process (verify, encode, rebuild, export + ONNX Runtime validation, "
        "untouched-items check, atomic publish):",
        "",
        "| items added | runs | median s | p99 s | encode s (median) | export s (median) | "
        "vs retraining |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['items_added']:,} | {r['repeats']} | {r['median_s']:.1f} | {r['p99_s']:.1f} | "
            f"{r['encode_median_s']:.1f} | {r['export_median_s']:.1f} | "
            f"{rt['seconds'] / r['median_s']:,.0f}× faster |"
        )
    lines += [
        "",
        f"Retraining from scratch (estimate): {rt['seconds_per_epoch_here']:.0f} s per epoch "
        f"measured here × {rt['epochs']} epochs ({rt['epochs_from']}) = "
        f"{rt['seconds']:,.0f} s, plus the export. p99 over {res['rows'][0]['repeats']} runs is "
        "their maximum.",
    ]
    if res.get("note"):
        lines += ["", res["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
