#!/usr/bin/env bash
# Real-data quality runs on one GPU: SASRec and Lite-LLM4Rec on ML-1M and Amazon Beauty, each
# over the same grid of configs (run as parallel processes), then selected per (dataset, model)
# on validation NDCG@10 — the same rule for every model; the test split is never used to choose.
#
#   DATA_ROOT=path/to/data OUT=out bash benchmarks/quality_gpu.sh
#
# DATA_ROOT holds ml-1m/{user_sequences.txt.gz,movies.dat} and
# amazon-beauty/{user_sequence.txt.gz,item_titles.tsv.gz}. Item-LLM vectors are read from the
# lite-export cache (LITE_EXPORT_CACHE) when present, so the item LLM need not be installed there.
# CONFIGS: one grid point per line (quality.py flags). MERGE_WITH: earlier result folders
# (holding quality_runs.json) whose runs join the selection. DATASETS: which data sets (default both).
# SEEDS: the seeds every grid point runs with (default "0 1 2": the merge reports mean ± std over
# them and a paired bootstrap of Lite-LLM4Rec minus SASRec per seed). BUDGET=none trains each run
# until early stopping (patience) instead of for a fixed time. COLD=0.1: the cold-start protocol
# (that fraction of the items held out of training; cold and warm rows), where each Lite-LLM4Rec
# run trains every head of HEADS (default "id text text+id", --head-residual-dropout
# HEAD_DROPOUT, default 0.5) and the text-only peer joins most-popular. HEAD_FLAGS: more head
# flags for those runs, e.g. "--head-match --head-cold-scale" (with HEADS="text+id").
set -u
OUT=${OUT:-benchmarks/results/quality_gpu}
DATA_ROOT=${DATA_ROOT:-../shared/data}
BUDGET=${BUDGET:-200}         # seconds of training per run; the LR schedule anneals within it
PY=${PYTHON:-python3}
CONFIGS=${CONFIGS:-"--rec-arch llama --d-model 64 --dropout 0.2
--rec-arch gpt2 --d-model 128 --dropout 0.3"}
MERGE_WITH=${MERGE_WITH:-}
SEEDS=${SEEDS:-0 1 2}
COLD=${COLD:-}
cold_flags=""
[ -n "$COLD" ] && cold_flags="--cold-items $COLD"
budget_flag="--max-train-seconds $BUDGET"
[ "$BUDGET" = none ] && budget_flag=""
mkdir -p "$OUT/runs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
i=0
first=$(printf '%s\n' "$CONFIGS" | head -n 1)
for ds in ${DATASETS:-ml-1m amazon-beauty}; do
  for model in SASRec Lite-LLM4Rec; do
    while IFS= read -r cfg; do
      [ -z "$cfg" ] && continue
      for seed in $SEEDS; do
        extra=""
        [ "$model" = SASRec ] && [ "$cfg" = "$first" ] && [ "$seed" = "${SEEDS%% *}" ] \
          && extra="most-popular"
        [ -n "$COLD" ] && [ -n "$extra" ] && extra="$extra text-cosine"
        [ -n "$COLD" ] && [ "$model" = Lite-LLM4Rec ] \
          && extra="--heads ${HEADS:-id text text+id} --head-residual-dropout ${HEAD_DROPOUT:-0.5} ${HEAD_FLAGS:-}"
        # shellcheck disable=SC2086
        $PY benchmarks/quality.py --datasets $ds --models $model $extra --data-root "$DATA_ROOT" \
          --out "$OUT/runs/r$i" $cfg --seed "$seed" $budget_flag $cold_flags \
          > "$OUT/runs/r$i.log" 2>&1 &
        i=$((i + 1))
      done
    done <<< "$CONFIGS"
  done
done
wait
echo "all runs finished in $(( $(date +%s) - start ))s"
for f in "$OUT"/runs/r*.log; do echo "== $f"; grep -E "^epoch" "$f" | tail -n 2; done
# shellcheck disable=SC2086
$PY benchmarks/quality.py --merge "$OUT"/runs/r* $MERGE_WITH --out "$OUT"
tar -czf "$OUT/logs.tgz" -C "$OUT" runs && rm -rf "$OUT/runs"
