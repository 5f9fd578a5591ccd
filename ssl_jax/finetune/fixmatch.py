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
With `fixmatch_flex`, each class gets its own threshold (FlexMatch, Zhang et al. 2021, curriculum
pseudo-labelling; `flex_thresholds`): a class whose pool examples are rarely predicted confidently
is learnt slowly, so its threshold is lowered in proportion. The pool is then drawn without
replacement within a step, so each drawn example updates its record once.
With `fixmatch_ema` > 0 the fit evaluates and returns an exponential moving average of the
weights, as the paper's code does (decay 0.999 there): after step t the average takes
1 - d_t of the new weights, d_t = min(ema, (1 + t) / (10 + t)) (the warm-up of TensorFlow's
ExponentialMovingAverage with num_updates, so that a run of a few thousand steps does not keep
the starting weights in its average); BatchNorm's running statistics are the model's own.
Hyperparameters: the paper's threshold 0.95, weight 1 and ratio 7; the learning rate and weight
decay are the `full` mode's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ssl_jax.finetune import objectives
from ssl_jax.finetune import step as step_lib

TRACED = step_lib.TRACED + ("fixmatch_threshold", "fixmatch_weight")


def weak_predictions(weak_logits, prior_ratio=None):
  """-> (confidence, pseudo-label, the mean weak probabilities before alignment), no gradient.

  prior_ratio: (classes,) factors for the weak probabilities before the threshold (distribution
  alignment), or None."""
  probs = jax.nn.softmax(jax.lax.stop_gradient(weak_logits).astype(jnp.float32), axis=-1)
  raw_mean = jnp.mean(probs, axis=0)
  if prior_ratio is not None:
    probs = probs * prior_ratio
    probs = probs / jnp.sum(probs, axis=-1, keepdims=True)
  return jnp.max(probs, axis=-1), jnp.argmax(probs, axis=-1), raw_mean


def pseudo_label_loss(weak_logits, strong_logits, threshold, prior_ratio=None):
  """-> (mean masked cross-entropy, {'mask_rate', 'weak_probs_mean'}); see the module docstring.

  threshold: a scalar, or (classes,) one per class, applied by the pseudo-label's class
  (FlexMatch). prior_ratio: as in `weak_predictions`."""
  confidence, labels, raw_mean = weak_predictions(weak_logits, prior_ratio)
  threshold = jnp.asarray(threshold, jnp.float32)
  cut = threshold[labels] if threshold.ndim else threshold
  mask = (confidence >= cut).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(strong_logits.astype(jnp.float32), labels)
  return jnp.mean(mask * ce), {"mask_rate": jnp.mean(mask), "weak_probs_mean": raw_mean}


def flex_thresholds(pool_labels, threshold, num_classes, previous_beta):
  """FlexMatch's class-wise thresholds (Zhang et al. 2021, Eqs. 6-7, with threshold warm-up).

  pool_labels: (N,) int, per pool example its last pseudo-label predicted with confidence above
  `threshold`, or -1 while it has never been. With sigma_c the pool examples held by class c and
  `unused` those at -1, beta_c = sigma_c / max(max_c' sigma_c', unused), and class c's threshold
  is threshold * M(beta_c) with the convex mapping M(b) = b / (2 - b). While every record is
  equal (all unused at the start), beta stays `previous_beta` (zeros at the start: every
  pseudo-label counts, as in the authors' code). -> (beta (classes,), thresholds (classes,))."""
  counts = jnp.bincount(pool_labels + 1, length=num_classes + 1)
  unused, sigma = counts[0], counts[1:]
  beta = sigma / jnp.maximum(jnp.max(sigma), unused).astype(jnp.float32)
  beta = jnp.where(jnp.max(counts) < pool_labels.shape[0], beta, previous_beta)
  return beta, threshold * beta / (2.0 - beta)


def ema_update(average, weights, decay, updates):
  """The moving average after its `updates`-th update (1, 2, ...): each leaf
  d * average + (1 - d) * weights with d = min(decay, (1 + updates) / (10 + updates))."""
  updates = jnp.asarray(updates, jnp.float32)
  d = jnp.minimum(decay, (1.0 + updates) / (10.0 + updates))
  return jax.tree.map(lambda a, w: d * a + (1.0 - d) * w, average, weights)


