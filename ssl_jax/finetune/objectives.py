"""Fine-tuning's supervised losses, each a mean over the batch: label-smoothed cross-entropy on
integer labels (step.py, fixmatch.py) and SimCLRv2's distillation loss on a teacher's
probabilities (step.py)."""

import jax
import jax.numpy as jnp
import optax


def smoothed_cross_entropy(logits, labels, smoothing):
  """Mean cross-entropy against (1 - smoothing) * one_hot(labels) + smoothing / num_classes."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def distillation_loss(logits, teacher_probs, temperature):
  """SimCLRv2's distillation loss (Chen et al. 2020b, Eq. 2): the mean over examples of
  -sum_y teacher_probs[y] * log softmax(logits / temperature)[y]; the teacher's probabilities are
  taken at the same temperature by the caller."""
  return jnp.mean(optax.softmax_cross_entropy(logits / temperature, teacher_probs))
