"""Where a fused top-K call spends its GPU time: a torch.profiler table of one shape.

    python3 benchmarks/profile_topk.py --out benchmarks/results      # CUDA machine

Profiles ``topk_projection`` (filter path, CUDA graph replays) at N = 1M, d = 1024, k = 100 for
B = 1 and 16 on a bf16 table, and prints/writes the CUDA kernels sorted by total time
(``topk_profile.txt``): the stage-1 kernel against everything else (sample, stage 2, copies).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lite_export.benchmarking import commit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    from torch.profiler import ProfilerActivity, profile

    from lite_export.kernels.fused import topk_projection

    name = torch.cuda.get_device_name(0)
    W = torch.randn(args.n, args.d, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(args.n, device="cuda", dtype=torch.bfloat16)
    lines = [f"# {name}, commit {commit()}, N={args.n} d={args.d} k={args.k}, {args.reps} calls"]
    for B in (1, 16):
        h = torch.randn(B, args.d, device="cuda", dtype=torch.bfloat16)
        for graph in (True, False):
            for _ in range(3):  # compile, capture, warm
                topk_projection(h, W, b, args.k, cuda_graph=graph)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(args.reps):
                    topk_projection(h, W, b, args.k, cuda_graph=graph)
                torch.cuda.synchronize()
            table = prof.key_averages().table(
                sort_by="cuda_time_total", row_limit=25, max_name_column_width=60
            )
            lines += ["", f"## B={B}, {'CUDA graph' if graph else 'eager'}", table]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "topk_profile.txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
