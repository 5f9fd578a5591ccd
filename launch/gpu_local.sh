#!/usr/bin/env bash
# Pre-train on every GPU of this host: one JAX process that sees all of them.
#
#   launch/gpu_local.sh CONFIG WORKDIR [--config.KEY=VALUE ...]
#
#   CONFIG    configs/NAME.py[:ARG], e.g. configs/simclr_cifar10.py
#   WORKDIR   checkpoints, metrics.jsonl, tensorboard/, config.json (a local path or gs://...)
#   the rest  config overrides, passed on unchanged (e.g. --config.model.dtype=bfloat16)
#
# Environment:
#   PYTHON                interpreter with the requirements and jax[cuda12] installed
#                         (default: .venv/bin/python of this checkout, else python3)
#   CUDA_VISIBLE_DEVICES  a subset of the GPUs (default: all)
#
# The mesh takes every visible GPU along `data` (config.mesh.data=-1); add --config.mesh.fsdp=K to
# shard parameters and optimiser state K ways. global_batch_size must divide by the GPU count.
# The process is exec'd, so a SIGTERM (kill, a scheduler) reaches it: it finishes the current step,
# checkpoints and exits 0. Running the same command again resumes from WORKDIR.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x $repo/.venv/bin/python ]]; then python=$repo/.venv/bin/python; else python=python3; fi
fi

if command -v nvidia-smi > /dev/null; then
  echo "GPUs on $(hostname): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | xargs)"
else
  echo "warning: nvidia-smi not found; JAX will use whatever backend it finds" >&2
fi

cd "$repo"
exec "$python" -m ssl_jax.main --config="$config" --workdir="$workdir" "$@"
