#!/usr/bin/env bash
# Issue 15 end to end: does supervision mined here make a 1.5B agent reason better on GSM8K-style
# problems? Every step below resumes where a killed run stopped (stages, then problem by problem), so
# the whole script can be started again after any interruption; it takes many hours on 2 CPU cores.
#
#   make models-cpu test-llamacpp          # once: the two Qwen builtins, llama-cpp-python compiled
#   nohup bash scripts/cpu_gsm8k.sh > runs/cpu-gsm8k.log 2>&1 &
#
# Outputs under runs/cpu-gsm8k (not committed: weights and traces); the report is written to
# docs/results/cpu-gsm8k/ and the PRM800K AUROCs to runs/cpu-gsm8k/auroc-*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
BIN="${BIN:-.venv/bin}"
RECIPE=recipes/cpu-gsm8k.yaml
OUT=runs/cpu-gsm8k
TRAINED="hf:$OUT/train/merged"
BASE=builtin:qwen2.5-coder-0.5b
AGENT=llamacpp:builtin:qwen2.5-coder-1.5b

step() { echo "== $(date -u +%FT%TZ) $*"; }

step "pipeline: select, extract, filter, train, then cot and implicit (trained rationalist) on the 200"
"$BIN/rationalyst" run "$RECIPE"

step "cot in the agent's own zero-shot chat format, the 200"
"$BIN/rationalyst" eval --config "$RECIPE" --set "output=$OUT/eval-zero-shot" \
    --set benchmarks.0.demos=zero-shot --set "methods=[cot]"

step "implicit with the untrained base model as rationalist, the 200"
"$BIN/rationalyst" eval --config "$RECIPE" --set "output=$OUT/eval-untrained" \
    --set "rationalist.spec=$BASE" --set "methods=[implicit]"

step "the other methods, the first 100 of the 200"
"$BIN/rationalyst" eval --config "$RECIPE" --set "output=$OUT/eval-baselines" --set benchmarks.0.limit=100 \
    --set "methods=[random, self-consistency, self-ppl, explicit, best-of-n]"

step "implicit (trained rationalist) with the agent as scorer, the first 100"
"$BIN/rationalyst" eval --config "$RECIPE" --set "output=$OUT/eval-agent-scorer" --set benchmarks.0.limit=100 \
    --set "scorer.spec=$AGENT" --set "methods=[implicit]"

step "PRM800K: AUROC of the step scores, trained vs untrained rationalist (the scorer alone is in both)"
for who in trained untrained; do
    spec=$TRAINED; [ "$who" = untrained ] && spec=$BASE
    if [ ! -s "$OUT/auroc-$who.txt" ]; then
        "$BIN/python" benchmarks/prm800k_auroc.py --rationalist "$spec" --scorer "$BASE" --limit 200 \
            --save "$OUT/auroc-$who.jsonl" > "$OUT/auroc-$who.txt.partial"
        mv "$OUT/auroc-$who.txt.partial" "$OUT/auroc-$who.txt"
    fi
done

step "report"
"$BIN/rationalyst" report "$OUT" --output docs/results/cpu-gsm8k
step "done"
