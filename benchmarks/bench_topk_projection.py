"""Benchmark the fused projection + top-K kernel against torch (matmul + topk) on a GPU.

    python3 benchmarks/bench_topk_projection.py --device cuda --out benchmarks/results --budget-s 200
    python3 benchmarks/bench_topk_projection.py --device cuda --quick        # a few rows, smoke test
    python3 benchmarks/bench_topk_projection.py --device cpu                  # = bench_topk_cpu.py

Rows (bf16 table by default): N in {1M, 10M, 100k} (10M only where it fits), d in {64, 256,
1024, 4096}, B in {1, 16, 256}, k in {10, 100}, ordered so the target shapes come first and the
``--budget-s`` cut-off drops the least important ones. Per row and provider: median and p99 over
``triton.testing.do_bench(return_mode="all")`` samples (do_bench flushes L2 before each sample;
W buffers are also rotated when W is smaller than 4x L2), achieved GB/s for the minimum bytes
(``N*d*esize`` for W + ``N*esize`` for the bias), % of the device-to-device copy bandwidth
measured at start (read + write bytes), and the speed-up over torch. Before timing, every triton
row is checked against an fp32 reference on the same inputs (ids valid and distinct, scores equal
the fp32 score of their id, sorted scores equal the reference top-k): ``correct`` records it.

``triton-int8`` / ``triton-fp8`` (the ``QUANT_COMPARE`` shapes, B <= 16): ``kernels.rank(h, W,
catalog=quantize_catalog(W, b, precision))``, the fused kernel reading the quantized rows with
the exact re-rank from ``W`` (``fused.topk_quantized``; the catalog is built outside the timing).
Their bytes and % of the floor count what they read: ``q`` (1 byte per element) and 16 bytes of
per-item terms; ``speedup_vs_torch`` is against the bf16 ``torch`` row.

``kernels.rank``'s own paths are timed too: ``rank-torch`` (``method="torch"``: matmul + topk with
fp32 scores, the path ``auto`` can pick -- the ``torch`` row keeps the table's dtype for its
scores and is the historical baseline) and ``auto`` (``method="auto"``). ``auto`` reads a rank
table built in this run, the way ``lite tune --gpu`` builds one: each grid point's row holds the
medians just measured for ``rank-torch``, the filter path and, where timed, the exact path (only
correct ones), so the ``auto`` row checks that the dispatch runs the fastest path at no extra
cost: ``auto_vs_best`` = best other path's median / ``auto``'s, reported against the 0.98 target
(``auto_ok``). ``default_path`` / ``default_vs_best`` say what the shipped defaults
(``lite_export/kernels/rank_defaults.json``) would have run there, from the same medians.

ONNX Runtime and faiss are CPU-only: on the GPU they are skipped (see ``bench_topk_cpu.py``).
After the table, a short sweep times every fitting kernel config and a few chunk counts on key
shapes (``--sweep-budget-s``), the data for tuning the heuristic.

Writes ``topk_gpu.json`` (one object per row), ``topk_gpu.md`` and ``topk_gpu.png`` (when
matplotlib imports) under ``--out``; prints the table and, last, one line of JSON.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

#: Where the tables live; a module constant so a CPU dry run (interpreter) can swap it.
DEV = "cuda"
#: (N, d, B, k) of the exclusion rows and of the config sweep, in priority order.
EXCLUSION_SHAPES = [(1_000_000, 1024, 16, 100), (1_000_000, 64, 16, 10)]
#: (N, d) whose B <= 16 rows also time the exact (running top-K) path for comparison.
EXACT_COMPARE = {(1_000_000, 1024), (1_000_000, 64)}
#: (N, d) whose B <= 16 rows also time the quantized catalog (int8 and fp8) on the filter path.
QUANT_COMPARE = {(1_000_000, 1024), (1_000_000, 256), (1_000_000, 64), (10_000_000, 256)}
SWEEP_SHAPES = [
    (1_000_000, 1024, 16, 100),
    (1_000_000, 1024, 1, 100),
    (1_000_000, 64, 16, 10),
    (1_000_000, 256, 256, 100),
]


# ---- environment ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    v = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import triton

        v["triton"] = triton.__version__
    except Exception:
        v["triton"] = "missing"
    return v


# ---- inputs ----------------------------------------------------------------------------------------


def random_table(N: int, d: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """Fresh N(0,1) rows (never zeros), generated in slices to bound fp32 temporaries."""
    g = torch.Generator(device=device).manual_seed(seed)
    W = torch.empty(N, d, dtype=dtype, device=device)
    step = max(1, (1 << 28) // max(d, 1))
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        W[lo:hi] = torch.randn(hi - lo, d, generator=g, device=device, dtype=torch.float32).to(
            dtype
        )
    return W


def fp32_topk_chunked(h, W, b, k, chunk_bytes=1 << 30):
    """Reference top-k in fp32, chunked over N so [B, N] never materialises whole."""
    B, d = h.shape
    N = W.shape[0]
    hf = h.float()
    step = max(k, min(N, chunk_bytes // (4 * max(B, d))))
    vals, ids = [], []
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        s = hf @ W[lo:hi].float().T
        if b is not None:
            s += b[lo:hi].float()
        v, i = torch.topk(s, min(k, hi - lo), dim=1)
        vals.append(v)
        ids.append(i + lo)
    v, j = torch.topk(torch.cat(vals, 1), k, dim=1)
    return v, torch.gather(torch.cat(ids, 1), 1, j)


def check_against_fp32(h, W, b, k, scores, ids, atol=1e-3, rtol=1e-3) -> tuple[bool, float, str]:
    """Gathered-score check of a top-k result (up to ties). Returns (ok, max |diff|, note)."""
    B, d = h.shape
    N = W.shape[0]
    if ids.min().item() < 0 or ids.max().item() >= N:
        return False, math.inf, "ids out of range"
    srt = torch.sort(ids, dim=1).values
    if bool((srt[:, 1:] == srt[:, :-1]).any()):
        return False, math.inf, "repeated ids"
    Wsel = W[ids.reshape(-1)].float().view(B, k, d)
    g = torch.bmm(Wsel, h.float().unsqueeze(2)).squeeze(2)
    if b is not None:
        g += b[ids].float()
    ref_vals, _ = fp32_topk_chunked(h, W, b, k)
    d1 = (scores.float() - g).abs()
    d2 = (scores.float() - ref_vals).abs()
    tol_g = atol + rtol * g.abs()
    tol_r = atol + rtol * ref_vals.abs()
    ok = bool((d1 <= tol_g).all()) and bool((d2 <= tol_r).all())
    note = (
        ""
        if ok
        else f"score/id mismatch {int((d1 > tol_g).sum())}, top-k mismatch {int((d2 > tol_r).sum())}"
    )
    return ok, float(max(d1.max().item(), d2.max().item())), note


# ---- timing ---------------------------------------------------------------------------------------


def bench_gpu(fn, rep_ms: int = 100, min_samples: int = 10) -> tuple[float, float, int]:
    """(median ms, p99 ms, samples) from triton.testing.do_bench(return_mode="all")."""
    import triton.testing

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = (time.perf_counter() - t0) * 1e3
    rep = int(max(rep_ms, min_samples * est * 1.2))
    times = triton.testing.do_bench(
        fn, warmup=max(5, min(25, int(est * 2))), rep=rep, return_mode="all"
    )
    t = torch.tensor(times, dtype=torch.float64)
    return float(t.median()), float(torch.quantile(t, 0.99)), len(times)


def timing_fields(med: float, p99: float, n: int, nbytes: int, bw: float) -> dict:
    """The row fields of one timing: median/p99 ms, samples, achieved GB/s and % of ``bw``."""
    gbs = nbytes / (med * 1e-3) / 1e9
    return {
        "median_ms": round(med, 4),
        "p99_ms": round(p99, 4),
        "samples": n,
        "GB_s": round(gbs, 1),
        "roofline_pct": round(100 * gbs / bw, 1),
    }


def copy_bandwidth_gbs(device: str, nbytes: int = 2 << 30) -> float:
    """Device-to-device copy bandwidth, counting bytes read + written."""
    import triton.testing

    free, _ = torch.cuda.mem_get_info()
    nbytes = min(nbytes, free // 4)
    a = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).uniform_()
    c = torch.empty_like(a)
    ms = triton.testing.do_bench(
        functools.partial(c.copy_, a), warmup=25, rep=200, return_mode="median"
    )
    del a, c
    return 2 * nbytes / (ms * 1e-3) / 1e9


# ---- providers ------------------------------------------------------------------------------------


def torch_topk(h, W, b, k):
    s = torch.addmm(b, h, W.T) if b is not None else h @ W.T
    return torch.topk(s, k, dim=1)


def make_rotating(fn, h, bufs, b, k, **kw):
    """A zero-arg callable ``fn(h, W, b, k, **kw)`` that takes the next W buffer on each call."""
    it = itertools.cycle(bufs)
    return lambda: fn(h, next(it), b, k, **kw)


# ---- the table -------------------------------------------------------------------------------------


def row_plan(quick: bool) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """[(N, d, [(B, k), ...])] in priority order: targets first, then the rest of the grid."""
    Bk_small = [(1, 100), (16, 100), (1, 10), (16, 10)]
    Bk_all = Bk_small + [(256, 100), (256, 10)]
    if quick:
        return [
            (1_000_000, 1024, [(1, 100), (16, 100), (16, 10)]),
            (100_000, 64, [(1, 10), (256, 10)]),
        ]
    return [
        (1_000_000, 1024, Bk_all),
        (1_000_000, 64, Bk_all),
        (1_000_000, 256, Bk_all),
        (1_000_000, 4096, Bk_all),
        (10_000_000, 1024, Bk_small),
        (10_000_000, 256, Bk_small),
        (10_000_000, 64, Bk_small),
        (100_000, 64, Bk_all),
        (100_000, 256, Bk_all),
        (100_000, 1024, Bk_all),
        (100_000, 4096, Bk_all),
        (10_000_000, 4096, Bk_small),
        (10_000_000, 1024, [(256, 100), (256, 10)]),
    ]


def rank_with(h, W, b, k, method):
    from lite_export.kernels import rank

    return rank(h, W, b, k, method=method)


def rank_quantized_with(h, pair, b, k):
    """``pair`` = (W, its QuantizedCatalog): the fused quantized path through kernels.rank."""
    from lite_export.kernels import rank

    W, cat = pair
    return rank(h, W, None, k, catalog=cat)


#: provider -> rank path, for the rank table this run builds.
PROVIDER_PATH = {"rank-torch": "torch", "triton-exact": "exact"}
#: auto must reach this fraction of the best other path's speed at every grid point.
AUTO_TARGET = 0.98


def _path_ms(res: dict) -> dict[str, float]:
    """{rank path: median ms} of the correct path rows of one grid point."""
    out = {}
    for prov, r in res.items():
        if not r.get("median_ms") or r.get("error") or r.get("correct") is False:
            continue
        if prov in PROVIDER_PATH:
            out[PROVIDER_PATH[prov]] = r["median_ms"]
        elif prov == "triton" and not r.get("fallback_rows"):
            out[r.get("method", "filter")] = r["median_ms"]
    return out


def table_row(res: dict, N, d, B, k, dtype):
    from lite_export.kernels.dispatch import TableRow, dtype_name

    return TableRow(N=N, d=d, B=B, k=k, dtype=dtype_name(dtype), exclude=0, ms=_path_ms(res))


def judge_auto(res: dict, trow, N, d, B, k, dtype) -> None:
    """Fill the auto row's comparison with the best other path (and the defaults' choice)."""
    from lite_export.kernels.dispatch import defaults

    auto = res.get("auto")
    ms = _path_ms({p: r for p, r in res.items() if p != "auto"})
    if not auto or not auto.get("median_ms") or not ms:
        return
    best = min(ms, key=ms.get)
    auto["best_other"] = best
    auto["best_other_ms"] = ms[best]
    auto["auto_vs_best"] = round(ms[best] / auto["median_ms"], 3)
    auto["auto_ok"] = bool(auto["auto_vs_best"] >= AUTO_TARGET and auto.get("correct"))
    allowed = tuple(ms)
    default = defaults().choose(B, N, d, k, dtype, False, ("torch", "filter", "exact"))
    auto["default_path"] = default
    if default in ms:
        auto["default_vs_best"] = round(ms[best] / ms[default], 3)
    auto["table_paths"] = list(allowed)


def run_gpu(args) -> list[dict]:
    from lite_export.kernels import fused as tp_mod  # noqa: F401 - import check first
    from lite_export.kernels.fused import (
        FILTER_MIN_N,
        STATS,
        heuristic_config,
        plan_launch,
        sample_bound,
        topk_projection,
    )

    device = DEV
    dtype = DTYPES[args.dtype]
    esize = torch.tensor([], dtype=dtype).element_size()
    props = torch.cuda.get_device_properties(0)
    machine = (
        f"{props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB)"
    )
    l2 = getattr(props, "L2_cache_size", 50 << 20) or (50 << 20)
    bw = copy_bandwidth_gbs(device)
    print(
        f"# {machine}; copy bandwidth {bw:.0f} GB/s (read+write); L2 {l2 / 2**20:.0f} MiB",
        flush=True,
    )
    base = {"machine": machine, "commit": commit(), **versions(), "copy_GB_s": round(bw, 1)}
    rows: list[dict] = []
    t_start = time.perf_counter()
    arch = "hopper" if props.major >= 9 else "ampere"
    from lite_export import kernels
    from lite_export.kernels import dispatch

    gpu, tv, trv = dispatch.table_key(torch.device(device))
    run_table = dispatch.RankTable(gpu, tv, trv, [], source="bench_topk_projection.py (this run)")

    for N, d, Bks in row_plan(args.quick):
        if time.perf_counter() - t_start > args.budget_s:
            print(
                f"# budget of {args.budget_s:.0f} s reached: skipping N={N}, d={d} and later rows",
                flush=True,
            )
            rows.append({**base, "provider": "skipped", "N": N, "d": d, "note": "time budget"})
            continue
        w_bytes = N * d * esize
        free, _ = torch.cuda.mem_get_info()
        max_B = max(B for B, _ in Bks)
        need = w_bytes + 2 * max_B * N * esize + (1 << 30)  # W + torch's [B, N] scores + slack
        if need > 0.85 * free:
            note = f"needs ~{need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free"
            print(f"# skip N={N} d={d}: {note}", flush=True)
            rows.append({**base, "provider": "skipped", "N": N, "d": d, "note": note})
            continue
        W = random_table(N, d, dtype, device, seed=N + d)
        b = torch.randn(N, device=device).to(dtype)
        n_rot = 1 if w_bytes >= 4 * l2 else min(8, math.ceil(4 * l2 / w_bytes))
        bufs = [W] + [random_table(N, d, dtype, device, seed=N + d + r) for r in range(1, n_rot)]
        cats = {}  # precision -> [(W, catalog)] beside bufs, built on first use
        for B, k in Bks:
            if time.perf_counter() - t_start > args.budget_s:
                break
            h = torch.randn(B, d, device=device).to(dtype)
            common = {
                **base,
                "N": N,
                "d": d,
                "B": B,
                "k": k,
                "dtype": args.dtype,
                "rotated_W": n_rot,
            }
            nbytes = w_bytes + N * esize
            res: dict[str, dict] = {}
            provs = ["torch", "rank-torch", "triton"]
            if (N, d) in EXACT_COMPARE and B <= 16:
                provs.append("triton-exact")  # the running-top-K path, same run
            if (N, d) in QUANT_COMPARE and B <= 16:
                provs += ["triton-int8", "triton-fp8"]
            provs.append("auto")  # last: its table row is what was just measured
            for prov in provs:
                row = {**common, "provider": prov}
                try:
                    if prov == "auto":
                        run_table.rows.append(table_row(res, N, d, B, k, dtype))
                        dispatch.use_table(run_table)  # forget cached decisions
                    if prov in ("rank-torch", "auto"):
                        method = "torch" if prov == "rank-torch" else "auto"
                        row["method"] = kernels.resolve_method(method, h, W, k)
                        scores, ids = kernels.rank(h, W, b, k, method=method)
                        ok, err, note = check_against_fp32(h, W, b, k, scores, ids)
                        row.update(correct=ok, max_abs_err=err, **({"note": note} if note else {}))
                        fn = make_rotating(rank_with, h, bufs, b, k, method=method)
                        med, p99, n = bench_gpu(fn, rep_ms=args.rep_ms)
                    elif prov in ("triton-int8", "triton-fp8"):
                        from lite_export.kernels import quantize_catalog

                        precision = prov.split("-")[1]
                        if precision not in cats:
                            cats[precision] = [(w, quantize_catalog(w, b, precision)) for w in bufs]
                        pairs = cats[precision]
                        fell_back = STATS.get("quantized_fallback_rows", 0)
                        scores, ids = rank_quantized_with(h, pairs[0], b, k)
                        ok, err, note = check_against_fp32(h, W, b, k, scores, ids)
                        row.update(
                            correct=ok,
                            max_abs_err=err,
                            method="filter",
                            **({"note": note} if note else {}),
                        )
                        fn = make_rotating(rank_quantized_with, h, pairs, b, k)
                        med, p99, n = bench_gpu(fn, rep_ms=args.rep_ms)
                        row["fallback_rows"] = STATS.get("quantized_fallback_rows", 0) - fell_back
                        row.update(timing_fields(med, p99, n, N * d + 16 * N, bw))
                        res[prov] = row
                        rows.append(row)
                        continue
                    elif prov.startswith("triton"):
                        method = "exact" if prov == "triton-exact" or N < FILTER_MIN_N else "filter"
                        cfg = heuristic_config(B, d, k, dtype, arch, method)
                        plan = plan_launch(
                            B, N, d, k, cfg, props.multi_processor_count, method=method
                        )
                        row.update(config=cfg.short(), chunks=plan.chunks, method=method)
                        fell_back = STATS["filter_fallback_rows"]
                        t0 = time.perf_counter()
                        scores, ids = topk_projection(h, W, b, k, method=method)
                        torch.cuda.synchronize()
                        row["first_call_s"] = round(time.perf_counter() - t0, 2)  # incl. compile
                        ok, err, note = check_against_fp32(h, W, b, k, scores, ids)
                        row["correct"] = ok
                        row["max_abs_err"] = err
                        if note:
                            row["note"] = note
                        fn = make_rotating(topk_projection, h, bufs, b, k, method=method)
                        med, p99, n = bench_gpu(fn, rep_ms=args.rep_ms)
                        row["fallback_rows"] = STATS["filter_fallback_rows"] - fell_back
                        if method == "filter" and (N, d) in EXACT_COMPARE:
                            ms, _, _ = bench_gpu(
                                make_rotating(sample_bound, h, bufs, b, k), rep_ms=20
                            )
                            row["sample_ms"] = round(ms, 4)
                    else:
                        fn = make_rotating(torch_topk, h, bufs, b, k)
                        med, p99, n = bench_gpu(fn, rep_ms=args.rep_ms)
                    row.update(timing_fields(med, p99, n, nbytes, bw))
                except Exception as e:  # record and go on: one bad config must not end the run
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                    traceback.print_exc()
                    torch.cuda.empty_cache()
                res[prov] = row
                rows.append(row)
            t_ms = res.get("torch", {}).get("median_ms")
            for r in res.values():
                if t_ms and r.get("median_ms"):
                    r["speedup_vs_torch"] = round(t_ms / r["median_ms"], 2)
            judge_auto(res, run_table.rows[-1] if run_table.rows else None, N, d, B, k, dtype)
            tri = res.get("triton", {})
            if "triton-exact" in res:
                ex_row = res["triton-exact"]
                print(
                    f"  exact path {ex_row.get('median_ms', float('nan')):8.3f} ms, filter sample "
                    f"{tri.get('sample_ms', float('nan'))} ms, fallback rows {tri.get('fallback_rows')}",
                    flush=True,
                )
            print(
                f"N={N:>9} d={d:>5} B={B:>4} k={k:>4}  triton {tri.get('median_ms', float('nan')):8.3f} ms "
                f"({tri.get('roofline_pct', float('nan')):5.1f}% roof, x{tri.get('speedup_vs_torch', float('nan')):.2f}, "
                f"correct={tri.get('correct')})  torch {t_ms if t_ms else float('nan'):8.3f} ms "
                f"{tri.get('error', '')}",
                flush=True,
            )
        del W, b, bufs, cats
        torch.cuda.empty_cache()
        write_outputs(rows, args.out, "topk_gpu", png=False)  # a cut run keeps what it measured

    rows += run_exclusion_rows(args, base, dtype, esize, bw, arch)
    rows += run_sweep(args, base, dtype, esize, bw, arch)
    return rows


def run_exclusion_rows(args, base, dtype, esize, bw, arch) -> list[dict]:
    """Cost of in-kernel history exclusion (H=200 ids per row) on two target shapes."""
    from lite_export.kernels.fused import topk_projection

    rows = []
    for N, d, B, k in EXCLUSION_SHAPES[:1] if args.quick else EXCLUSION_SHAPES:
        row = {**base, "provider": "triton+exclude200", "N": N, "d": d, "B": B, "k": k}
        row["dtype"] = args.dtype
        try:
            W = random_table(N, d, dtype, DEV, seed=7)
            b = torch.randn(N, device=DEV).to(dtype)
            h = torch.randn(B, d, device=DEV).to(dtype)
            ex = torch.randint(0, N, (B, 200), device=DEV)
            ex[:, :50] = -1  # padding
            scores, ids = topk_projection(h, W, b, k, ex)
            banned = [set(r) - {-1} for r in ex.tolist()]
            clean = all(not (banned[i] & set(ids[i].tolist())) for i in range(B))
            med, p99, n = bench_gpu(
                functools.partial(topk_projection, h, W, b, k, ex), rep_ms=args.rep_ms
            )
            nbytes = N * d * esize + N * esize
            row.update(timing_fields(med, p99, n, nbytes, bw), correct=clean)
            print(
                f"exclude H=200 N={N} d={d} B={B} k={k}: {med:.3f} ms, excluded ids absent={clean}",
                flush=True,
            )
            del W, b
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            traceback.print_exc()
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def run_sweep(args, base, dtype, esize, bw, arch) -> list[dict]:
    """Every fitting config, and chunk counts for the heuristic one, on key shapes."""
    from lite_export.kernels.fused import (
        _fits,
        get_autotune_configs,
        heuristic_config,
        plan_launch,
        topk_projection,
    )

    if args.sweep_budget_s <= 0:
        return []
    rows: list[dict] = []
    t0 = time.perf_counter()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for N, d, B, k in SWEEP_SHAPES:
        W = random_table(N, d, dtype, DEV, seed=11)
        b = torch.randn(N, device=DEV).to(dtype)
        h = torch.randn(B, d, device=DEV).to(dtype)
        nbytes = N * d * esize + N * esize
        heur = heuristic_config(B, d, k, dtype, arch, "filter")
        trials = [("stage1", None), ("eager", None)]
        trials += [
            (c, None) for c in get_autotune_configs(arch, "filter") if _fits(c, B, k, "filter")
        ]
        trials += [(heur, w) for w in (1, 2, 8, 16)]
        for cfg, waves in trials:
            if cfg in ("stage1", "eager"):
                rows.append(time_parts(cfg, base, args, h, W, b, k, heur, nbytes, bw))
                continue
            if time.perf_counter() - t0 > args.sweep_budget_s:
                break
            row = {
                **base,
                "provider": "triton-sweep",
                "N": N,
                "d": d,
                "B": B,
                "k": k,
                "dtype": args.dtype,
                "config": cfg.short(),
                "heuristic": cfg == heur,
                "waves": waves or cfg.waves,
            }
            try:
                plan = functools.partial(plan_launch, B, N, d, k, cfg, sms, method="filter")
                chunks = plan(waves=waves).chunks if waves else None
                row["chunks"] = chunks or plan().chunks
                kw = {"method": "filter", "config": cfg, "chunks": chunks}
                scores, ids = topk_projection(h, W, b, k, **kw)
                ok, err, _ = check_against_fp32(h, W, b, k, scores, ids)
                fn = functools.partial(topk_projection, h, W, b, k, **kw)
                med, p99, n = bench_gpu(fn, rep_ms=50)
                row.update(timing_fields(med, p99, n, nbytes, bw))
                row["correct"] = ok
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            rows.append(row)
            print(
                f"sweep N={N} d={d} B={B} k={k} {row['config']:>22} waves={row['waves']:>2} chunks={row.get('chunks')}: "
                f"{row.get('median_ms', float('nan')):.3f} ms {row.get('roofline_pct', float('nan')):5.1f}% "
                f"correct={row.get('correct')} {row.get('error', '')}",
                flush=True,
            )
        del W, b
        torch.cuda.empty_cache()
    return rows


def time_parts(part, base, args, h, W, b, k, cfg, nbytes, bw) -> dict:
    """Where the time goes: the stage-1 kernel alone (bound precomputed), or the whole filter
    path without its CUDA graph (every op issued from Python)."""
    from lite_export.kernels import fused as tp

    B, d = h.shape
    N = W.shape[0]
    row = {**base, "provider": f"triton-{part}", "N": N, "d": d, "B": B, "k": k}
    row.update(dtype=args.dtype, config=cfg.short(), heuristic=True, waves=cfg.waves)
    try:
        if part == "stage1":
            thr, cap = tp.sample_bound(h, W, b, k)
            cnt = torch.zeros(B, dtype=torch.int32, device=DEV)
            buf = torch.empty((B, cap), dtype=torch.int64, device=DEV)

            def fn():
                cnt.zero_()
                tp._launch_planned(h, W, b, k, None, cfg, True, None, "filter", (thr, cnt, buf))

        else:
            fn = functools.partial(tp.topk_projection, h, W, b, k, cuda_graph=False)
        med, p99, n = bench_gpu(fn, rep_ms=50)
        row.update(timing_fields(med, p99, n, nbytes, bw))
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    print(
        f"{part} N={N} d={d} B={B} k={k}: {row.get('median_ms', float('nan')):.3f} ms "
        f"{row.get('roofline_pct', float('nan')):5.1f}% {row.get('error', '')}",
        flush=True,
    )
    return row


# ---- output ---------------------------------------------------------------------------------------


def write_outputs(rows: list[dict], out: Path, stem: str, png: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    main = [
        r
        for r in rows
        if r.get("provider")
        in (
            "triton",
            "triton-exact",
            "triton-int8",
            "triton-fp8",
            "torch",
            "rank-torch",
            "auto",
            "triton+exclude200",
        )
    ]
    lines = [
        f"# Fused projection + top-K vs torch ({rows[0].get('machine', '?') if rows else '?'})",
        "",
        f"commit {rows[0].get('commit') if rows else '?'}, torch {rows[0].get('torch') if rows else '?'}, "
        f"triton {rows[0].get('triton') if rows else '?'}; copy bandwidth {rows[0].get('copy_GB_s') if rows else '?'} GB/s "
        "(read+write). Bytes = N*d*esize (W) + N*esize (bias); triton-int8/fp8 (quantized catalog, exact "
        "re-rank from W): N*d + 16*N. Median / p99 over do_bench samples.",
        "ONNX Runtime and faiss are CPU-only and not run here: see topk_cpu.md.",
        "",
        "| N | d | B | k | provider | method | config | median ms | p99 ms | GB/s | % roofline | x torch | correct | fallback rows | sample ms |",
        "|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in main:
        lines.append(
            f"| {r.get('N')} | {r.get('d')} | {r.get('B')} | {r.get('k')} | {r['provider']} | {r.get('method', '')} | {r.get('config', '')} | "
            f"{r.get('median_ms', r.get('error', ''))} | {r.get('p99_ms', '')} | {r.get('GB_s', '')} | "
            f"{r.get('roofline_pct', '')} | {r.get('speedup_vs_torch', '')} | {r.get('correct', '')} | "
            f"{r.get('fallback_rows', '')} | {r.get('sample_ms', '')} |"
        )
    autos = [r for r in rows if r.get("provider") == "auto" and "auto_vs_best" in r]
    if autos:
        ok = sum(1 for r in autos if r.get("auto_ok"))
        lines += [
            "",
            '## method="auto"',
            "",
            f"`auto` reached >= {AUTO_TARGET} x the best other correct path at {ok} of "
            f"{len(autos)} grid points. Its table: this run's medians of the paths at each point "
            "(as `lite tune --gpu` would store); `default`: what the shipped defaults "
            "(rank_defaults.json) pick there, and the best path's median over that path's.",
            "",
            "| N | d | B | k | auto path | auto ms | best other | best ms | auto vs best | ok | default | default vs best |",
            "|---:|---:|---:|---:|---|---:|---|---:|---:|---|---|---:|",
        ]
        for r in autos:
            lines.append(
                f"| {r['N']} | {r['d']} | {r['B']} | {r['k']} | {r.get('method')} | "
                f"{r['median_ms']} | {r['best_other']} | {r['best_other_ms']} | "
                f"{r['auto_vs_best']} | {r['auto_ok']} | {r.get('default_path')} | "
                f"{r.get('default_vs_best', '')} |"
            )
    skipped = [r for r in rows if r.get("provider") == "skipped"]
    if skipped:
        lines += [
            "",
            "Skipped: " + "; ".join(f"N={r['N']} d={r['d']} ({r['note']})" for r in skipped),
        ]
    sweep = [
        r for r in rows if r.get("provider") in ("triton-sweep", "triton-stage1", "triton-eager")
    ]
    if sweep:
        lines += [
            "",
            "## Config sweep",
            "",
            "Filter path, bf16. `triton-stage1`: the stage-1 kernel alone (bound precomputed); "
            "`triton-eager`: the whole call without its CUDA graph.",
            "",
            "| N | d | B | k | what | config | heuristic | waves | chunks | median ms | % roofline | correct |",
            "|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in sweep:
            lines.append(
                f"| {r['N']} | {r['d']} | {r['B']} | {r['k']} | {r['provider']} | {r['config']} | {r['heuristic']} | {r['waves']} | "
                f"{r.get('chunks', '')} | {r.get('median_ms', r.get('error', ''))} | {r.get('roofline_pct', '')} | {r.get('correct', '')} |"
            )
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    if not png:
        return
    try:
        plot(main, out / f"{stem}.png")
    except Exception as e:  # matplotlib missing or headless trouble: the table is what matters
        print(f"# plot skipped: {type(e).__name__}: {e}", flush=True)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tri = [r for r in rows if r.get("provider") == "triton" and r.get("median_ms")]
    tor = {
        (r["N"], r["d"], r["B"], r["k"]): r
        for r in rows
        if r.get("provider") == "torch" and r.get("median_ms")
    }
    if not tri:
        return
    labels = [f"N={r['N'] // 1000}k d={r['d']} B={r['B']} k={r['k']}" for r in tri]
    x = range(len(tri))
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(10, 0.35 * len(tri)), 9), sharex=True)
    a1.bar([i - 0.2 for i in x], [r["roofline_pct"] for r in tri], width=0.4, label="fused triton")
    a1.bar(
        [i + 0.2 for i in x],
        [tor.get((r["N"], r["d"], r["B"], r["k"]), {}).get("roofline_pct", 0) for r in tri],
        width=0.4,
        label="torch matmul+topk",
    )
    a1.axhline(70, color="gray", ls="--", lw=0.8)
    a1.set_ylabel("% of copy bandwidth (bytes = W + bias)")
    a1.legend()
    a2.bar(list(x), [r.get("speedup_vs_torch", 0) for r in tri], color="tab:green")
    a2.axhline(1.0, color="gray", lw=0.8)
    a2.axhline(1.5, color="gray", ls="--", lw=0.8)
    a2.set_ylabel("speed-up over torch")
    a2.set_xticks(list(x))
    a2.set_xticklabels(labels, rotation=90, fontsize=7)
    fig.suptitle(f"{tri[0].get('machine', '')} - {tri[0].get('dtype')} table")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="a handful of rows (smoke test)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument(
        "--budget-s",
        type=float,
        default=200.0,
        help="stop adding table rows after this many seconds",
    )
    p.add_argument(
        "--sweep-budget-s", type=float, default=40.0, help="seconds for the config sweep (0: skip)"
    )
    p.add_argument("--rep-ms", type=int, default=100, help="do_bench rep time per measurement")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    args = p.parse_args(argv)
    if args.device == "cpu":
        from benchmarks.bench_topk_cpu import main as cpu_main

        return cpu_main(["--out", str(args.out)] + (["--quick"] if args.quick else []))
    if not torch.cuda.is_available():
        print("no CUDA device: use --device cpu", file=sys.stderr)
        return 2
    rows = run_gpu(args)
    write_outputs(rows, args.out, "topk_gpu")
    print((args.out / "topk_gpu.md").read_text())
    ok = [r for r in rows if r.get("provider") == "triton"]
    autos = [r for r in rows if r.get("provider") == "auto"]
    summary = {
        "rows": len(rows),
        "triton_rows": len(ok),
        "triton_correct": sum(1 for r in ok if r.get("correct")),
        "triton_errors": sum(1 for r in ok if r.get("error")),
        "auto_rows": len(autos),
        "auto_ok": sum(1 for r in autos if r.get("auto_ok")),
        "auto_min_vs_best": min(
            (r["auto_vs_best"] for r in autos if "auto_vs_best" in r), default=None
        ),
        "out": str(args.out),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
