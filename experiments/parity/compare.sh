#!/bin/bash
# One method's parity comparison: ours and the PyTorch peer, alternating seed by seed.
#
#   bash experiments/parity/compare.sh METHOD [SEED ...]      # default seeds 0 1 2
#
# Each run prints one JSON line; they are appended to $EXPORT/results.jsonl (default /tmp/parity),
# which `python experiments/parity/table.py` turns into the parity table. STEPS (default 450) sets
# the budget of both sides; OURS / PEER name the two venvs' interpreters (experiments/parity/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=$1; shift
SEEDS=${*:-0 1 2}
EXPORT=${EXPORT:-/tmp/parity}
STEPS=${STEPS:-450}
OURS=${OURS:-.venv/bin/python}
PEER=${PEER:-/tmp/parity_venv/bin/python}
mkdir -p "$EXPORT"
for seed in $SEEDS; do
  # ours first: it exports the digits and the recipe that the peer reads
  $OURS experiments/parity/ours.py --method="$METHOD" --seed="$seed" --steps="$STEPS" \
      --export="$EXPORT" > "$EXPORT/ours-$METHOD-$seed.log" 2>&1
  tail -1 "$EXPORT/ours-$METHOD-$seed.log" | tee -a "$EXPORT/results.jsonl"
  $PEER "experiments/parity/torch_$METHOD.py" --seed="$seed" --export="$EXPORT" \
      > "$EXPORT/peer-$METHOD-$seed.log" 2>&1
  tail -1 "$EXPORT/peer-$METHOD-$seed.log" | tee -a "$EXPORT/results.jsonl"
done
