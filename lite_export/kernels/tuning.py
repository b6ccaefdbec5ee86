"""Measure the ranking paths on this GPU and store the rank table ``method="auto"`` reads.

``lite tune --gpu`` calls :func:`tune_and_save`: for every shape of a :class:`Grid` it times
each path of :func:`lite_export.kernels.rank` (``"torch"``, ``"filter"``, ``"exact"``) on random
N(0, 1) tables (never zeros), checks each path's top-k against the ``"torch"`` path's (gathered
fp32 scores, so ties do not matter), and keeps the median time of every path that was correct.
The table is written where :func:`lite_export.kernels.dispatch.table_for` finds it: one file per
GPU name + torch version + Triton version under the cache directory.

Timing: ``triton.testing.do_bench`` (CUDA events, L2 flushed before each sample), median and p99
over ``rep_ms`` of samples after a warm-up. Exclusion, when the grid asks for it, is ``E`` random
ids per row. Needs CUDA: :class:`NoCudaError` says so otherwise.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lite_export.kernels import dispatch
from lite_export.kernels.dispatch import PATHS, RankTable, TableRow, dtype_name

__all__ = [
    "DEFAULT_GRID",
    "Grid",
    "NoCudaError",
    "grid_for_artifact",
    "measure_point",
    "require_cuda",
    "tune_and_save",
    "tune_rank_table",
]


class NoCudaError(RuntimeError):
    """The GPU tuner was asked for where torch sees no CUDA device."""


@dataclass(frozen=True)
class Grid:
    """The shapes the tuner measures: every combination of the fields."""

    N: tuple[int, ...] = (100_000, 1_000_000)
    d: tuple[int, ...] = (64, 256, 1024)
    B: tuple[int, ...] = (1, 16, 64, 256)
    k: tuple[int, ...] = (10, 100)
    exclude: tuple[int, ...] = (0,)
    dtype: str = "bfloat16"

    def points(self) -> list[tuple[int, int, int, int, int]]:
        """(N, d, B, k, exclude) in measuring order: one table (N, d) at a time."""
        return list(itertools.product(self.N, self.d, self.B, self.k, self.exclude))


#: What ``lite tune --gpu`` measures without an artifact: 48 shapes, about a minute on an H200.
DEFAULT_GRID = Grid()


def grid_for_artifact(dims: dict, precision: str = "fp32", batches=(1, 4, 16, 64, 256)) -> Grid:
    """The grid for one exported artifact: its catalog size, width and table dtype; the batch
    sizes a server meets; k of 10 and the artifact's K; no exclusion and a full history."""
    ks = tuple(sorted({min(10, int(dims["k"])), int(dims["k"])}))
    return Grid(
        N=(int(dims["num_items"]),),
        d=(int(dims["d_model"]),),
        B=tuple(batches),
        k=ks,
        exclude=(0, int(dims["max_history"])),
        dtype=dtype_name(precision),
    )


def require_cuda(what: str = "lite tune --gpu") -> torch.device:
    """The current CUDA device, or :class:`NoCudaError` saying what is missing and what to do."""
    if not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"built for CUDA {torch.version.cuda}, but no device is visible"
        )
        raise NoCudaError(
            f"{what} measures the ranking paths on a CUDA GPU, and torch sees none here (torch "
            f"{torch.__version__}, {build}). Run it on the machine that will serve; without a "
            "measured table, kernels.rank(method='auto') uses the defaults derived from H200 "
            f"measurements ({dispatch.DEFAULTS_PATH.name})."
        )
    return torch.device("cuda", torch.cuda.current_device())


def _time_ms(fn: Callable[[], object], rep_ms: float) -> tuple[float, float]:
    """(median ms, p99 ms) of ``fn`` on the GPU."""
    try:
        import triton.testing

        times = triton.testing.do_bench(fn, warmup=10, rep=rep_ms, return_mode="all")
    except ImportError:  # no Triton: CUDA events around each call
        fn()
        torch.cuda.synchronize()
        times = []
        t_end = time.perf_counter() + rep_ms / 1e3
        while time.perf_counter() < t_end or len(times) < 10:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    t = torch.tensor(times, dtype=torch.float64)
    return float(t.median()), float(torch.quantile(t, 0.99))


