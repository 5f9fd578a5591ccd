"""Label-efficiency study: accuracy against labels per class, SSL features versus baselines.

For each labels-per-class budget and each of `num_draws` seeded label draws, compares:
  ssl_linear_probe    linear classifier on the frozen pre-trained encoder's features
  supervised_scratch  the same encoder architecture trained from random init on those labels only
                      (Adam, random-resized-crop scale 0.5-1 and the pre-training flip probability)
  ssl_finetune        the same training as supervised_scratch, starting from the pre-trained encoder
  pixels_logreg       the same linear classifier on raw pixels
Writes DIR/results.json and DIR/label_efficiency.png and prints the table.
"""
import functools
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.data import image_ops
from ssl_jax.evaluators import linear_probe
from ssl_jax.models import resnet

METHODS = ("ssl_linear_probe", "supervised_scratch", "ssl_finetune", "pixels_logreg")


def draw_subset(labels, per_class, seed):
  """`per_class` indices of each class, drawn without replacement, deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels[labels >= 0]):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise ValueError(f"class {c} has {len(members)} labelled examples; cannot draw {per_class}")
    picked.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(picked))


def encoder_variables(state):
  """{collection: encoder subtree} of a pre-training TrainState, for `ssl_finetune`."""
  return {"params": state.params["encoder"],
          **{k: v["encoder"] for k, v in state.model_state.items() if "encoder" in v}}


class Classifier(nn.Module):
  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(self.encoder(x, train=train))


class ScratchTrainer:
  """Trains the encoder architecture from random init on a labelled subset; compiled once."""

  def __init__(self, config, batch_sharding):
    model_config = config.model
    self.model = Classifier(resnet.build(model_config).encoder, config.data.num_classes)
    study = config.label_efficiency
    self.steps, self.batch_size = study.scratch_steps, study.scratch_batch_size
    self.tx = optax.adam(optax.cosine_decay_schedule(study.scratch_learning_rate, self.steps))
    self.augment = dict(crop_scale=(0.5, 1.0), flip_prob=config.augment.flip_prob, jitter_prob=0.0,
                        grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
    self.image_size = config.data.image_size
    self.batch_sharding = batch_sharding
    self.replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
    self._step = jax.jit(self._step_fn, donate_argnums=0)
    self._predict = jax.jit(self._predict_fn)

  def _step_fn(self, state, images, labels, rng):
    x = image_ops.augment_views(rng, images.astype(jnp.float32) / 255.0, num_views=1,
                                crop_size=self.image_size, **self.augment)[0]

    def loss_fn(params):
      logits, new_state = self.model.apply({"params": params, **state["model_state"]}, x, train=True,
                                           mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
            "model_state": new_state}, loss

  def _predict_fn(self, state, images):
    x = images.astype(jnp.float32) / 255.0
    return jnp.argmax(self.model.apply({"params": state["params"], **state["model_state"]}, x), -1)

  def initial_state(self, image_shape, seed, encoder=None):
    """Random init; `encoder` ({collection: tree}) replaces the encoder's part (fine-tuning)."""
    rng = jax.random.PRNGKey(seed)
    variables = flax.core.unfreeze(self.model.init(rng, jnp.zeros((2,) + image_shape, jnp.float32)))
    for collection, tree in (encoder or {}).items():
      variables[collection]["encoder"] = tree
    params = variables.pop("params")
    state = {"params": params, "opt_state": self.tx.init(params), "model_state": dict(variables)}
    return jax.device_put(state, self.replicated, may_alias=False)  # the step donates it

  def fit_and_score(self, images, labels, test_images, test_labels, seed, encoder=None):
    """Test accuracy after training on (images, labels) from `initial_state`."""
    rng = jax.random.PRNGKey(seed)
    state = self.initial_state(images.shape[1:], seed, encoder)
    sampler = np.random.default_rng(seed)
    for step in range(self.steps):
      idx = sampler.integers(0, len(images), self.batch_size)
      batch = jax.device_put((images[idx], labels[idx]), self.batch_sharding)
      state, _ = self._step(state, *batch, jax.random.fold_in(rng, step))
    correct = 0
    for start in range(0, len(test_images), 500):
      correct += int(np.sum(np.asarray(self._predict(state, test_images[start:start + 500]))
                            == test_labels[start:start + 500]))
    return correct / len(test_images)


