#!/usr/bin/env bash
# Reproduce the paper's claims (issue 7): accuracy against a generative recommender with
# constrained beam search, the ablations (item ids only; item texts as flat tokens), and
# inference cost. See benchmarks/reproduce_paper.py --help.
#
#   bash benchmarks/reproduce_paper.sh --quick   # synthetic catalog, CI-sized (~1 min, 2 cores)
#   bash benchmarks/reproduce_paper.sh           # ML-1M and Amazon Beauty, one process per data
#                                                # set pinned to its own core, each model
#                                                # trained for the same wall-time budget
# Extra arguments go to every python call. DATA_ROOT (default ../shared/data), MAX_TRAIN_SECONDS
# (per model, default 600), MAX_HISTORY (default 50), EVAL_USERS (default 1000) and OUT
# (default benchmarks/results) override the full run; SEQUENTIAL=1 runs the data sets one
# after the other on every core instead (THREADS, default 2). Last, inference time at ML-1M's
# full 200-item history with seeded weights (paper_reproduction_ml1m_timing). LONG=1 adds
# Lite-LLM4Rec vs the generative peer on ML-1M at twice the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --quick "* ]]; then
  THREADS=${THREADS:-2}
  OMP_NUM_THREADS=$THREADS python benchmarks/reproduce_paper.py --threads "$THREADS" "$@"
  exit 0
fi
DATA_ROOT=${DATA_ROOT:-../shared/data}
OUT=${OUT:-benchmarks/results}
common=(--max-history "${MAX_HISTORY:-50}" --max-train-seconds "${MAX_TRAIN_SECONDS:-600}"
  --epochs 200 --gen-epochs 200 --eval-users "${EVAL_USERS:-1000}" --valid-users "${EVAL_USERS:-1000}"
  --reps 30 --reps64 3
  --out "$OUT")
run() {  # run CORE STEM DATA DIR...
  local core=$1 stem=$2; shift 2
  if [[ -n "${SEQUENTIAL:-}" ]]; then
    OMP_NUM_THREADS=${THREADS:-2} python benchmarks/reproduce_paper.py "$@" "${common[@]}" \
      --threads "${THREADS:-2}" --stem "$stem"
  else
    OMP_NUM_THREADS=1 taskset -c "$core" python benchmarks/reproduce_paper.py "$@" "${common[@]}" \
      --threads 1 --stem "$stem"
  fi
}
if [[ -n "${SEQUENTIAL:-}" ]]; then
  run 0 paper_reproduction_ml1m --data ml-1m --data-dir "$DATA_ROOT/ml-1m" "$@"
  run 1 paper_reproduction_beauty --data amazon --data-dir "$DATA_ROOT/amazon-beauty" "$@"
else
  run 0 paper_reproduction_ml1m --data ml-1m --data-dir "$DATA_ROOT/ml-1m" "$@" & ml=$!
  run 1 paper_reproduction_beauty --data amazon --data-dir "$DATA_ROOT/amazon-beauty" "$@" & beauty=$!
  wait "$ml"
  wait "$beauty"
fi
# LONG=1: Lite-LLM4Rec and the generative peer alone on ML-1M with twice the budget, one core each
if [[ -n "${LONG:-}" ]]; then
  long_s=$((2 * ${MAX_TRAIN_SECONDS:-600}))
  long=(--data ml-1m --data-dir "$DATA_ROOT/ml-1m" --max-history "${MAX_HISTORY:-50}"
    --max-train-seconds "$long_s" --epochs 400 --gen-epochs 400
    --eval-users "${EVAL_USERS:-1000}" --valid-users "${EVAL_USERS:-1000}" --no-timing --threads 1
    --out "$OUT")
  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/reproduce_paper.py "${long[@]}" --models lite \
    --stem "paper_reproduction_ml1m_${long_s}s_lite" "$@" & lite=$!
  OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/reproduce_paper.py "${long[@]}" \
    --models generative --stem "paper_reproduction_ml1m_${long_s}s_generative" "$@" & gen=$!
  wait "$lite"
  wait "$gen"
fi
# inference time at ML-1M's full history (200 items; seeded weights: cost depends on shapes only)
OMP_NUM_THREADS=${THREADS:-2} python benchmarks/reproduce_paper.py --data ml-1m \
  --data-dir "$DATA_ROOT/ml-1m" --timing-only --reps 30 --reps64 3 --threads "${THREADS:-2}" \
  --out "$OUT" --stem paper_reproduction_ml1m_timing "$@"
