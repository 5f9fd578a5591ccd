#!/bin/bash
# One method's parity comparison: ours and the PyTorch peer, alternating seed by seed.
#
#   bash experiments/parity/compare.sh METHOD [SEED ...] [--config.KEY=VALUE ...]
#
# Seeds default to 0 1 2. Overrides change the recipe of both sides: ours.py applies them and
# exports the resolved recipe that the peer reads (e.g. --config.model.zero_init_residual=False).
# Each run prints one JSON line; they are appended to $EXPORT/results.jsonl (default /tmp/parity),
# which `python experiments/parity/table.py` turns into the parity table. STEPS (default 450) sets
# the budget of both sides; OURS / PEER name the two venvs' interpreters (experiments/parity/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=$1; shift
SEEDS=(); OVERRIDES=()
for arg in "$@"; do
  case "$arg" in
    --config.*) OVERRIDES+=("$arg") ;;
    *) SEEDS+=("$arg") ;;
  esac
done
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
EXPORT=${EXPORT:-/tmp/parity}
STEPS=${STEPS:-450}
OURS=${OURS:-.venv/bin/python}
PEER=${PEER:-/tmp/parity_venv/bin/python}
mkdir -p "$EXPORT"
tag=$(printf '%s' "${OVERRIDES[*]:-}" | tr -c 'A-Za-z0-9_.=-' '_')
for seed in "${SEEDS[@]}"; do
  log="$EXPORT/$METHOD-$seed${tag:+-$tag}"
  # ours first: it exports the digits and the recipe that the peer reads
  $OURS experiments/parity/ours.py --method="$METHOD" --seed="$seed" --steps="$STEPS" \
      --export="$EXPORT" ${OVERRIDES[@]+"${OVERRIDES[@]}"} > "$log.ours.log" 2>&1
  tail -1 "$log.ours.log" | tee -a "$EXPORT/results.jsonl"
  $PEER "experiments/parity/torch_$METHOD.py" --seed="$seed" --export="$EXPORT" > "$log.peer.log" 2>&1
  tail -1 "$log.peer.log" | tee -a "$EXPORT/results.jsonl"
done