def run(config, features_of, train_source, test_source, batch_sharding, pretrained_encoder=None):
  """`pretrained_encoder`: {collection: the encoder's subtree} of the pre-trained model."""
  study = config.label_efficiency
  unknown = sorted(set(study.methods) - set(METHODS))
  if unknown:
    raise ValueError(f"label_efficiency.methods has {unknown}; accepted: {list(METHODS)}")
  train_images, train_labels = train_source.arrays()
  test_images, test_labels = test_source.arrays()
  num_classes = config.data.num_classes
  max_subset = max(study.labels_per_class) * num_classes
  probe = functools.partial(linear_probe.fit, num_classes=num_classes, steps=study.probe_steps,
                            pad_to=max_subset)
  inputs = {}
  if "ssl_linear_probe" in study.methods:
    inputs["ssl_linear_probe"] = (features_of(train_images), features_of(test_images))
  if "pixels_logreg" in study.methods:
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
    inputs["pixels_logreg"] = (flat(train_images), flat(test_images))
  trained = {"supervised_scratch", "ssl_finetune"} & set(study.methods)
  scratch = ScratchTrainer(config, batch_sharding) if trained else None

  rows = []
  for per_class in study.labels_per_class:
    scores = {m: [] for m in study.methods}
    for draw in range(study.num_draws):
      seed = config.seed * 1_000_003 + per_class * 1009 + draw
      subset = draw_subset(train_labels, per_class, seed)
      for method, (train_x, test_x) in inputs.items():
        predict = probe(train_x[subset], train_labels[subset])
        scores[method].append(linear_probe.accuracy(predict, test_x, test_labels))
      for method in sorted(trained):
        init = pretrained_encoder if method == "ssl_finetune" else None
        scores[method].append(scratch.fit_and_score(
            train_images[subset], train_labels[subset], test_images, test_labels, seed, encoder=init))
    for method in study.methods:
      acc = np.asarray(scores[method])
      rows.append({"labels_per_class": int(per_class), "method": method,
                   "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                   "n_draws": len(acc), "accuracies": acc.tolist()})
      print(f"labels/class {per_class:4d}  {method:20s} {acc.mean():.4f} +- {acc.std():.4f}",
            flush=True)
  return rows


def write(workdir, rows, extra):
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"label_efficiency": rows, **extra}, f, indent=2)
  print(format_table(rows), flush=True)
  plot(rows, os.path.join(workdir, "label_efficiency.png"))


def format_table(rows):
  methods = list(dict.fromkeys(r["method"] for r in rows))
  budgets = sorted({r["labels_per_class"] for r in rows})
  cell = {(r["labels_per_class"], r["method"]): r for r in rows}
  lines = ["labels/class | " + " | ".join(f"{m:>22s}" for m in methods)]
  for b in budgets:
    parts = [f"{100 * cell[b, m]['accuracy_mean']:6.2f} +- {100 * cell[b, m]['accuracy_std']:5.2f} %"
             for m in methods]
    lines.append(f"{b:12d} | " + " | ".join(f"{p:>22s}" for p in parts))
  return "\n".join(lines)


def plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for method in dict.fromkeys(r["method"] for r in rows):
    mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["labels_per_class"])
    ax.errorbar([r["labels_per_class"] for r in mine], [100 * r["accuracy_mean"] for r in mine],
                yerr=[100 * r["accuracy_std"] for r in mine], marker="o", capsize=3, label=method)
  ax.set_xscale("log")
  ax.set_xlabel("labels per class")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
