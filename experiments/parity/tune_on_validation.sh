#!/bin/bash
# Short-budget recipe choices on the validation split, never on the test digits.
#
#   python experiments/make_validation_digits.py --out=/tmp/mnist_val.npz
#   bash experiments/parity/tune_on_validation.sh RUNS_FILE [SEED ...]
#   python experiments/parity/table.py --results=/tmp/val/results.jsonl --ours_only
#
# RUNS_FILE holds one run per line: METHOD [--config.KEY=VALUE ...] ('#' starts a comment). Each
# run is ours.py at STEPS (default 120, the pretext ablation's budget) on the validation npz
# (3,000 training digits, 1,000 validation digits as its test split), scored by score.py; the
# JSON lines go to $EXPORT/results.jsonl (default /tmp/val). experiments/budget_recipes.md holds
# the run files used and what they measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=$1; shift
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0)
EXPORT=${EXPORT:-/tmp/val}
STEPS=${STEPS:-120}
VAL=${VAL:-/tmp/mnist_val.npz}
OURS=${OURS:-.venv/bin/python}
[ -f "$VAL" ] || { echo "no $VAL: run experiments/make_validation_digits.py --out=$VAL" >&2; exit 1; }
mkdir -p "$EXPORT"
grep -v '^\s*\(#\|$\)' "$RUNS" | while read -r method overrides; do
  for seed in "${SEEDS[@]}"; do
    # shellcheck disable=SC2086
    $OURS experiments/parity/ours.py --method="$method" --seed="$seed" --steps="$STEPS" \
        --export="$EXPORT" --config.data.source="npz:$VAL" $overrides > "$EXPORT/last.log" 2>&1 \
      || { echo "FAILED: $method $overrides (seed $seed); see $EXPORT/last.log" >&2; exit 1; }
    tail -1 "$EXPORT/last.log" | tee -a "$EXPORT/results.jsonl"
  done
done
