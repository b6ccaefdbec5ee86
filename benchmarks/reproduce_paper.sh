#!/usr/bin/env bash
# Reproduce the paper's claims (issue 7): accuracy against a generative recommender with
# constrained beam search, and inference cost. See benchmarks/reproduce_paper.py --help.
#
#   bash benchmarks/reproduce_paper.sh --quick        # synthetic catalog, CI-sized (~1 min, 2 cores)
#   bash benchmarks/reproduce_paper.sh                # ML-1M: inference time on ML-1M-shaped
#                                                     # models, then a time-capped training run
# Extra arguments go to every python call. DATA_DIR (default ../shared/data/ml-1m),
# MAX_TRAIN_SECONDS (per model, default 150), EVAL_USERS (default 200) and THREADS (default 2)
# override the full run.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
if [[ " $* " == *" --quick "* ]]; then
  python benchmarks/reproduce_paper.py --threads "$THREADS" "$@"
  exit 0
fi
DATA_DIR=${DATA_DIR:-../shared/data/ml-1m}
python benchmarks/reproduce_paper.py --data ml-1m --data-dir "$DATA_DIR" --timing-only --reps 30 --reps64 3 \
  --stem paper_reproduction_ml1m_timing --threads "$THREADS" "$@"
python benchmarks/reproduce_paper.py --data ml-1m --data-dir "$DATA_DIR" \
  --max-train-seconds "${MAX_TRAIN_SECONDS:-150}" --eval-users "${EVAL_USERS:-200}" --no-timing \
  --stem paper_reproduction_ml1m --threads "$THREADS" "$@"
