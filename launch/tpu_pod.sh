#!/usr/bin/env bash
# Pre-train on every worker of a Cloud TPU VM pod slice (v4-32, v5p-64, ...), from your machine.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG gs://BUCKET/WORKDIR [--config.KEY=VALUE ...]
#
#   TPU_NAME  an existing TPU VM, e.g. made with
#             gcloud compute tpus tpu-vm create NAME --zone=ZONE --accelerator-type=v4-32 --version=IMAGE
#   ZONE      its zone, e.g. us-central2-b
#   CONFIG    configs/NAME.py[:ARG]
#   WORKDIR   a gs:// path: every worker reads and writes the same checkpoints, metrics, config.json
#   the rest  config overrides, passed on unchanged (e.g. --config.model.dtype=bfloat16)
#
# Environment:
#   PROJECT      gcloud project (default: gcloud's configured one)
#   PYTHON       interpreter on the workers, Python 3.11 or newer (default: python3.11)
#   JAX_VERSION  the jax[tpu] version installed (default: 0.10.2, the version requirements.txt pins)
#   SETUP=0      skip copying the code and installing (re-runs after the first)
#
# Steps: this checkout (without .git and .venv) is packed and copied to ~/ssl_jax on every worker; a
# venv there gets requirements.txt, jax[tpu] and gcsfs (gs:// for epath); then the same command
# starts on all workers at once (--worker=all). JAX detects the pod slice and numbers the
# processes; process 0 prints the topology and the mesh. Re-running resumes from WORKDIR's latest
# checkpoint; on a maintenance event or preemption (SIGTERM) the run finishes its step,
# checkpoints and exits 0. Logs: the ssh output of every worker, and WORKDIR/metrics.jsonl.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,24p' "$0" >&2
  exit 2
fi
tpu=$1
zone=$2
config=$3
workdir=$4
shift 4
if [[ $workdir != gs://* ]]; then
  echo "WORKDIR=$workdir: use a gs:// path, which every worker of the pod sees" >&2
  exit 2
fi

python=${PYTHON:-python3.11}
jax_version=${JAX_VERSION:-0.10.2}
gcloud_args=(--zone="$zone" --worker=all)
if [[ -n ${PROJECT:-} ]]; then gcloud_args+=(--project="$PROJECT"); fi

if [[ ${SETUP:-1} != 0 ]]; then
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bundle=$(mktemp -d)/ssl_jax.tar.gz
  tar -czf "$bundle" --exclude=.git --exclude=.venv --exclude=__pycache__ -C "$repo" .
  gcloud compute tpus tpu-vm scp "$bundle" "$tpu":ssl_jax.tar.gz "${gcloud_args[@]}"
  setup="rm -rf ~/ssl_jax && mkdir -p ~/ssl_jax && tar -xzf ~/ssl_jax.tar.gz -C ~/ssl_jax"
  setup+=" && cd ~/ssl_jax && $python -m venv .venv && .venv/bin/pip install -q -r requirements.txt"
  setup+=" && .venv/bin/pip install -q 'jax[tpu]==$jax_version' gcsfs"
  gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --command="$setup"
fi

# every argument quoted for the remote shell
run="cd ~/ssl_jax && exec .venv/bin/python -m ssl_jax.main"
for arg in "--config=$config" "--workdir=$workdir" "$@"; do
  run+=" $(printf '%q' "$arg")"
done
gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" --command="$run"