def _agrees(h, W, b, k, ref_scores, scores, ids, exclude) -> bool:
    """``(scores, ids)`` is a correct top-k: ids distinct and in range, not excluded, each score
    the fp32 score of its id, and the scores equal the reference top-k values (up to ties)."""
    B, d = h.shape
    N = W.shape[0]
    atol = rtol = 1e-4 if W.dtype == torch.float32 else 1e-3
    if ids.shape != (B, k) or int(ids.min()) < 0 or int(ids.max()) >= N:
        return False
    srt = torch.sort(ids, dim=1).values
    if bool((srt[:, 1:] == srt[:, :-1]).any()):
        return False
    if exclude is not None and bool((ids.unsqueeze(2) == exclude.unsqueeze(1)).any()):
        return False
    g = torch.bmm(W[ids.reshape(-1)].float().view(B, k, d), h.float().unsqueeze(2)).squeeze(2)
    if b is not None:
        g += b[ids].float()
    fin = torch.isfinite(ref_scores)
    return bool(torch.isclose(scores[fin], g[fin], atol=atol, rtol=rtol).all()) and bool(
        torch.isclose(scores[fin], ref_scores[fin], atol=atol, rtol=rtol).all()
    )


def measure_point(
    h: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    k: int,
    exclude: torch.Tensor | None = None,
    paths: tuple[str, ...] = PATHS,
    rep_ms: float = 25,
) -> dict[str, dict]:
    """Time and check each path of ``kernels.rank`` on these inputs.

    Returns ``{path: {"median_ms", "p99_ms", "correct"}}``, or ``{"error": ...}`` for a path that
    raised. ``"torch"`` is the reference the others are checked against.
    """
    from lite_export.kernels import rank

    out: dict[str, dict] = {}
    ref = rank(h, W, b, k, exclude, method="torch")
    for path in paths:
        try:
            scores, ids = rank(h, W, b, k, exclude, method=path)
            ok = path == "torch" or _agrees(h, W, b, k, ref[0], scores, ids, exclude)
            med, p99 = _time_ms(lambda p=path: rank(h, W, b, k, exclude, method=p), rep_ms)
            out[path] = {"median_ms": med, "p99_ms": p99, "correct": ok}
        except Exception as exc:  # a path that cannot run this shape is not a candidate here
            out[path] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


