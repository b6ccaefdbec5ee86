"""Where one ``recommend()`` of the PyTorch engine's whole-request CUDA graph spends its time.

    python3 benchmarks/profile_gpu_request.py --out benchmarks/results   # on a CUDA machine

For the ML-1M-shaped model of ``bench_gpu_e2e.py`` (3,706 items, d = 64, 2 layers, fp32) at
history 200 and 50, batch 1 and 64, it times, side by side in one run (median of ``--reps``
calls, ``time.perf_counter`` on the host, CUDA events on the device):

* ``floor:sync`` -- an 8-byte pinned host-to-device copy, a one-element kernel, an 8-byte copy
  back and a stream sync: the fixed cost of any GPU round trip on this machine;
* ``replay:gpu`` -- the captured graph alone, CUDA events around ``graph.replay()``;
* ``run`` -- the bucket's whole device round trip (copy in, replay, copy out, sync);
* ``core`` -- ``Engine._recommend_impl`` (the above plus filling the pinned buffer and reading
  the answer back);
* ``recommend`` -- the public call (plus id mapping, padding and the TopK).

It then lists the kernels of one eager ``request_step`` (what the graph holds), by total device
time, from ``torch.profiler``. Writes ``gpu_profile.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_gpu_e2e import MODELS, build_model, histories, mapped  # noqa: E402

from lite_export.benchmarking import commit, machine  # noqa: E402


def host_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    t = np.empty(reps)
    for r in range(reps):
        t0 = time.perf_counter()
        fn()
        t[r] = (time.perf_counter() - t0) * 1e3
    return float(np.median(t))


def device_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    t = np.empty(reps)
    for r in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        t[r] = a.elapsed_time(b)
    return float(np.median(t))


def floor_ms(reps: int) -> float:
    src = torch.zeros(1, dtype=torch.int64, pin_memory=True)
    dst = torch.zeros(1, dtype=torch.int64, pin_memory=True)
    dev = torch.zeros(1, dtype=torch.int64, device="cuda")

    def trip():
        dev.copy_(src, non_blocking=True)
        dev.add_(1)
        dst.copy_(dev, non_blocking=True)
        torch.cuda.current_stream().synchronize()

    return host_ms(trip, reps)


def kernel_table(eng, bucket, rows: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile

    from lite_export.engines.torch_engine import request_step

    _, Lb, Hb, kb = bucket.key
    with torch.inference_mode():
        for _ in range(3):
            request_step(
                eng.encoder, eng.weight, eng.bias, bucket.dev_in, Lb, Hb, kb, bucket.method
            )
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                request_step(
                    eng.encoder, eng.weight, eng.bias, bucket.dev_in, Lb, Hb, kb, bucket.method
                )
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    per_call = len(kernels) / 10
    total_us = sum(e.device_time for e in kernels) / 10
    table = prof.key_averages().table(
        sort_by="device_time_total", row_limit=rows, max_name_column_width=60
    )
    return f"{per_call:.0f} kernels per request, {total_us:.1f} us of kernel time per request\n\n```\n{table}\n```\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)
    with torch.inference_mode():  # the engine's static buffers are inference tensors
        return profile_all(args)


def profile_all(args) -> int:
    from lite_export.engines.torch_engine import TorchEngine

    spec = MODELS["ml-1m"]
    model = build_model(spec["items"], spec["d"], spec["d_ff"], spec["max_history"])
    eng = TorchEngine.from_model(model, k=100, device="cuda", graph="capture")
    lines = [
        f"# One whole-request CUDA graph, where the time goes ({machine()}, commit {commit()})",
        "",
        "`python3 benchmarks/profile_gpu_request.py` -- ML-1M-shaped model (3,706 items, d = 64, "
        "2 layers, fp32), k = 10, exclusion of the history. Medians over "
        f"{args.reps} calls, ms.",
        "",
        f"floor:sync (8-byte copy in, one tiny kernel, 8-byte copy out, sync): "
        f"{floor_ms(args.reps):.4f} ms",
        "",
        "| history | batch | replay:gpu | run | core | recommend |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    tables = []
    for length, batch in ((200, 1), (50, 1), (200, 64), (50, 64)):
        hists = histories(spec["items"], length, batch, seed=length * 1000 + batch)
        eng.recommend(hists, k=10)
        ids, ex = mapped(eng, hists)
        key = eng.bucket_key(batch, ids.shape[1], ex.shape[1], 10)
        bucket = eng._graphs.get(key)
        graph = bucket.run.graph
        rep = device_ms(graph.replay, args.reps)
        run = host_ms(lambda b=bucket, n=batch: b.run(n), args.reps)
        core = host_ms(lambda i=ids, x=ex: eng._recommend_impl(i, x, 10), args.reps)
        rec = host_ms(lambda h=hists: eng.recommend(h, k=10), args.reps)
        lines.append(f"| {length} | {batch} | {rep:.4f} | {run:.4f} | {core:.4f} | {rec:.4f} |")
        print(lines[-1], flush=True)
        if batch == 1 and length == 200 or batch == 64 and length == 200:
            tables.append(
                f"## Kernels of one eager request_step, history {length}, batch {batch} "
                f"(method {bucket.method})\n\n" + kernel_table(eng, bucket)
            )
    text = "\n".join(lines) + "\n\n" + "\n".join(tables)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_profile.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
