"""CPU ranking: lite-export's ``rank_cpu`` against torch, ONNX Runtime and faiss, in one run.

    python benchmarks/bench_topk_cpu.py                 # writes benchmarks/results/topk_cpu.{json,md}
    python benchmarks/bench_topk_cpu.py --quick --out /tmp/r

The issue's target point is N = 1M items, d = 64, B = 64 queries, k = 10, fp32; a few other points
follow. Providers, all computing ``top-k(h @ W.T + b)`` in fp32 on the same inputs:

* ``rank_cpu`` -- ours (``lite_export.kernels.rank_cpu``): chunked items-major GEMM with the bias
  in the GEMM's C operand, then an exact block-max pre-selection per chunk.
* ``torch`` -- ``torch.topk(torch.addmm(b, h, W.T), k)``: the whole [B, N] matrix, then select.
* ``torch-chunked`` -- the same per chunk of 32768 items, then a merge of the chunk winners.
* ``onnxruntime`` -- a MatMul + Add + TopK graph with W^T and b as initializers (the SPEC's
  83 ms point), intra-op threads = torch's thread count.
* ``faiss`` -- ``IndexFlatIP`` over ``[W | b]`` searched with ``[h | 1]`` (bias as an extra dim).
* ``rank_cpu-int8`` / ``rank_cpu-fp8`` -- ``lite_export.kernels.rank_quantized`` on
  ``quantize_catalog(W, b, "int8" | "fp8")`` (per-row scales; quantized outside the timing) with
  the exact re-rank against ``W``: the same top-k as ``rank_cpu``, reading a quarter of the
  table's bytes in the scoring pass.
* ``onnxruntime-int8`` -- the int8 ranking head that ``lite export --catalog-precision int8``
  puts in model.onnx (``lite_export.exporters.quantized_graph``: integer-matmul bounds from a
  7-bit copy of ``W``, exact fp32 re-rank of ``M`` candidates, full-precision rescue of rows the
  bound cannot settle), after ONNX Runtime's fusions; ``M`` is calibrated on 64 other random
  queries, as the export does on probe users. Its row also has ``candidates`` and
  ``settled_fraction`` (rows the integer pass settled; the others ran the rescue).

Every row carries ``dtype``, ``table_bytes`` (the table its scoring pass reads: ``W`` and ``b`` in
fp32, or ``q``, the scales and the bias terms) and ``speedup_vs_rank_cpu``. The quantized paths
still read the candidates' rows of ``W``; the memory saving needs ``W`` off RAM
(``benchmarks/bench_catalog_memory.py`` measures it).

Session/index construction is outside the timing. Providers run in blocks of consecutive calls,
in ABC..CBA order over several rounds, so slow drifts of the shared machine hit all of them alike
(not call-by-call interleaving: ORT's and OpenMP's workers spin after a call and would slow the
next provider on a 2-core machine); median and p99 over all timed calls.
Every provider's answer is checked against ``rank_cpu``'s by gathered fp32 scores (``agrees``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit, cpu_model  # noqa: E402
from lite_export.kernels.quantized import quantize_catalog, rank_quantized  # noqa: E402
from lite_export.kernels.reference import rank_cpu  # noqa: E402


def load_avg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


# ---- providers: each is built once (untimed) and returns a zero-arg callable -> (scores, ids) ----


def make_rank_cpu(h, W, b, k):
    return lambda: rank_cpu(h, W, b, k)


def make_rank_cpu_int8(h, W, b, k):
    cat = quantize_catalog(W, b)
    run = lambda: rank_quantized(h, cat, k, W=W)  # noqa: E731
    run.table_bytes = cat.nbytes
    run.dtype = "int8"
    return run


def make_rank_cpu_fp8(h, W, b, k):
    cat = quantize_catalog(W, b, "fp8")
    run = lambda: rank_quantized(h, cat, k, W=W)  # noqa: E731
    run.table_bytes = cat.nbytes
    run.dtype = "fp8"
    return run


def make_onnxruntime_int8(h, W, b, k):
    import onnxruntime as ort

    from lite_export.exporters import quantized_graph as QG

    N, d = W.shape
    tables = QG.head_tables(W, b)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED

    # M from 64 other queries of the same distribution, as the export calibrates on probe users
    calib = torch.randn(64, d, generator=torch.Generator().manual_seed(12345))
    kth = rank_cpu(calib, W, b, k)[0][:, -1].numpy()
    M = QG.calibrate_on_vectors(tables, calib.numpy(), kth, k)["candidates"]
    sess = ort.InferenceSession(
        QG.head_model(tables, k, M).SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    feeds = {"user_vectors": h.numpy(), "exclude_ids": np.full((h.shape[0], 1), N, np.int64)}

    def run():
        v, i, settled = sess.run(None, feeds)
        run.extra["settled_fraction"] = round(float(settled.mean()), 4)
        return torch.from_numpy(v), torch.from_numpy(i)

    run.table_bytes = int(tables.qT.nbytes + 4 * 4 * tables.n_pad)  # q, scales, rowb, alpha, gamma
    run.dtype = "int8"
    run.extra = {"candidates": M}
    return run


def make_torch(h, W, b, k):
    return lambda: torch.topk(torch.addmm(b, h, W.T), k, dim=1)


def make_torch_chunked(h, W, b, k, chunk=32768):
    def run():
        vals, ids = [], []
        for lo in range(0, W.shape[0], chunk):
            hi = min(W.shape[0], lo + chunk)
            v, i = torch.topk(torch.addmm(b[lo:hi], h, W[lo:hi].T), min(k, hi - lo), dim=1)
            vals.append(v)
            ids.append(i + lo)
        v, j = torch.topk(torch.cat(vals, 1), k, dim=1)
        return v, torch.gather(torch.cat(ids, 1), 1, j)

    return run


def make_onnxruntime(h, W, b, k):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    d = W.shape[1]
    nodes = [
        helper.make_node("MatMul", ["h", "Wt"], ["s0"]),
        helper.make_node("Add", ["s0", "b"], ["s"]),
        helper.make_node("TopK", ["s", "k"], ["v", "i"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "rank",
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", d])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["B", k]),
            helper.make_tensor_value_info("i", TensorProto.INT64, ["B", k]),
        ],
        initializer=[
            numpy_helper.from_array(W.numpy().T.copy(), "Wt"),
            numpy_helper.from_array(b.numpy(), "b"),
            numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    hn = h.numpy()

    def run():
        v, i = sess.run(None, {"h": hn})
        return torch.from_numpy(v), torch.from_numpy(i)

    return run


def make_faiss(h, W, b, k):
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    index = faiss.IndexFlatIP(W.shape[1] + 1)
    index.add(torch.cat([W, b.unsqueeze(1)], dim=1).numpy())
    q = torch.cat([h, torch.ones(h.shape[0], 1)], dim=1).numpy()

    def run():
        v, i = index.search(q, k)
        return torch.from_numpy(v), torch.from_numpy(i)

    return run


PROVIDERS = {
    "rank_cpu": make_rank_cpu,
    "torch": make_torch,
    "torch-chunked": make_torch_chunked,
    "onnxruntime": make_onnxruntime,
    "faiss": make_faiss,
    "rank_cpu-int8": make_rank_cpu_int8,
    "rank_cpu-fp8": make_rank_cpu_fp8,
    "onnxruntime-int8": make_onnxruntime_int8,
}


def agrees(h, W, b, k, ref, got, atol=1e-4, rtol=1e-4) -> bool:
    """Same top-k as ``ref`` up to ties: gathered fp32 scores of got's ids match ref's values."""
    _, ids = got
    ids = ids.long()
    if ids.shape != ref[1].shape or bool((ids < 0).any()) or bool((ids >= W.shape[0]).any()):
        return False
    g = torch.einsum("bkd,bd->bk", W[ids], h) + b[ids]
    g = torch.sort(g, dim=1, descending=True).values
    return bool(torch.allclose(g, ref[0], atol=atol, rtol=rtol))


def run_point(N, d, B, k, reps, providers, seed=0, rounds=4) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g)
    W = torch.randn(N, d, generator=g)
    b = torch.randn(N, generator=g)
    built, notes = {}, {}
    for name in providers:
        try:
            built[name] = PROVIDERS[name](h, W, b, k)
        except Exception as e:  # e.g. faiss not installed: record, keep the others
            notes[name] = f"{type(e).__name__}: {str(e)[:200]}"
    ref = rank_cpu(h, W, b, k)
    ok = {}
    for name, fn in built.items():
        try:
            ok[name] = agrees(h, W, b, k, ref, fn())  # also the warm-up call
        except Exception as e:
            notes[name] = f"{type(e).__name__}: {str(e)[:200]}"
    built = {n: f for n, f in built.items() if n in ok}
    times: dict[str, list[float]] = {n: [] for n in built}
    load0 = load_avg()
    # Blocks of consecutive calls per provider (ORT's and OpenMP's worker threads spin for a
    # while after a call and would slow whichever provider runs next on a small machine), in
    # ABC..CBA order over rounds so slow drifts of the shared machine hit every provider alike.
    order = list(built)
    per_round = max(1, reps // rounds)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            built[name]()  # untimed: refill caches after the previous provider
            for _ in range(per_round):
                t0 = time.perf_counter()
                built[name]()
                times[name].append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.3)
    load1 = load_avg()
    rows = []
    med = {n: float(np.median(t)) for n, t in times.items()}
    for name in providers:
        fn = built.get(name)
        row = {
            "provider": name,
            "N": N,
            "d": d,
            "B": B,
            "k": k,
            "dtype": getattr(fn, "dtype", "fp32"),
            "table_bytes": getattr(fn, "table_bytes", (N * d + N) * 4),
            **getattr(fn, "extra", {}),
        }
        if name in med:
            row.update(
                median_ms=round(med[name], 2),
                p99_ms=round(float(np.percentile(times[name], 99)), 2),
                reps=reps,
                agrees=ok[name],
            )
            for base in ("onnxruntime", "torch", "faiss", "rank_cpu"):
                if base in med:
                    row[f"speedup_vs_{base}"] = round(med[base] / med[name], 2)
        else:
            row["error"] = notes.get(name, "not run")
        row["load_avg_1m"] = [load0, load1]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument(
        "--quick", action="store_true", help="target point only, 8 timed calls per provider"
    )
    p.add_argument("--reps", type=int, default=24, help="timed calls per provider and point")
    p.add_argument(
        "--threads", type=int, default=None, help="torch/ORT/faiss threads (default: torch's)"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    points = [(1_000_000, 64, 64, 10)]
    if not args.quick:
        points += [
            (1_000_000, 64, 1, 10),
            (1_000_000, 64, 16, 10),
            (1_000_000, 64, 64, 100),
            (100_000, 256, 16, 100),
        ]
    reps = 8 if args.quick else args.reps
    meta = {
        "machine": f"{cpu_model()} ({os.cpu_count()} CPUs)",
        "threads": torch.get_num_threads(),
        "commit": commit(),
        "torch": torch.__version__,
    }
    for mod in ("onnxruntime", "faiss"):
        try:
            meta[mod] = __import__(mod).__version__
        except Exception:
            meta[mod] = "missing"
    rows = []
    for N, d, B, k in points:
        got = run_point(N, d, B, k, reps, list(PROVIDERS))
        for r in got:
            r.update(meta)
            print(
                f"N={N:>8} d={d:>4} B={B:>3} k={k:>4} {r['provider']:>14}: "
                f"{r.get('median_ms', float('nan')):8.1f} ms (p99 {r.get('p99_ms', float('nan')):7.1f})  "
                f"{r['dtype']} {r['table_bytes'] / 2**20:7.1f} MiB x rank_cpu "
                f"{r.get('speedup_vs_rank_cpu', '')} "
                f"agrees={r.get('agrees')} {r.get('error', '')}",
                flush=True,
            )
        rows += got
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "topk_cpu.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"# CPU ranking: top-k(h @ W.T + b), fp32 ({meta['machine']}, {meta['threads']} threads)",
        "",
        f"commit {meta['commit']}, torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, faiss {meta['faiss']}. "
        f"Median / p99 over {reps} repetitions; providers in blocks, ABC..CBA order over 4 rounds. "
        "`agrees`: same top-k as rank_cpu by gathered fp32 scores. load = 1-min load average before/after "
        "(the machine is shared; compare rows of one point, measured together).",
        "",
        "| N | d | B | k | provider | dtype | table bytes | median ms | p99 ms | x ORT | x torch "
        "| x faiss | x rank_cpu | agrees | load |",
        "|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']} | {r['d']} | {r['B']} | {r['k']} | {r['provider']} | {r['dtype']} | "
            f"{r['table_bytes']} | {r.get('median_ms', r.get('error', ''))} | "
            f"{r.get('p99_ms', '')} | {r.get('speedup_vs_onnxruntime', '')} | {r.get('speedup_vs_torch', '')} | "
            f"{r.get('speedup_vs_faiss', '')} | {r.get('speedup_vs_rank_cpu', '')} | {r.get('agrees', '')} | "
            f"{r['load_avg_1m']} |"
        )
    (args.out / "topk_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(
        json.dumps(
            [
                {k: r.get(k) for k in ("provider", "N", "d", "B", "k", "median_ms")}
                for r in rows
                if r["N"] == 1_000_000 and r["B"] == 64 and r["k"] == 10
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