def _random_table(N: int, d: int, dtype: torch.dtype, device, seed: int) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    W = torch.empty(N, d, dtype=dtype, device=device)
    step = max(1, (1 << 26) // max(d, 1))
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        W[lo:hi] = torch.randn(hi - lo, d, generator=g, device=device).to(dtype)
    return W


def tune_rank_table(
    grid: Grid = DEFAULT_GRID,
    *,
    rep_ms: float = 25,
    budget_s: float = 600,
    log: Callable[[str], None] | None = print,
) -> RankTable:
    """Measure ``grid`` on the current CUDA device; returns the table (not saved)."""
    device = require_cuda()
    from lite_export.kernels import triton_available

    paths = PATHS if triton_available() else ("torch",)
    if log and paths == ("torch",):
        log("Triton does not import here: measuring the torch path only")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        dtype_name(grid.dtype)
    ]
    esize = torch.tensor([], dtype=dtype).element_size()
    rows: list[TableRow] = []
    start = time.perf_counter()
    skipped = 0
    with dispatch.device_guard(device):
        for (N, d), points in itertools.groupby(grid.points(), key=lambda p: p[:2]):
            points = list(points)
            if time.perf_counter() - start > budget_s:
                skipped += len(points)
                continue
            free, _ = torch.cuda.mem_get_info(device)
            need = N * d * esize + 2 * max(p[2] for p in points) * N * 4 + (256 << 20)
            if need > 0.85 * free:
                if log:
                    log(f"skip N={N} d={d}: needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} free")
                skipped += len(points)
                continue
            W = _random_table(N, d, dtype, device, seed=N + d)
            b = torch.randn(N, device=device).to(dtype)
            for _, _, B, k, E in points:
                if time.perf_counter() - start > budget_s:
                    skipped += 1
                    continue
                if k > N:
                    continue
                h = torch.randn(B, d, device=device).to(dtype)
                ex = torch.randint(0, N, (B, E), device=device) if E else None
                res = measure_point(h, W, b, k, ex, paths, rep_ms)
                ms = {
                    p: r["median_ms"]
                    for p, r in res.items()
                    if r.get("correct") and "median_ms" in r
                }
                if "torch" not in ms:
                    continue
                row = TableRow(N=N, d=d, B=B, k=k, dtype=dtype_name(dtype), exclude=E, ms=ms)
                rows.append(row)
                if log:
                    bad = {p: r.get("error", "wrong top-k") for p, r in res.items() if p not in ms}
                    times = "  ".join(f"{p} {t:.4f} ms" for p, t in ms.items())
                    log(
                        f"N={N:>9} d={d:>5} B={B:>4} k={k:>4} exclude={E:>4}: {times} -> "
                        f"{row.best}" + (f"  (left out: {bad})" if bad else "")
                    )
            del W, b
            torch.cuda.empty_cache()
    if not rows:
        raise RuntimeError(
            f"no shape of the grid could be measured in {budget_s:.0f} s on "
            f"{torch.cuda.get_device_name(device)} (skipped {skipped}); raise --budget-s or "
            "use smaller shapes"
        )
    gpu, tv, trv = dispatch.table_key(device)
    return RankTable(
        gpu=gpu,
        torch=tv,
        triton=trv,
        rows=rows,
        source="lite tune --gpu",
        created=dispatch.now_utc(),
        notes=f"do_bench median over {rep_ms:g} ms per path; {skipped} shape(s) skipped"
        if skipped
        else f"do_bench median over {rep_ms:g} ms per path",
    )


def tune_and_save(
    grid: Grid = DEFAULT_GRID,
    path: str | Path | None = None,
    *,
    rep_ms: float = 25,
    budget_s: float = 600,
    log: Callable[[str], None] | None = print,
) -> tuple[RankTable, Path]:
    """:func:`tune_rank_table`, then write it (default: where ``method="auto"`` finds it on
    this GPU) and make this process use it. Returns ``(table, path)``."""
    table = tune_rank_table(grid, rep_ms=rep_ms, budget_s=budget_s, log=log)
    if path is None:
        path = dispatch.table_path((table.gpu, table.torch, table.triton))
    written = table.save(path)
    dispatch.use_table(None)  # forget cached decisions: the next lookup reads the new file
    return table, written


def speedup_summary(table: RankTable) -> str:
    """How often each path won, and the geometric-mean gain of the winner over torch."""
    wins: dict[str, int] = {}
    gains = []
    for r in table.rows:
        wins[r.best] = wins.get(r.best, 0) + 1
        gains.append(r.ms["torch"] / r.ms[r.best])
    gm = math.exp(sum(math.log(g) for g in gains) / len(gains)) if gains else 1.0
    return (
        "fastest: "
        + ", ".join(f"{p} at {n} shape(s)" for p, n in wins.items())
        + f"; the winner over torch: {gm:.2f}x (geometric mean)"
    )


def tune_gpu_cli(artifact: str | Path | None = None, budget_s: float = 600) -> str:
    """``lite tune --gpu [ARTIFACT]``: measure, save, and return the report to print."""
    require_cuda()
    grid = DEFAULT_GRID
    if artifact is not None:
        from lite_export.artifact import read_manifest

        manifest = read_manifest(Path(artifact))
        grid = grid_for_artifact(
            manifest["dims"], manifest.get("dtypes", {}).get("compute", "fp32")
        )
    table, path = tune_and_save(grid, budget_s=budget_s)
    return (
        f"{speedup_summary(table)}\n"
        f"written: {path}\n"
        f"kernels.rank(method='auto') and the PyTorch engine use it on this GPU "
        f"({table.gpu}, torch {table.torch}, triton {table.triton})"
    )