class FixMatchFinetuner(step_lib.Finetuner):
  """`full` fine-tuning with FixMatch's unlabelled term; `fit` takes the pool."""

  traced = TRACED

  def __init__(
      self,
      model,
      *,
      batch_size,
      unlabeled_ratio=7,
      align=False,
      flex_pool=0,
      ema=0.0,
      momentum=0.999,
  ):
    """flex_pool: the pool's size for FlexMatch's class-wise thresholds (0: one threshold).
    ema: the decay of the weights' moving average the fit returns (0: the last weights)."""
    if unlabeled_ratio < 1:
      raise ValueError(f"finetune.fixmatch_unlabeled_ratio={unlabeled_ratio}; accepted: >= 1")
    if not 0.0 <= ema < 1.0:
      raise ValueError(
          f"finetune.fixmatch_ema={ema}; accepted: 0 (off) or a decay in (0, 1), e.g. the "
          "paper's 0.999"
      )
    self.ema = float(ema)
    if not hasattr(model.inputs, "strong"):
      raise ValueError(f"{type(model.inputs).__name__} inputs have no strong view for FixMatch")
    self.unlabeled_ratio, self.align, self.momentum = int(unlabeled_ratio), bool(align), momentum
    self.flex_pool = int(flex_pool)
    if self.flex_pool and self.flex_pool < batch_size * self.unlabeled_ratio:
      raise ValueError(
          f"finetune.fixmatch_flex needs a pool of at least fixmatch_batch_size * "
          f"fixmatch_unlabeled_ratio = {batch_size * self.unlabeled_ratio} examples (each "
          f"step draws them without replacement); the pool has {self.flex_pool}"
      )
    self._pool = None
    super().__init__(model, "full", batch_size=batch_size, augment=True)

  def _initial_state(self, variables, rng):
    state = super()._initial_state(variables, rng)
    classes = self.model.num_classes
    state = {**state, "weak_mean": jnp.full((classes,), 1.0 / classes, jnp.float32)}
    if self.flex_pool:
      state["pool_labels"] = jnp.full((self.flex_pool,), -1, jnp.int32)
      state["class_beta"] = jnp.zeros((classes,), jnp.float32)
    if self.ema:
      state["ema"] = jax.tree.map(jnp.copy, state["trainable"])
    return state

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
    threshold, flex = hp["fixmatch_threshold"], {}
    if self.flex_pool:
      confidence, labels, _ = weak_predictions(weak, ratio)
      held = state["pool_labels"][batch["u_index"]]
      flex["pool_labels"] = (
          state["pool_labels"]
          .at[batch["u_index"]]
          .set(jnp.where(confidence > threshold, labels.astype(jnp.int32), held))
      )
      flex["class_beta"], threshold = flex_thresholds(
          flex["pool_labels"], threshold, self.model.num_classes, state["class_beta"]
      )
    unsupervised, extra = pseudo_label_loss(weak, strong, threshold, ratio)
    loss = supervised + hp["fixmatch_weight"] * unsupervised
    return loss, (model_state, labelled, {**extra, **flex})

  def _step_fn(self, state, batch, hp):
    state, metrics = super()._step_fn(state, batch, hp)
    weak_mean = metrics.pop("weak_probs_mean")
    state["weak_mean"] = self.momentum * state["weak_mean"] + (1 - self.momentum) * weak_mean
    if self.flex_pool:
      state["pool_labels"] = metrics.pop("pool_labels")
      state["class_beta"] = metrics.pop("class_beta")
      metrics["class_beta_min"] = jnp.min(state["class_beta"])
    if self.ema:
      state["ema"] = ema_update(state["ema"], state["trainable"], self.ema, state["step"])
    return state, metrics

  def _export_fn(self, state):
    if not self.ema:
      return super()._export_fn(state)
    return {"params": self._params(state["ema"], state["frozen"]), **state["model_state"]}

  def _draw(self, sampler, x, y):
    batch = super()._draw(sampler, x, y)
    size = self.batch_size * self.unlabeled_ratio
    if not self.flex_pool:
      idx = sampler.integers(0, len(self._pool), size)
      return {**batch, "u": self._pool[idx]}
    idx = sampler.choice(len(self._pool), size, replace=False)
    return {**batch, "u": self._pool[idx], "u_index": idx.astype(np.int32)}

  def fit(self, variables, x, y, *, pool, **kwargs):
    """Finetuner.fit with the unlabelled `pool` (N, ...) (labelled examples may be in it)."""
    if self.flex_pool and len(pool) != self.flex_pool:
      raise ValueError(
          f"a pool of {len(pool)} examples for a FlexMatch step built for {self.flex_pool}"
      )
    self._pool = pool
    try:
      return super().fit(variables, x, y, **kwargs)
    finally:
      self._pool = None
