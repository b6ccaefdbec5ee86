"""Engines side by side on one machine: PyTorch eager vs ONNX Runtime (fp32, int8 dynamic).

Latency (p50/p99) at batch 1 and throughput at batch 64, at history lengths 50 and 200, on the
ML-1M model: a trained checkpoint with --checkpoint, or else the ML-1M-shaped network of the
quality runs (ML-1M catalog of 3,706 items, d=64, 2 layers, d_ff 512, history 200) with seeded
weights — inference cost does not depend on the weight values, only on the shapes.

    python benchmarks/bench_engines.py --data-dir ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit, machine  # noqa: E402


def build_checkpoint(data_dir: Path, out: Path) -> tuple[Path, list[list[str]]]:
    from lite_export.data import leave_one_out, load_dataset
    from lite_export.model.config import LiteConfig
    from lite_export.model.lite_llm4rec import LiteLLM4Rec
    from lite_export.model.workflow import catalog_of

    ds = load_dataset("ml-1m", data_dir)
    split = leave_one_out(ds)
    cfg = LiteConfig.from_name("sasrec", d_model=64, d_ff=512, max_history=ds.max_history)
    model = LiteLLM4Rec.build(cfg, catalog_of(ds, split), seed=0)
    hists = [[ds.item_ids[i] for i in h] for h, _ in split.test]
    return model.save_pretrained(out), hists


def quantize_int8(art: Path, out: Path) -> Path:
    """A copy of the artifact whose model.onnx is ONNX Runtime's dynamic int8 quantisation."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(art, out)
    (out / "model.ort.onnx").unlink(missing_ok=True)
    quantize_dynamic(str(art / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8)
    return out


def timed(fn, reps: int) -> np.ndarray:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return np.asarray(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "ml-1m"))
    p.add_argument(
        "--checkpoint", default=None, help="a trained ML-1M checkpoint (default: build one)"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()

    import lite_export
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_engines_"))
    if args.checkpoint:
        from lite_export.data import leave_one_out, load_dataset

        ckpt = Path(args.checkpoint)
        ds = load_dataset("ml-1m", args.data_dir)
        hists = [[ds.item_ids[i] for i in h] for h, _ in leave_one_out(ds).test]
        weights = f"checkpoint {ckpt.name}"
    else:
        ckpt, hists = build_checkpoint(Path(args.data_dir), tmp / "ckpt")
        weights = "ML-1M-shaped, seeded weights"
    art = export_artifact(ckpt, tmp / "art", ExportOptions(k=100), log=None)
    art8 = quantize_int8(art, tmp / "art_int8") if args.device == "cpu" else None

    if args.device == "cuda":
        # the PyTorch engine on the GPU: fused projection + top-K kernel vs matmul + topk
        engines = {
            ("torch", "fp32"): lite_export.load(art, engine="torch", device="cuda", ranker="torch"),
            ("torch+fused", "fp32"): lite_export.load(art, engine="torch", device="cuda"),
        }
    else:
        engines = {
            ("torch", "fp32"): lite_export.load(art, engine="torch", device="cpu"),
            ("onnxruntime", "fp32"): lite_export.load(
                art, engine="onnxruntime", threads=args.threads
            ),
            ("onnxruntime", "int8"): lite_export.load(
                art8, engine="onnxruntime", threads=args.threads, verify=False
            ),
        }
    rng = np.random.default_rng(0)
    rows = []
    for length in (50, 200):
        pool = [h[-length:] for h in hists if len(h) >= length]
        probe = [pool[i] for i in rng.choice(len(pool), size=64, replace=False)]
        ref = engines[("torch", "fp32")].recommend(probe, k=args.k)
        for (name, precision), eng in engines.items():
            top = eng.recommend(probe, k=args.k)
            same = float(np.mean([a == b for a, b in zip(top.ids, ref.ids, strict=True)]))
            overlap = float(
                np.mean(
                    [len(set(a) & set(b)) / args.k for a, b in zip(top.ids, ref.ids, strict=True)]
                )
            )
            max_diff = float(np.abs(top.scores - ref.scores).max())
            lat = timed(lambda e=eng, p=probe: e.recommend(p[:1], k=args.k), args.reps)
            thr = timed(lambda e=eng, p=probe: e.recommend(p, k=args.k), max(5, args.reps // 3))
            rows.append(
                {
                    "engine": name,
                    "precision": precision,
                    "history": length,
                    "b1_p50_ms": round(float(np.median(lat)), 3),
                    "b1_p99_ms": round(float(np.percentile(lat, 99)), 3),
                    "b64_p50_ms": round(float(np.median(thr)), 3),
                    "b64_users_per_s": round(64 / (float(np.median(thr)) / 1000.0), 1),
                    "topk_identical_rows": same,
                    "topk_overlap": overlap,
                    "max_abs_score_diff": max_diff,
                    "within_tolerance": bool(
                        same == 1.0 and max_diff <= (1e-4 if precision == "fp32" else 1e-2)
                    ),
                    "k": args.k,
                    "threads": args.threads,
                    "weights": weights,
                    "machine": machine(),
                    "commit": commit(),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "engines" if args.device == "cpu" else "engines_gpu"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"# Engines on the ML-1M model ({weights}; {machine()}, {args.threads} threads, commit {commit()})",
        "",
        f"`python benchmarks/bench_engines.py` — end-to-end `recommend()` (id mapping included), k={args.k}, "
        f"median and p99 over {args.reps} calls at batch 1, median over {max(5, args.reps // 3)} at batch 64. "
        "Ratios are against PyTorch eager at the same history length. `top-K ok`: identical top-K ids "
        "and scores within the dtype tolerance (1e-4 fp32, 1e-2 int8) on 64 real ML-1M histories.",
        "",
        "| history | engine | precision | b1 p50 ms | b1 p99 ms | b64 p50 ms | users/s @64 | x torch @1 | x torch @64 | top-K ok | top-K overlap |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        base = next(x for x in rows if x["engine"] == "torch" and x["history"] == r["history"])
        lines.append(
            f"| {r['history']} | {r['engine']} | {r['precision']} | {r['b1_p50_ms']} | {r['b1_p99_ms']} | "
            f"{r['b64_p50_ms']} | {r['b64_users_per_s']} | {base['b1_p50_ms'] / r['b1_p50_ms']:.2f} | "
            f"{base['b64_p50_ms'] / r['b64_p50_ms']:.2f} | {r['within_tolerance']} | {r['topk_overlap']:.3f} |"
        )
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
