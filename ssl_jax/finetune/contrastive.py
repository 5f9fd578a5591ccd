"""Contrastive few-label fine-tuning (`finetune.mode=contrastive`): SetFit's recipe for any encoder.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes a sentence
encoder on pairs of labelled examples, the cosine similarity of a pair regressed onto 1 when both
share a class and 0 otherwise (sentence-transformers' CosineSimilarityLoss), then fits a logistic
regression head on the tuned encoder's features. Here the pairs are every pair of one step's batch
(`batch_size` labelled examples drawn with replacement; an example is not paired with itself), and
the positive and negative pairs weigh equally, as SetFit's sampling of one positive and one
negative pair per example makes them:

  loss = 1/2 mean over same-class pairs (i, j) of (cos(z_i, z_j) - 1)^2
       + 1/2 mean over other pairs of cos(z_i, z_j)^2

(`pair_loss`; z: the encoder's features, which are what the head reads). The encoder trains in
training mode (dropout, batch statistics) with every parameter free, with the `full` mode's AdamW,
cosine schedule and augmentation, for `contrastive_steps` steps of `contrastive_batch_size`
(`contrastive_epochs` > 0: at least that many passes over the labels, as `finetune.epochs` does),
at `contrastive_learning_rate`. Then the head: SetFit's logistic regression (scikit-learn's, L2
penalty at C = `contrastive_head_c`, 1 by default) on the L2-normalised tuned features, fitted by
linear.py without standardisation; the classifier reads normalised features (a twin model whose
`Classifier.normalize_features` is on), so the kept classifier predicts as it was scored. On the
validation rows of BBC News (the label pool's undrawn texts), this head on the generic MiniLM's
features beat the linear probe's (standardised features, Adam) by 7.8 / 1.8 / 0.9 points at 1 / 5
/ 10 labels per class (experiments/text.md). Nothing here is specific to text: images and series
train the same way on their own views (inputs.py).
"""

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.finetune import linear
from ssl_jax.finetune import protocol
from ssl_jax.finetune import step as step_lib


def pair_loss(features, labels):
  """-> (loss, {'positive_cosine', 'negative_cosine'}): see the module docstring."""
  z = features.astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  cos = z @ z.T
  others = ~jnp.eye(len(z), dtype=bool)
  same = (labels[:, None] == labels[None, :]) & others
  different = labels[:, None] != labels[None, :]

  def mean(values, where):
    return jnp.sum(jnp.where(where, values, 0.0)) / jnp.maximum(jnp.sum(where), 1)

  positive, negative = mean((cos - 1.0) ** 2, same), mean(cos**2, different)
  # a batch without pairs of one kind (one class drawn, or no class twice) has only the other term
  has = jnp.stack([jnp.any(same), jnp.any(different)]).astype(jnp.float32)
  loss = (has[0] * positive + has[1] * negative) / jnp.maximum(jnp.sum(has), 1.0)
  return loss, {"positive_cosine": mean(cos, same), "negative_cosine": mean(cos, different)}


class ContrastiveFinetuner(step_lib.Finetuner):
  """The `full` mode's step with `pair_loss` on the encoder's features in place of the labels'
  cross-entropy (the head gets no gradient; it is fitted afterwards)."""

  def __init__(self, model, *, batch_size, augment=True):
    super().__init__(model, "full", batch_size=batch_size, augment=augment)

  def _loss(self, trainable, state, batch, hp, rng):
    inputs = self.model.inputs
    x = inputs.augment(rng, batch["x"]) if self.augment else inputs.preprocess(batch["x"])
    variables = {"params": self._params(trainable, state["frozen"]), **state["model_state"]}
    (logits, features), model_state = self.model.module.apply(
        variables,
        x,
        train=True,
        with_features=True,
        mutable=list(state["model_state"]),
        rngs={"dropout": jax.random.fold_in(rng, 1)},
    )
    loss, extra = pair_loss(features, batch["y"])
    return loss, (dict(model_state), logits, extra)


class ContrastiveMethod:
  """The study's and the standalone command's `contrastive` mode: `model` (finetune.model.Model)
  from `init` ({collection: encoder subtree}; None: random weights). Its classifier reads the
  L2-normalised features (`normalize_features`, a twin of `model`)."""

  mode = "contrastive"
  normalize_features = True  # what a kept classifier records for python -m ssl_jax.predict

  def __init__(self, model, finetune_config, *, init=None, pad_to=None):
    if not model.normalize_features:
      model = model.twin(normalize_features=True)
    self.model, self.config, self.init, self.pad_to = model, finetune_config, init, pad_to

  @staticmethod
  def defaults(finetune_config):
    """The `full` mode's settings with the contrastive stage's steps, batch and rate."""
    ft = finetune_config
    return {
        **protocol.defaults(ft),
        "steps": int(ft.contrastive_steps),
        "epochs": float(ft.contrastive_epochs),
        "batch_size": int(ft.contrastive_batch_size),
        "learning_rate": float(ft.contrastive_learning_rate),
        "contrastive_head_c": float(ft.contrastive_head_c),
    }

  def finetuner(self, hp):
    key = ("contrastive", int(hp["batch_size"]), bool(self.config.augment))
    if key not in self.model.finetuners:
      self.model.finetuners[key] = ContrastiveFinetuner(
          self.model, batch_size=key[1], augment=key[2]
      )
    return self.model.finetuners[key]

  def fit(self, hp, x, y, *, seed, val=None, log_every=0):
    """The contrastive stage on (x, y), then the head on its features; `val` scores the result."""
    hp = protocol.scheduled(hp, len(y))
    tuned = self.finetuner(hp).fit(
        self.model.init(seed, self.init),
        x,
        y,
        hp=hp,
        seed=seed,
        stop_at=hp.get("stop_at"),
        log_every=log_every,
    )
    encoder = {c: tree["encoder"] for c, tree in tuned.variables.items() if "encoder" in tree}
    features = self.model.features(encoder, x)
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    head = linear.fit(  # scikit-learn's LogisticRegression(C) objective, divided by the labels
        features,
        y,
        num_classes=self.model.num_classes,
        mesh=self.model.mesh,
        learning_rate=hp["probe_learning_rate"],
        weight_decay=1.0 / (2.0 * float(hp["contrastive_head_c"]) * len(y)),
        steps=int(hp["probe_steps"]),
        pad_to=self.pad_to,
        standardize=False,
    )
    variables = jax.tree.map(np.asarray, jax.device_get(tuned.variables))
    variables["params"]["head"] = {k: np.asarray(v) for k, v in head.items()}
    val_accuracy = self.model.accuracy(variables, *val) if val is not None else float("nan")
    return step_lib.Fit(
        variables, {}, tuned.steps_run, tuned.steps_run, val_accuracy, tuned.history
    )

  def score(self, fitted, x, y):
    return self.model.accuracy(fitted.variables, x, y)

  def counts(self, hp):
    return self.finetuner(hp).trainable_params(), self.model.num_params()
