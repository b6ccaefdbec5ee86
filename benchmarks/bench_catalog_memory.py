"""Memory of a quantized catalog on a CPU: resident bytes of each ranking path, one process each.

    python benchmarks/bench_catalog_memory.py            # writes benchmarks/results/catalog_memory.{json,md}
    python benchmarks/bench_catalog_memory.py --quick --out /tmp/r

For a random head ``W [N, d]``, ``b [N]`` written as an artifact writes it (``head.safetensors``,
fp32; ``catalog.safetensors``, the int8 catalog; the two ONNX heads), each path runs in a fresh
Python process that loads its files, ranks ``--calls`` batches of ``B`` random queries (k = 10,
history excluded) and reports its resident set (``VmRSS``, which counts the resident pages of
memory-mapped files) before loading, after loading and after ranking, and its peak
(``VmHWM``), from ``/proc/self/status``:

* ``rank_cpu`` -- the PyTorch engine's default: the fp32 head (``safetensors`` maps the file,
  and every call reads all of it);
* ``rank_quantized-int8`` -- ``TorchEngine(catalog="quantized")``: the int8 catalog in RAM, the
  head still mapped but read only at the re-rank's candidate rows;
* ``onnxruntime`` -- an ONNX Runtime session of the fp32 MatMul + TopK head;
* ``onnxruntime-int8`` -- a session of the int8 head of ``lite export --catalog-precision int8``
  (integer-matmul bounds, exact re-rank, rescue; it holds the int8 table and the fp32 rows).

The delta ``ranked - before`` is what the path costs; the fp32 table's own size is beside it.
Every path's ids are checked against ``rank_cpu``'s (``agrees``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODES = ("rank_cpu", "rank_quantized-int8", "onnxruntime", "onnxruntime-int8")
K = 10


def _status(directory: Path) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon (bytes) and ``files``: resident bytes of the mappings of the
    files in ``directory`` (``/proc/self/smaps``)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    files, current = 0, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's first line
            current = head[5] if len(head) > 5 else ""
        elif line.startswith("Rss:") and current and current.startswith(str(directory)):
            files += int(line.split()[1]) * 1024
    out["files"] = files
    return out


def _drop_page_cache(directory: Path) -> None:
    """Start cold: evict the files of ``directory`` from the page cache (they are clean: the
    parent fsyncs them), so a mapping holds only what this process reads."""
    for f in directory.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_inputs(directory: Path, N: int, d: int, seed: int = 0) -> None:
    """head.safetensors, catalog.safetensors and the two ONNX heads (external data)."""
    import onnx
    import torch
    from safetensors.torch import save_file

    from lite_export.exporters import quantized_graph as QG
    from lite_export.kernels import quantize_catalog

    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, d, generator=g)
    b = torch.randn(N, generator=g)
    save_file({"weight": W, "bias": b}, str(directory / "head.safetensors"))
    save_file(quantize_catalog(W, b).state_dict(), str(directory / "catalog.safetensors"))
    t = QG.head_tables(W, b)
    calib = torch.randn(64, d, generator=torch.Generator().manual_seed(seed + 1))
    from lite_export.kernels import rank_cpu

    kth = rank_cpu(calib, W, b, K)[0][:, -1].numpy()
    M = QG.calibrate_on_vectors(t, calib.numpy(), kth, K)["candidates"]
    models = {"int8.onnx": QG.head_model(t, K, M), "fp32.onnx": _fp32_head(W, b, N)}
    for name, model in models.items():
        onnx.save_model(
            model,
            str(directory / name),
            save_as_external_data=True,
            location=name + ".data",
            size_threshold=1024,
        )
    (directory / "meta.json").write_text(json.dumps({"candidates": M}))


def _fp32_head(W, b, N):
    """The fp32 head as the fp32 export ranks: scores, exclusion (pad column), TopK."""
    from onnx import TensorProto, helper, numpy_helper

    d = W.shape[1]
    wt = np.concatenate([W.numpy(), np.zeros((1, d), np.float32)])
    bias = np.concatenate([b.numpy(), [-np.inf]]).astype(np.float32)
    neg = helper.make_tensor("v", TensorProto.FLOAT, [1], [float("-inf")])
    nodes = [
        helper.make_node("Gemm", ["h", "W", "b"], ["s"], transB=1),
        helper.make_node("Shape", ["ex"], ["exs"]),
        helper.make_node("ConstantOfShape", ["exs"], ["negs"], value=neg),
        helper.make_node("ScatterElements", ["s", "ex", "negs"], ["sm"], axis=1),
        helper.make_node("TopK", ["sm", "k"], ["scores", "indices"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fp32_head",
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", d]),
            helper.make_tensor_value_info("ex", TensorProto.INT64, ["B", "H"]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", K]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["B", K]),
        ],
        [
            numpy_helper.from_array(wt, "W"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.array([K], np.int64), "k"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def child(mode: str, directory: Path, B: int, calls: int, seed: int) -> dict:
    """One path in this process: load, rank, report."""
    import torch

    _drop_page_cache(directory)
    before = _status(directory)
    N, d = _shape(directory)
    g = torch.Generator().manual_seed(seed)
    queries = [torch.randn(B, d, generator=g) for _ in range(calls)]
    excl = [torch.randint(0, N, (B, 50), generator=g) for _ in range(calls)]
    t0 = time.perf_counter()
    if mode in ("rank_cpu", "rank_quantized-int8"):
        from safetensors.torch import load_file

        from lite_export.kernels import QuantizedCatalog, rank_cpu, rank_quantized

        head = load_file(str(directory / "head.safetensors"))
        if mode == "rank_cpu":
            run = lambda h, ex: rank_cpu(h, head["weight"], head["bias"], K, ex)  # noqa: E731
        else:  # as TorchEngine(catalog="quantized") holds it
            from lite_export.engines.torch_engine import _advise_random

            _advise_random(head["weight"])
            cat = QuantizedCatalog.from_state_dict(
                load_file(str(directory / "catalog.safetensors"))
            )
            run = lambda h, ex: rank_quantized(h, cat, K, ex, head["weight"])  # noqa: E731
    else:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        name = "int8.onnx" if mode == "onnxruntime-int8" else "fp32.onnx"
        sess = ort.InferenceSession(str(directory / name), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def run(h, ex):
            out = sess.run(
                ["scores", "indices"], dict(zip(names, (h.numpy(), ex.numpy()), strict=True))
            )
            return torch.from_numpy(out[0]), torch.from_numpy(out[1])

    loaded = _status(directory)
    load_s = time.perf_counter() - t0
    times, ids = [], []
    for h, ex in zip(queries, excl, strict=True):
        t1 = time.perf_counter()
        _, i = run(h, ex)
        times.append((time.perf_counter() - t1) * 1e3)
        ids.append(i.numpy().tolist())
    ranked = _status(directory)
    return {
        "mode": mode,
        "rss_before": before["VmRSS"],
        "rss_loaded": loaded["VmRSS"],
        "rss_ranked": ranked["VmRSS"],
        "peak": ranked["VmHWM"],
        "anon_bytes": ranked["RssAnon"] - before["RssAnon"],
        "file_bytes": ranked["files"],
        "load_s": round(load_s, 2),
        "median_ms": round(float(np.median(times[1:] or times)), 2),
        "ids": ids,
    }


def _shape(directory: Path) -> tuple[int, int]:
    with open(directory / "head.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return tuple(header["weight"]["shape"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="N = 200k only")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.batch, args.calls, seed=7)))
        return 0
    from lite_export.benchmarking import commit, cpu_model

    shapes = [(200_000, 64)] if args.quick else [(1_000_000, 64), (2_000_000, 128)]
    meta = {"machine": f"{cpu_model()} ({os.cpu_count()} CPUs)", "commit": commit()}
    rows = []
    for N, d in shapes:
        with tempfile.TemporaryDirectory(prefix="lite-catalog-mem-") as tmp:
            directory = Path(tmp)
            write_inputs(directory, N, d)
            for f in directory.iterdir():  # clean pages, so each child can evict them
                fd = os.open(f, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            M = json.loads((directory / "meta.json").read_text())["candidates"]
            results = {}
            for mode in MODES:
                cmd = [sys.executable, __file__, "--child", mode, "--dir", tmp]
                cmd += ["--batch", str(args.batch), "--calls", str(args.calls)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            ref = results["rank_cpu"]["ids"]
            for mode, r in results.items():
                ids = r.pop("ids")
                same = np.mean(
                    [
                        sorted(a) == sorted(b)
                        for x, y in zip(ids, ref, strict=True)
                        for a, b in zip(x, y, strict=True)
                    ]
                )
                rows.append(
                    {
                        **r,
                        "N": N,
                        "d": d,
                        "B": args.batch,
                        "k": K,
                        "calls": args.calls,
                        "fp32_table_bytes": N * (d + 1) * 4,
                        "cost_bytes": r["anon_bytes"] + r["file_bytes"],
                        "agrees": bool(same == 1.0),
                        "candidates": M if mode == "onnxruntime-int8" else None,
                        **meta,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "catalog_memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    mib = 2**20
    lines = [
        f"# Resident memory of the ranking paths, fp32 head vs int8 catalog ({meta['machine']})",
        "",
        f"commit {meta['commit']}. One fresh process per path, its files evicted from the page "
        f"cache first: load them, rank {args.calls} batches of B={args.batch} random queries "
        f"(k={K}, 50 ids excluded each). `mapped` = resident pages of the path's files (the "
        "memory maps of the safetensors files; ONNX Runtime's external data), `private` = growth "
        "of the process's anonymous memory (tables copied or prepacked, buffers), `cost` = the "
        "two; `peak` = VmHWM of the whole process. `agrees`: same ids as rank_cpu.",
        "",
        "| N | d | fp32 table MiB | path | mapped MiB | private MiB | cost MiB | peak MiB | "
        "median ms / call | agrees |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['N']} | {r['d']} | {r['fp32_table_bytes'] / mib:.0f} | {r['mode']} | "
            f"{r['file_bytes'] / mib:.0f} | {r['anon_bytes'] / mib:.0f} | "
            f"{r['cost_bytes'] / mib:.0f} | {r['peak'] / mib:.0f} | {r['median_ms']} | {r['agrees']} |"
        )
    (args.out / "catalog_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
