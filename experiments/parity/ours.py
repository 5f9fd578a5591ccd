"""Our side of the parity suite: one method's ablation recipe on the embedded digits, scored.

  python experiments/parity/ours.py --method=byol --seed=0 [--steps=450] [--export=/tmp/parity]
      [--config.KEY=VALUE ...]

The run's config is the pretext ablation's for that method (configs/ablate.py +
configs/<method>_cifar10.py:tiny, as `python -m ssl_jax.ablate` builds it: the main job's data,
ResNet-10 w0.25 encoder, batch 256 and views, the method's heads, loss settings and optimiser) with
`--seed` and `--steps`. It pre-trains in EXPORT/runs/ours-METHOD-SEED (a fresh directory each time),
scores the encoder's features with score.py, and prints one JSON line last: method, seed, steps,
the scores, pretrain_s (pre-training wall time, compilation included).

It also writes what the PyTorch peer needs to run the same recipe: EXPORT/digits.npz (the 4,000
training and 1,000 held-out test digits of `config.data.holdout_seed`, uint8, with labels) and
EXPORT/recipe_METHOD.json (the resolved config, steps included); `--export_only` stops there.
"""

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ABLATE_CONFIG = os.path.join(HERE, "..", "..", "configs", "ablate.py")
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import score  # noqa: E402
from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax.ablation import planning  # noqa: E402
from ssl_jax import train  # noqa: E402


def run_config(method, seed, steps, overrides):
  c = planning.recipe_config(config_lib.load(ABLATE_CONFIG), method)
  c.seed = seed
  c.total_steps = steps
  c.checkpoint_every_steps = steps
  c.log_every_steps = max(steps // 6, 1)
  return config_lib.override(c, overrides)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--method", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=450)
  parser.add_argument("--export", default="/tmp/parity")
  parser.add_argument(
      "--export_only", action="store_true", help="write the digits and recipe, stop"
  )
  args, overrides = parser.parse_known_args()
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; overrides look like --config.KEY=VALUE")
  c = run_config(args.method, args.seed, args.steps, [o[len("--config.") :] for o in overrides])
  workdir = os.path.join(args.export, "runs", f"ours-{args.method}-{args.seed}")
  shutil.rmtree(workdir, ignore_errors=True)
  c = config_lib.finalize(c, workdir)
  train_source, test_source = train.load_data(c)
  (train_x, train_y), (test_x, test_y) = train_source.arrays(), test_source.arrays()
  digits = os.path.join(args.export, "digits.npz")
  if not os.path.exists(digits):
    np.savez(
        digits + ".tmp.npz",
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
    )
    os.replace(digits + ".tmp.npz", digits)
  recipe = json.loads(c.to_json())
  recipe["parity_overrides"] = overrides  # the peer reports them beside its scores
  with open(os.path.join(args.export, f"recipe_{args.method}.json"), "w") as f:
    json.dump(recipe, f, indent=2)
  if args.export_only:
    return
  start = time.time()
  run = train.train(c, workdir, data=(train_source, test_source))
  pretrain_s = time.time() - start
  scores = score.score(run.features_of(train_x), train_y, run.features_of(test_x), test_y)
  print(
      json.dumps(
          dict(
              side="ours",
              method=args.method,
              seed=args.seed,
              steps=args.steps,
              overrides=overrides,
              **scores,
              pretrain_s=round(pretrain_s, 1),
              final_loss=round(run.history[-1]["loss"], 4) if run.history else None,
          )
      )
  )


if __name__ == "__main__":
  main()
