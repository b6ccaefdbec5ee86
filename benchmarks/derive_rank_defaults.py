"""Derive ``kernels.rank``'s default rank table from a GPU benchmark run.

    python benchmarks/derive_rank_defaults.py                       # committed H200 results
    python benchmarks/derive_rank_defaults.py --results OUT/topk_gpu.json --check

Reads the rows of ``benchmarks/results/topk_gpu.json`` (``bench_topk_projection.py``) and writes
``lite_export/kernels/rank_defaults.json`` (the format of :mod:`lite_export.kernels.dispatch`):
one row per measured ``(N, d, B, k, dtype)`` with the median milliseconds of every path that ran
*correctly* there, so ``method="auto"`` runs the path that measured fastest. Which provider is
which path:

* ``torch``: the ``rank-torch`` row (``kernels.rank(method="torch")``: fp32 scores) where the run
  has one, else the ``torch`` row (``torch.topk(torch.addmm(b, h, W.T))`` in the table's dtype,
  the baseline of the runs before ``rank-torch`` existed);
* ``filter`` / ``exact``: the ``triton`` row by its ``method`` and the ``triton-exact`` row,
  only when ``correct`` is true and no row fell back.

Rows with exclusion (``triton+exclude200``) have no torch row to compare with and are left out.
``--check`` only compares the file with what the results give (exit 1 when they differ).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.kernels.dispatch import (  # noqa: E402
    DEFAULTS_PATH,
    RankTable,
    TableRow,
    dtype_name,
    now_utc,
)


def path_of(row: dict) -> str | None:
    """The rank path a benchmark row measured, or None when it is no path of its own."""
    prov = row.get("provider")
    if prov == "rank-torch":
        return "torch"
    if prov == "torch":
        return "torch-baseline"
    if prov in ("triton", "triton-exact") and row.get("correct") and not row.get("fallback_rows"):
        return "exact" if prov == "triton-exact" else row.get("method") or "filter"
    return None


def derive(rows: list[dict], source: str) -> RankTable:
    points: dict[tuple, dict[str, float]] = defaultdict(dict)
    meta = {}
    for r in rows:
        path = path_of(r)
        if path is None or not r.get("median_ms"):
            continue
        key = (int(r["N"]), int(r["d"]), int(r["B"]), int(r["k"]), r.get("dtype", "bf16"))
        points[key][path] = float(r["median_ms"])
        meta.setdefault("gpu", r.get("machine", "").split(" (")[0])
        meta.setdefault("torch", r.get("torch", ""))
        meta.setdefault("triton", r.get("triton", ""))
        meta.setdefault("commit", r.get("commit", ""))
    out = []
    for (N, d, B, k, dt), ms in sorted(points.items()):
        base = ms.pop("torch-baseline", None)
        if "torch" not in ms and base is not None:
            ms["torch"] = base
        if "torch" not in ms:
            continue  # no baseline measured at this shape: nothing to compare with
        out.append(TableRow(N=N, d=d, B=B, k=k, dtype=dtype_name(dt), exclude=0, ms=ms))
    notes = (
        "torch = rank(method='torch') where the run measured it (provider rank-torch), else the "
        "bf16 torch.topk(addmm) baseline of that run (bf16 scores: the fp32-score path can be "
        "slower where [B, N] dominates, B = 256); filter/exact only where correct with no "
        "fallback rows. Measure on your GPU with `lite tune --gpu`."
    )
    return RankTable(
        gpu=meta.get("gpu", ""),
        torch=meta.get("torch", ""),
        triton=meta.get("triton", ""),
        rows=out,
        source=f"{source} (commit {meta.get('commit', '?')}) via benchmarks/derive_rank_defaults.py",
        created=now_utc(),
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=REPO / "benchmarks/results/topk_gpu.json")
    p.add_argument("--out", type=Path, default=DEFAULTS_PATH)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = p.parse_args(argv)
    rows = json.loads(args.results.read_text())
    try:
        source = str(args.results.resolve().relative_to(REPO))
    except ValueError:
        source = str(args.results)
    table = derive(rows, source)
    wins = defaultdict(int)
    for r in table.rows:
        wins[r.best] += 1
    print(table.summary())
    print(f"{len(table.rows)} shapes; fastest: " + ", ".join(f"{p} {n}" for p, n in wins.items()))
    if args.check:
        current = RankTable.load(args.out)
        same = [r.to_json() for r in current.rows] == [r.to_json() for r in table.rows]
        print("defaults match the results" if same else f"{args.out} differs from the results")
        return 0 if same else 1
    table.save(args.out)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
