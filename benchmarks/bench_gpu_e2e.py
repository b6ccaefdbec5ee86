"""End-to-end ``recommend()`` latency of the PyTorch engine on a GPU: eager vs whole-request graphs.

    python3 benchmarks/bench_gpu_e2e.py --device cuda --out benchmarks/results --budget-s 90
    python3 benchmarks/bench_gpu_e2e.py --device cpu --quick          # smoke test (tiny shapes)

Models (seeded random weights of the right shapes: latency does not depend on trained weights):

* ML-1M-shaped: 3,706 items, d = 64, 2 layers, d_ff 512, max history 200 (the quality runs'
  SASRec-style network, as in ``bench_engines.py``);
* a 1,000,000-item catalog with d = 256 (2 layers, d_ff 1024, max history 200).

Engines: ``torch`` (``graph="off"``: eager, ranking through ``kernels.rank``), ``torch+graph``
(``graph="capture"``: one CUDA graph per request bucket) and ``torch+compile``
(``graph="compile"``: ``torch.compile(mode="reduce-overhead")``), each on the same model. Per
(engine, model, history, batch): ``recommend(histories, k=10, exclude_seen=True)`` end to end --
id mapping, padding and the TopK included -- after warm-up calls (which capture or compile the
bucket), timed with ``time.perf_counter`` per call; median and p99 over ``--reps`` calls (a
third as many at batch 64), users/s = batch / median. Before timing, each graph engine's top-k
ids are compared with the eager engine's on the same histories (``matches_eager`` in the log and
the Markdown; the JSON rows carry only the measurement). ``ENGINE:core`` rows time the same
engine on ids already mapped and padded (``Engine._recommend_impl``): ``recommend()`` without its
host work (catalog lookups, padding, the TopK), which costs milliseconds at batch 64 x 200.

Writes ``gpu_e2e.json`` (one object per row: engine, items, d, history, batch, p50_ms, p99_ms,
users_per_s, device, commit) and ``gpu_e2e.md`` under ``--out``; prints the table and, last, one
line of JSON. ``--budget-s`` stops starting new rows (the compile rows come last).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit, machine  # noqa: E402

KEYS = (
    "engine",
    "items",
    "d",
    "history",
    "batch",
    "p50_ms",
    "p99_ms",
    "users_per_s",
    "device",
    "commit",
)
#: engine label -> TorchEngine ``graph`` option
ENGINES = {"torch": "off", "torch+graph": "capture", "torch+compile": "compile"}


def build_model(items: int, d: int, d_ff: int, max_history: int, seed: int = 0):
    """A seeded SASRec-style LiteLLM4Rec over ``items`` synthetic ids (no data needed)."""
    from lite_export.catalog import ItemCatalog
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec

    catalog = ItemCatalog(ids=[str(i + 1) for i in range(items)], titles=[""] * items)
    cfg = LiteConfig.from_name("sasrec", d_model=d, d_ff=d_ff, max_history=max_history)
    return LiteLLM4Rec.build(cfg, catalog, seed=seed).eval()


def histories(items: int, length: int, count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[str(i + 1) for i in rng.integers(0, items, length)] for _ in range(count)]


def mapped(eng, hists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The padded id arrays ``recommend()`` hands the engine (``Engine.recommend``'s host work),
    so ``engine:core`` rows time the engine alone."""
    from lite_export.data.batching import pad_histories

    idx = eng.catalog.batch_indices(hists)
    n = eng.num_items
    width = max(1, max(map(len, idx)))
    ids = pad_histories(idx, eng.max_history, n).numpy()
    return ids, ids if width == ids.shape[1] else pad_histories(idx, width, n).numpy()


