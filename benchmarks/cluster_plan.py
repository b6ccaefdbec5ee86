"""What a sharded catalog needs past one machine: a model whose inputs are measurements.

Inputs (read from ``benchmarks/results``):

* ``topk_gpu.json`` -- the fastest measured full-catalog top-k on one GPU at 1M items x d=1024
  in bf16, batch 1, k=100: the catalog scan is bound by memory bandwidth, so its effective
  bytes/s give a shard's time as ``shard bytes / bandwidth``;
* ``cluster.json`` -- the Ray Serve fan-out and merge on this machine: the p99 of the sharded
  application over HTTP minus the p99 of one ``lite serve`` process (hops, serialisation, the
  merge), at the largest shard count measured.

For each catalog (100M and 1B items x d in {256, 1024}, bf16 rows): GPUs per copy (80% of the
GPU's memory for rows), bytes per request across the network (each shard gets the fp32 user
vector and the history ids, and returns k (score, id) pairs), and a p99 estimate (one shard's
scan + the fan-out overhead measured here). Writes ``cluster_plan.{json,md}``.

    python benchmarks/cluster_plan.py --results benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

GPU_GIB = 141  # H200 (the GPU of topk_gpu.json)
USABLE = 0.8
ROW_BYTES = 2  # bf16
HISTORY, K = 50, 100


def inputs(results: Path) -> dict:
    gpu = json.loads((results / "topk_gpu.json").read_text())
    point = [
        r
        for r in gpu
        if r.get("N") == 1_000_000
        and r.get("d") == 1024
        and r.get("B") == 1
        and r.get("k") == 100
        and r.get("dtype") == "bf16"
        and "median_ms" in r
    ]
    best = min(point, key=lambda r: r["median_ms"])
    bandwidth = 1_000_000 * 1024 * ROW_BYTES / (best["median_ms"] / 1e3)  # bytes/s
    rows = json.loads((results / "cluster.json").read_text())
    single = next(r for r in rows if r["path"].startswith("lite serve (one process)"))
    ray = [r for r in rows if r["path"].startswith("Ray Serve") and r.get("replicas") == 1]
    widest = max(ray, key=lambda r: r["shards"])
    return {
        "gpu": best["machine"],
        "gpu_scan_bytes_per_s": bandwidth,
        "gpu_point_ms": best["median_ms"],
        "fanout_p99_ms": widest["p99_ms"] - single["p99_ms"],
        "fanout_shards": widest["shards"],
        "fanout_machine": widest["machine"],
        "fanout_commit": widest["commit"],
    }


def plan(inp: dict) -> list[dict]:
    out = []
    for items in (100_000_000, 1_000_000_000):
        for d in (256, 1024):
            total = items * d * ROW_BYTES
            gpus = math.ceil(total / (USABLE * GPU_GIB * 2**30))
            shard_bytes = total / gpus
            scan_ms = shard_bytes / inp["gpu_scan_bytes_per_s"] * 1e3
            per_shard = 4 * d + 8 * HISTORY + 12 * K  # request vector + history, reply pairs
            out.append(
                {
                    "items": items,
                    "d": d,
                    "catalog_GB": round(total / 1e9, 1),
                    "gpus_per_copy": gpus,
                    "shard_GB": round(shard_bytes / 1e9, 1),
                    "network_bytes_per_request": gpus * per_shard,
                    "scan_ms": round(scan_ms, 2),
                    "p99_estimate_ms": round(scan_ms + inp["fanout_p99_ms"], 1),
                }
            )
    return out


def render(inp: dict, rows: list[dict]) -> str:
    lines = [
        "# Planning a sharded catalog past one machine",
        "",
        f"Inputs: one {inp['gpu']} scans the bf16 rows at "
        f"{inp['gpu_scan_bytes_per_s'] / 1e12:.2f} TB/s (its fastest top-k of 1M x 1024, batch 1, "
        f"k=100: {inp['gpu_point_ms']} ms, `topk_gpu.json`); the Ray Serve fan-out and merge "
        f"added {inp['fanout_p99_ms']:.1f} ms at p99 with {inp['fanout_shards']} shards on "
        f"{inp['fanout_machine']} (commit {inp['fanout_commit']}, `cluster.json`: every "
        "deployment on one 2-core machine, so an upper bound for a cluster with its own cores "
        f"per replica). Rows fill {USABLE:.0%} of a {GPU_GIB} GiB GPU; a request sends each shard "
        f"the fp32 user vector and {HISTORY} history ids and gets k={K} (score, id) pairs back. "
        "Command: `python benchmarks/cluster_plan.py --results benchmarks/results`.",
        "",
        "| items | d | catalog GB | GPUs per copy | GB per shard | network bytes / request "
        "| one shard's scan ms | p99 estimate ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['d']} | {r['catalog_GB']:,} | {r['gpus_per_copy']} | "
            f"{r['shard_GB']} | {r['network_bytes_per_request']:,} | {r['scan_ms']} | "
            f"{r['p99_estimate_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args()
    results = Path(args.results)
    inp = inputs(results)
    rows = plan(inp)
    (results / "cluster_plan.json").write_text(
        json.dumps({"inputs": inp, "rows": rows}, indent=2) + "\n"
    )
    (results / "cluster_plan.md").write_text(render(inp, rows))
    print(render(inp, rows))


if __name__ == "__main__":
    main()
