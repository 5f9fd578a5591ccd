#!/bin/bash
# SimCLR step speed, ours against the PyTorch reference, side by side (run it on a quiet machine).
#
#   bash experiments/simclr_vs_pytorch.sh [BATCH]        # default 256; ~15 min on 2 cores
#
# Alternates the two implementations for two rounds so that a change in load hits both, and prints
# `uptime` before and after. Ours: experiments/bench_simclr_step.py at its documented defaults
# (convolutions on XLA:CPU's Eigen runtime, BatchNorm over the global batch) and with chunks of
# MICRO examples kept in memory (--no_recompute, ghost BatchNorm over MICRO x 2 views;
# experiments/chunked.md); then once with XLA's default YNNPACK convolutions (one timed step).
# The reference: experiments/bench_simclr_torch.py (lightly + torchvision) in its own venv, made
# once with
#   python3.11 -m venv /tmp/simclr_ref_venv
#   /tmp/simclr_ref_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 lightly==1.6.0
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-256}
MICRO=${MICRO:-64}
OURS=${OURS:-.venv/bin/python}
REF=${REF:-/tmp/simclr_ref_venv/bin/python}
echo "load before: $(uptime)"
for round in 1 2; do
  echo "round $round"
  echo "  pytorch:           $($REF experiments/bench_simclr_torch.py --batch "$BATCH" | tail -1)"
  echo "  ours (default):    $($OURS experiments/bench_simclr_step.py --batch "$BATCH" | tail -1)"
  echo "  ours (micro $MICRO, no recompute): $($OURS experiments/bench_simclr_step.py --batch "$BATCH" --micro_batch "$MICRO" --no_recompute | tail -1)"
done
echo "  ours (XLA's YNNPACK convolutions): $($OURS experiments/bench_simclr_step.py --batch "$BATCH" --cpu_conv_library ynnpack --steps 1 | tail -1)"
echo "load after: $(uptime)"
