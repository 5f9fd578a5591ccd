"""Fine-tuning settings for one method's pre-trained encoder, chosen on the validation split.

  python experiments/make_validation_digits.py --out=/tmp/mnist_val.npz
  python experiments/parity/tune_finetune.py --method=mae [--steps=120] [--draws=3] \
      [--grid="finetune.learning_rate=3e-3,1e-3,3e-4 finetune.layer_decay=1.0,0.75"] \
      [--config.KEY=VALUE ...]

Pre-trains the method's pretext-ablation recipe (ours.py's config) on the validation npz once
(EXPORT/runs/tune-METHOD-SEED; a finished run is reused), then fine-tunes its encoder fully at the
ablation's budget (`ablation.finetune_labels_per_class`, `--draws` label draws) at every point of
`--grid` (space-separated KEY=V1,V2,...; the product of the lists) and prints one JSON line per
point: the settings and the validation accuracy (mean, std, per draw). The validation digits are
the npz's test split; the main job's test digits are never read. A point is a fixed setting (no
CV: the ablation's full-mode grid is one point), so the lines compare settings.
"""

import argparse
import copy
import itertools
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import ours  # noqa: E402
from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax.modalities import image  # noqa: E402
from ssl_jax import train  # noqa: E402


def parse_grid(text):
  """'a.b=1,2 c=x' -> [{'a.b': '1', 'c': 'x'}, {'a.b': '2', 'c': 'x'}] (values stay strings)."""
  axes = []
  for item in text.split():
    key, sep, values = item.partition("=")
    if not sep or not values:
      raise ValueError(f"--grid item {item!r} is not KEY=V1,V2,...")
    axes.append([(key, v) for v in values.split(",")])
  return [dict(point) for point in itertools.product(*axes)] or [{}]


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--method", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=120)
  parser.add_argument("--draws", type=int, default=3)
  parser.add_argument("--val", default="/tmp/mnist_val.npz")
  parser.add_argument("--export", default="/tmp/val")
  parser.add_argument("--grid", default="finetune.learning_rate=3e-3,1e-3,3e-4")
  args, overrides = parser.parse_known_args()
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; overrides look like --config.KEY=VALUE")
  if not os.path.exists(args.val):
    parser.error(f"--val={args.val} does not exist: run experiments/make_validation_digits.py")
  c = ours.run_config(
      args.method,
      args.seed,
      args.steps,
      [f"data.source=npz:{args.val}"] + [o[len("--config.") :] for o in overrides],
  )
  workdir = os.path.join(args.export, "runs", f"tune-{args.method}-{args.seed}")
  c = config_lib.finalize(c, workdir)
  run = train.train(c, workdir)  # resumes (no step left) when the run is already there
  encoder = run.components.encoder_variables(run.state)
  ablation = config_lib.load(ours.ABLATE_CONFIG).ablation  # the ablation's fine-tuning budget
  for point in parse_grid(args.grid):
    fc = config_lib.override(copy.deepcopy(c), [f"{k}={v}" for k, v in point.items()])
    fc.unlock()
    fc.label_efficiency.methods = ("ssl_finetune",)
    fc.label_efficiency.labels_per_class = (ablation.finetune_labels_per_class,)
    fc.label_efficiency.num_draws = args.draws
    (row,) = image.study_rows(
        fc,
        run.features_of,
        run.train_source,
        run.test_source,
        run.components.mesh,
        pretrained_encoder=encoder,
    )
    accuracies = [float(a) for a in row.get("accuracies", [])]
    print(
        json.dumps(
            dict(
                method=args.method,
                seed=args.seed,
                steps=args.steps,
                setting=point,
                overrides=overrides,
                val_accuracy=round(100 * row["accuracy_mean"], 2),
                val_std=round(100 * row["accuracy_std"], 2),
                per_draw=[round(100 * a, 2) for a in accuracies],
            )
        ),
        flush=True,
    )


if __name__ == "__main__":
  main()
