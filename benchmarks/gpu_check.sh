#!/usr/bin/env bash
# GPU check of the fused ranking kernel: environment, GPU tests, benchmark.
#
#   bash benchmarks/gpu_check.sh            # from the repo root, on a CUDA machine
#
# Uses the machine's own python3 (no installs). Writes under ${OUT:-benchmarks/results}, at most
# 7 files: gpu_env.txt, gpu_tests.log, bench.log, topk_gpu.json, topk_gpu.md, topk_gpu.png,
# gpu_summary.txt. A failing test does not stop the benchmark. Expected wall time on an H100/H200:
# ~1.5 min tests (Triton compiles + CPU references) + ~3.5 min benchmark (150 s table budget,
# exclusion rows, 30 s config sweep, compiles included) = ~5 min; hard caps below keep it under
# 9.5 min.
set -u
set -o pipefail

OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export LITE_COMMIT="${LITE_COMMIT:-$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)}"
unset TRITON_INTERPRET
start=$(date +%s)

{
    echo "== $(date -u +%FT%TZ) commit $LITE_COMMIT"
    nvidia-smi || echo "nvidia-smi failed"
    nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv || true
    python3 - <<'PY'
import sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
try:
    import triton
    print("triton", triton.__version__)
except Exception as e:  # the kernel needs it: say so plainly
    print("triton import failed:", e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, "cc", torch.cuda.get_device_capability(0), p.multi_processor_count, "SMs",
          round(p.total_memory / 2**30), "GiB", "L2", getattr(p, "L2_cache_size", "?"))
else:
    print("no CUDA device visible to torch")
PY
} 2>&1 | tee "$OUT/gpu_env.txt"

echo "== GPU tests" | tee "$OUT/gpu_tests.log"
timeout 240 python3 -m pytest tests/kernels -m gpu -q -rA -p no:cacheprovider 2>&1 | tee -a "$OUT/gpu_tests.log"
test_rc=$?

echo "== benchmark" | tee "$OUT/bench.log"
timeout 330 python3 benchmarks/bench_topk_projection.py --device cuda --out "$OUT" \
    --budget-s 150 --sweep-budget-s 30 2>&1 | tee -a "$OUT/bench.log"
bench_rc=$?

echo "gpu tests rc=$test_rc (0 = all passed, 124 = timed out); benchmark rc=$bench_rc; wall $(( $(date +%s) - start )) s" \
    | tee "$OUT/gpu_summary.txt"
tail -n 1 "$OUT/gpu_tests.log" >> "$OUT/gpu_summary.txt"
exit 0
