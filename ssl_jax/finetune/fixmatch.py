"""FixMatch (Sohn et al. 2020): fine-tuning on a few labels and an unlabelled pool together.

Each step draws `batch_size` labelled examples (with replacement) and `unlabeled_ratio` times as
many from the pool. The labelled ones take the weak view (the modality's light augmentation,
inputs.py) and the cross-entropy. Each pool example takes a weak and a strong view
(`inputs.strong`); the model's prediction on the weak view, not differentiated, becomes the
pseudo-label of the strong view where its confidence reaches `fixmatch_threshold`:

  loss = CE(labelled) + fixmatch_weight * mean over the pool batch of
         1[max_c p_weak(c) >= threshold] * CE(strong logits, argmax_c p_weak(c))

(the mean is over all of the pool batch, confident or not: the paper's Eq. 4). All views go
through the encoder as one batch, so BatchNorm normalises over all of them, as the paper's code
does. With `fixmatch_align`, the weak predictions are first multiplied by a uniform class prior
over their running mean and renormalised (distribution alignment, Berthelot et al. 2020,
ReMixMatch), which keeps one class from taking every pseudo-label when labels are this few.
Hyperparameters: the paper's threshold 0.95, weight 1 and ratio 7; the learning rate and weight
decay are the `full` mode's.
"""

import jax
import jax.numpy as jnp
import optax

from ssl_jax.finetune import objectives
from ssl_jax.finetune import step as step_lib

TRACED = step_lib.TRACED + ("fixmatch_threshold", "fixmatch_weight")


def pseudo_label_loss(weak_logits, strong_logits, threshold, prior_ratio=None):
  """-> (mean masked cross-entropy, {'mask_rate', 'weak_probs_mean'}); see the module docstring.

  prior_ratio: (classes,) factors for the weak probabilities before the threshold (distribution
  alignment), or None."""
  probs = jax.nn.softmax(jax.lax.stop_gradient(weak_logits).astype(jnp.float32), axis=-1)
  raw_mean = jnp.mean(probs, axis=0)
  if prior_ratio is not None:
    probs = probs * prior_ratio
    probs = probs / jnp.sum(probs, axis=-1, keepdims=True)
  confidence, labels = jnp.max(probs, axis=-1), jnp.argmax(probs, axis=-1)
  mask = (confidence >= threshold).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(strong_logits.astype(jnp.float32), labels)
  return jnp.mean(mask * ce), {"mask_rate": jnp.mean(mask), "weak_probs_mean": raw_mean}


class FixMatchFinetuner(step_lib.Finetuner):
  """`full` fine-tuning with FixMatch's unlabelled term; `fit` takes the pool."""

  traced = TRACED

  def __init__(self, model, *, batch_size, unlabeled_ratio=7, align=False, momentum=0.999):
    super().__init__(model, "full", batch_size=batch_size, augment=True)
    if unlabeled_ratio < 1:
      raise ValueError(f"finetune.fixmatch_unlabeled_ratio={unlabeled_ratio}; accepted: >= 1")
    if not hasattr(model.inputs, "strong"):
      raise ValueError(f"{type(model.inputs).__name__} inputs have no strong view for FixMatch")
    self.unlabeled_ratio, self.align, self.momentum = int(unlabeled_ratio), bool(align), momentum
    self._pool = None

  def _initial_state(self, variables, rng):
    state = super()._initial_state(variables, rng)
    classes = self.model.num_classes
    return {**state, "weak_mean": jnp.full((classes,), 1.0 / classes, jnp.float32)}

  def _loss(self, trainable, state, batch, hp, rng):
    inputs = self.model.inputs
    k_labelled, k_weak, k_strong = jax.random.split(rng, 3)
    n, u = batch["x"].shape[0], batch["u"].shape[0]
    views = jnp.concatenate(
        [
            inputs.augment(k_labelled, batch["x"]),
            inputs.augment(k_weak, batch["u"]),
            inputs.strong(k_strong, batch["u"]),
        ]
    )
    logits, model_state = self._apply(trainable, state, views, rng)
    labelled, weak, strong = logits[:n], logits[n : n + u], logits[n + u :]
    supervised = objectives.smoothed_cross_entropy(labelled, batch["y"], hp["label_smoothing"])
    ratio = (1.0 / self.model.num_classes) / state["weak_mean"] if self.align else None
    unsupervised, extra = pseudo_label_loss(weak, strong, hp["fixmatch_threshold"], ratio)
    loss = supervised + hp["fixmatch_weight"] * unsupervised
    return loss, (model_state, labelled, extra)

  def _step_fn(self, state, batch, hp):
    state, metrics = super()._step_fn(state, batch, hp)
    weak_mean = metrics.pop("weak_probs_mean")
    state["weak_mean"] = self.momentum * state["weak_mean"] + (1 - self.momentum) * weak_mean
    return state, metrics

  def _draw(self, sampler, x, y):
    batch = super()._draw(sampler, x, y)
    idx = sampler.integers(0, len(self._pool), self.batch_size * self.unlabeled_ratio)
    return {**batch, "u": self._pool[idx]}

  def fit(self, variables, x, y, *, pool, **kwargs):
    """Finetuner.fit with the unlabelled `pool` (N, ...) (labelled examples may be in it)."""
    self._pool = pool
    try:
      return super().fit(variables, x, y, **kwargs)
    finally:
      self._pool = None
