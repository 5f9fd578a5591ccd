"""The text study's labelled pool, test set and label draws as JSON, for outside references.

  python experiments/text_draws.py --config=configs/text_default.py [--config.KEY=VALUE ...] \\
      [--budgets=1,10,50] [--draws=N] --out=FILE

Reads the corpus and the labelled pool exactly as the text study does
(ssl_jax/modalities/text.py: load_corpus, label_pool) and draws each budget's labels as the
study loop does (ssl_jax/study/loop.py: draw_seed, subsets.per_class on the pool's labels), so
a library outside this codebase (experiments/setfit_reference.py) trains on the same labels and
scores on the same test texts. Budgets default to config.label_efficiency.labels_per_class,
draws to config.label_efficiency.num_draws. The JSON holds "dataset", "num_classes",
"classes", "pool_texts", "pool_labels", "test_texts", "test_labels", "draws" ({budget: [[pool
indices of draw 0], ...]}, -1: every label) and "config" (the values that decide them).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import main as main_lib  # noqa: E402
from ssl_jax.data import subsets  # noqa: E402
from ssl_jax.modalities import text as text_modality  # noqa: E402
from ssl_jax.study import loop  # noqa: E402


def parse(argv):
  """(locked config, budgets or None, draws or None, out path) from the command line; the
  `--config.KEY=VALUE` overrides are ssl_jax/main.py's (config_lib.override)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="configs/NAME.py[:ARG]")
  parser.add_argument("--budgets", default="", help="labels per class, e.g. 1,10,50")
  parser.add_argument("--draws", type=int, default=0, help="draws per budget (0: the config's)")
  parser.add_argument("--out", required=True, help="the JSON file to write")
  args, rest = parser.parse_known_args(argv)
  config = config_lib.override(config_lib.load(args.config), main_lib.overrides(parser, rest))
  budgets = [int(b) for b in args.budgets.split(",") if b.strip()] or None
  return config_lib.finalize(config), budgets, args.draws or None, args.out


def study_config(config, budgets, draws):
  """`config` with the study's budgets and draws set (label_pool checks the largest budget)."""
  changes = {}
  if budgets:
    changes["label_efficiency.labels_per_class"] = tuple(budgets)
  if draws:
    changes["label_efficiency.num_draws"] = draws
  return config_lib.derive(config, changes)


def label_draws(config, pool_labels):
  """{budget: [pool indices of each draw]} over the budgets every class can meet (loop.run's)."""
  study = config.label_efficiency
  out = {}
  for budget, _ in loop.budgets(pool_labels, study.labels_per_class):
    if budget == loop.ALL_LABELS:
      out[budget] = [np.arange(len(pool_labels))] * study.num_draws
      continue
    out[budget] = [
        subsets.per_class(pool_labels, budget, loop.draw_seed(config, budget, draw))
        for draw in range(study.num_draws)
    ]
  return out


def draws_record(config):
  """The JSON record the module docstring describes, for `config`."""
  corpus = text_modality.load_corpus(config)
  pool = text_modality.label_pool(config, corpus)
  pool_labels = corpus.train_labels[pool]
  draws = label_draws(config, pool_labels)
  return {
      "dataset": corpus.name,
      "num_classes": int(corpus.num_classes),
      "classes": list(corpus.classes) if corpus.classes else None,
      "pool_texts": [corpus.train_texts[i] for i in pool],
      "pool_labels": pool_labels.tolist(),
      "test_texts": list(corpus.test_texts),
      "test_labels": corpus.test_labels.tolist(),
      "draws": {str(b): [d.tolist() for d in per_draw] for b, per_draw in draws.items()},
      "config": {
          "source": config.data.source,
          "max_len": config.text.max_len,
          "seed": config.seed,
          "label_pool_per_class": config.text.label_pool_per_class,
          "test_per_class": config.text.test_per_class,
          "holdout_per_class": config.data.holdout_per_class,
          "holdout_seed": config.data.holdout_seed,
          "num_draws": config.label_efficiency.num_draws,
      },
  }


def main(argv=None):
  config, budgets, draws, out = parse(sys.argv[1:] if argv is None else argv)
  record = draws_record(study_config(config, budgets, draws))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(record, f)
  sizes = ", ".join(f"{b}: {len(d)} x {len(d[0])}" for b, d in record["draws"].items())
  print(
      f"{record['dataset']}: {len(record['pool_texts'])} pool texts, "
      f"{len(record['test_texts'])} test texts, draws (budget: draws x labels) {sizes} -> {out}",
      flush=True,
  )


if __name__ == "__main__":
  main()