def timed(fn, reps: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(reps)
    for r in range(reps):
        t = time.perf_counter()
        fn()
        out[r] = (time.perf_counter() - t) * 1e3
    return out


MODELS = {
    "ml-1m": {"items": 3706, "d": 64, "d_ff": 512, "max_history": 200, "dtype": "fp32"},
    # bf16 table: the 1M x 256 head is 512 MB read per call (fp32 would double it)
    "1m": {"items": 1_000_000, "d": 256, "d_ff": 1024, "max_history": 200, "dtype": "bf16"},
    "tiny": {"items": 500, "d": 32, "d_ff": 64, "max_history": 20, "dtype": "fp32"},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: Score tolerance of a table dtype (relative, and absolute near 0): a few units in the last
#: place of the user vector's dtype (bf16: 8 bits of mantissa, 2**-8 per unit)
RTOL = {"fp32": 1e-4, "bf16": 4 * 2**-8}


def plan(args) -> list[tuple[str, list[str], list[tuple[int, int]]]]:
    """[(model, engines, [(history, batch)])] in priority order: eager and graph rows of both
    models first, the compile rows (a compilation each) last."""
    if args.device == "cpu":  # smoke test: tiny shapes, the bucketed path run eagerly
        return [("tiny", ["torch", "torch+static"], [(20, 1), (5, 4)])]
    ml1m = [(200, 1), (200, 64), (50, 1), (50, 64)]
    big = [(200, 1), (200, 64)]
    if args.quick:
        return [("ml-1m", ["torch", "torch+graph", "torch+compile"], [(200, 1), (200, 64)])]
    return [
        ("ml-1m", ["torch", "torch+graph"], ml1m),
        ("1m", ["torch", "torch+graph"], big),
        ("ml-1m", ["torch+compile"], ml1m),
        ("1m", ["torch+compile"], big),
    ]


MODES = {**ENGINES, "torch+static": "static"}


def run(args, on_row=None) -> tuple[list[dict], list[str]]:
    """Measure the plan; ``on_row(rows, notes)`` after every row (results survive a kill)."""
    from lite_export.engines.torch_engine import TorchEngine

    dev = args.device
    device_name = machine() if dev == "cuda" else f"cpu ({machine()})"
    rows: list[dict] = []
    notes: list[str] = []
    start = time.perf_counter()
    reps = args.reps
    engines: dict[tuple[str, str], TorchEngine] = {}
    models: dict[str, object] = {}

    def engine(model_name: str, name: str) -> TorchEngine:
        key = (model_name, name)
        if key not in engines:
            spec = MODELS[model_name]
            if model_name not in models:
                t0 = time.perf_counter()
                models[model_name] = build_model(
                    spec["items"], spec["d"], spec["d_ff"], spec["max_history"]
                )
                print(f"# {model_name}: built in {time.perf_counter() - t0:.1f} s", flush=True)
            engines[key] = TorchEngine.from_model(
                models[model_name],
                k=100,
                dtype=DTYPES[spec["dtype"]],
                device=dev,
                graph=MODES[name],
            )
        return engines[key]

    for model_name, names, cases in plan(args):
        spec = MODELS[model_name]
        for name in names:
            for length, batch in cases:
                what = f"{name} {model_name} ({spec['dtype']}) h={length} b={batch}"
                if time.perf_counter() - start > args.budget_s:
                    notes.append(f"{what}: skipped (time budget)")
                    continue
                hists = histories(spec["items"], length, batch, seed=length * 1000 + batch)
                try:
                    eng = engine(model_name, name)
                    t0 = time.perf_counter()
                    top = eng.recommend(hists, k=args.k)  # captures / compiles the bucket
                    first_s = time.perf_counter() - t0
                    if name != "torch":
                        ref = engine(model_name, "torch").recommend(hists, k=args.k)
                        diff = float(np.abs(top.scores - ref.scores).max())
                        # the same ranking up to near-ties: rank by rank, the scores agree within
                        # the table dtype's rounding (a different kernel fusion rounds the bf16
                        # user vector differently, so two near-equal items may swap)
                        rtol = RTOL[spec["dtype"]]
                        same = top.ids == ref.ids or bool(
                            np.allclose(top.scores, ref.scores, rtol=rtol, atol=rtol)
                        )
                        ties = ", ids differ at near-ties" if same and top.ids != ref.ids else ""
                        notes.append(
                            f"{what}: matches_eager={same} (max score diff {diff:.2g}{ties}), "
                            f"first call {first_s:.2f} s"
                        )
                    n = reps if batch == 1 else max(5, reps // 3)
                    lat = timed(lambda e=eng, h=hists: e.recommend(h, k=args.k), n)
                    ids, ex = mapped(eng, hists)
                    core = timed(lambda e=eng, i=ids, x=ex: e._recommend_impl(i, x, args.k), n)
                except Exception as exc:  # record and go on
                    notes.append(f"{what}: error {type(exc).__name__}: {str(exc)[:300]}")
                    print(f"# {notes[-1]}", flush=True)
                    continue
                for label, t in ((name, lat), (f"{name}:core", core)):
                    p50 = float(np.median(t))
                    row = {
                        "engine": f"{label} ({spec['dtype']})",
                        "items": spec["items"],
                        "d": spec["d"],
                        "history": length,
                        "batch": batch,
                        "p50_ms": round(p50, 4),
                        "p99_ms": round(float(np.percentile(t, 99)), 4),
                        "users_per_s": round(batch / (p50 / 1e3), 1),
                        "device": device_name,
                        "commit": commit(),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if on_row is not None:
                    on_row(rows, notes)
    return rows, notes


def host_work_ms(items: int, length: int, batch: int, reps: int = 20) -> float:
    """Median ms of the host-side work of one recommend() (id mapping, padding, the TopK):
    the floor under every engine's end-to-end time, measured on this machine's CPU."""
    from lite_export.catalog import ItemCatalog
    from lite_export.data.batching import pad_histories

    cat = ItemCatalog(ids=[str(i + 1) for i in range(items)], titles=[""] * items)
    hists = histories(items, length, batch, seed=1)
    idx = np.zeros((batch, 10), np.int64)

    def once():  # Engine.recommend's host work, the engine call left out
        h = cat.batch_indices(hists)
        pad_histories(h, length, items).numpy()  # the exclusion list is the same array
        cat.to_topk(h, np.zeros((batch, 10), np.float32), idx)

    return float(np.median(timed(once, reps)))


def write(rows: list[dict], notes: list[str], out: Path, host: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_e2e.json").write_text(json.dumps(rows, indent=1) + "\n")
    dev = rows[0]["device"] if rows else "?"
    lines = [
        f"# PyTorch engine end to end ({dev}, commit {commit()})",
        "",
        "`python3 benchmarks/bench_gpu_e2e.py` — `recommend(histories, k=10, exclude_seen=True)` "
        "per call, id mapping and TopK included; seeded models of the ML-1M shape (3,706 items, "
        "d = 64, 2 layers) and of a 1,000,000-item catalog (d = 256). `torch`: eager; "
        "`torch+graph`: one captured CUDA graph per request bucket; `torch+compile`: "
        "`torch.compile(mode='reduce-overhead')`. `ENGINE:core`: the same engine given ids already "
        "mapped and padded (`Engine._recommend_impl`), i.e. without the host work of "
        "`recommend()`. Median and p99 over the timed calls.",
        "",
        "| engine | items | d | history | batch | p50 ms | p99 ms | users/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['items']} | {r['d']} | {r['history']} | {r['batch']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['users_per_s']} |"
        )
    if host:
        lines += [
            "",
            "Host work alone (catalog id mapping, padding, the TopK; CPU, median ms): "
            + "; ".join(f"{k}: {v:.3f}" for k, v in host.items()),
        ]
    if notes:
        lines += ["", "Checks and notes:", ""] + [f"- {n}" for n in notes]
    (out / "gpu_e2e.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="a few rows (smoke test)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--reps", type=int, default=200, help="timed calls at batch 1 (a third at 64)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--budget-s", type=float, default=90.0, help="start no row after this")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu (smoke test)", file=sys.stderr)
        return 2
    if args.device == "cpu":
        args.reps = min(args.reps, 10)
    host = {}
    for length, batch in ((200, 1), (200, 64), (50, 1), (50, 64)):
        host[f"h={length} b={batch}"] = host_work_ms(3706, length, batch)
    rows, notes = run(args, on_row=lambda r, n: write(r, n, args.out, host))
    write(rows, notes, args.out, host)
    print((args.out / "gpu_e2e.md").read_text())
    bad = [n for n in notes if "matches_eager=False" in n or " error " in n]
    print(json.dumps({"rows": len(rows), "problems": len(bad), "out": str(args.out)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
