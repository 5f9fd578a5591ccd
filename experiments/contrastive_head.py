"""Which head for the contrastive mode: the linear probe's or SetFit's, chosen on validation rows.

  python experiments/contrastive_head.py

On all-MiniLM-L6-v2's features of BBC News (the text main job's label pool, 100 articles per
class, configs/text_default.py), for 4 label draws at 1 / 5 / 10 labels per class, each head is
fitted on the drawn articles and scored on the pool's other articles (validation: never the test
split). Heads:
  probe             finetune/linear.py as the study's linear probe runs it (standardised
                    features, Adam, L2 penalty 1e-4)
  setfit_sklearn    SetFit's: scikit-learn's LogisticRegression (C=1) on L2-normalised features
  setfit_ours       the contrastive mode's head: linear.py without standardisation, on
                    L2-normalised features, penalty 1/(2 C N), C=1 (scikit-learn's objective)
Prints one line per budget, the table last.
"""

import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssl_jax import config as config_lib  # noqa: E402
from ssl_jax import models  # noqa: E402
from ssl_jax import sharding as sharding_lib  # noqa: E402
from ssl_jax.data import subsets  # noqa: E402
from ssl_jax.data import text_tokens  # noqa: E402
from ssl_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from ssl_jax.finetune import inputs as inputs_lib  # noqa: E402
from ssl_jax.finetune import linear  # noqa: E402
from ssl_jax.finetune import model as model_lib  # noqa: E402
from ssl_jax.modalities import text as text_modality  # noqa: E402
from ssl_jax.study import loop  # noqa: E402


def heads(features, labels, train, val):
  """{head: validation accuracy} for one draw."""
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  fit = lambda x, **kw: linear.fit(
      x[train], labels[train], num_classes=5, mesh=None, learning_rate=0.05, steps=300, **kw
  )
  probe = fit(features, weight_decay=1e-4)
  ours = fit(unit, weight_decay=1 / (2 * len(train)), standardize=False)
  sklearn = LogisticRegression(C=1.0, max_iter=1000).fit(unit[train], labels[train])
  return {
      "probe": linear.accuracy(probe, features[val], labels[val]),
      "setfit_sklearn": sklearn.score(unit[val], labels[val]),
      "setfit_ours": linear.accuracy(ours, unit[val], labels[val]),
  }


def main():
  here = os.path.dirname(os.path.abspath(__file__))
  c = config_lib.load(os.path.join(here, "..", "configs", "text_default.py"))
  corpus = text_modality.load_corpus(c)
  pool = text_modality.label_pool(c, corpus)
  labels = corpus.train_labels[pool]
  generic = text_modality.tapt_config(c).model
  tokenizer = tokenizer_lib.load(c.generic_model)
  ids = text_tokens.encode(tokenizer, [corpus.train_texts[i] for i in pool], max_len=c.text.max_len)
  model = model_lib.Model(
      models.build_encoder(generic),
      num_classes=corpus.num_classes,
      mesh=sharding_lib.make_mesh(c),
      inputs=inputs_lib.Tokens(pad_id=tokenizer.pad_token_id),
      example=ids,
      eval_batch_size=64,
  )
  features = model.features({"params": models.pretrained_params(generic)}, ids)
  lines = ["| labels/class | probe | setfit_sklearn | setfit_ours |", "|---:|---:|---:|---:|"]
  for budget in (1, 5, 10):
    scores = {}
    for draw in range(4):
      train = subsets.per_class(labels, budget, loop.draw_seed(c, budget, draw))
      val = np.setdiff1d(np.arange(len(labels)), train)
      for name, accuracy in heads(features, labels, train, val).items():
        scores.setdefault(name, []).append(accuracy)
    means = {k: 100 * np.mean(v) for k, v in scores.items()}
    print(budget, {k: round(v, 1) for k, v in means.items()}, flush=True)
    lines.append(f"| {budget} | " + " | ".join(f"{means[k]:.1f}" for k in means) + " |")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
