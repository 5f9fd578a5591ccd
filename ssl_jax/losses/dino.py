"""DINO's self-distillation loss (Caron et al. 2021, eq. 3 and Algorithm 1).

The teacher sees the two global crops, the student every crop; each student view learns to match
each teacher view of another crop. Centring the teacher's logits (an EMA of their batch mean) keeps
one dimension from dominating, sharpening them (a low teacher temperature) keeps the output from
going uniform: together they are what stops the collapse.
"""

import numbers

import jax
import jax.numpy as jnp


def dino(
    student_logits,
    teacher_logits,
    center,
    *,
    student_temperature=0.1,
    teacher_temperature=0.04,
    axis_name=None,
):
  """Returns (loss, metrics) for student (V, n, K), teacher (2, n, K) logits and a centre (K,).

  Student views 0 and 1 are the global crops the teacher saw; pairs of the same crop are skipped.
  The loss averages over the 2 * (V - 1) pairs. Under `jit` pass global arrays; inside
  `shard_map`/`pmap` pass the mapped axis to average over the global batch.

  Metrics are the collapse signals of the paper's Fig. 7: `teacher_entropy` (near 0 when one
  dimension dominates, near log K when uniform) and `kl`, KL(teacher || student) over the same
  pairs, which falls to 0 in either collapse.
  """
  for name, value in (
      ("student_temperature", student_temperature),
      ("teacher_temperature", teacher_temperature),
  ):
    if isinstance(value, numbers.Real) and not value > 0:  # numbers; arrays may be traced
      raise ValueError(f"{name} must be > 0, got {value}")
  _check_teacher(teacher_logits)
  if (
      student_logits.ndim != 3
      or student_logits.shape[0] < 2
      or student_logits.shape[1:] != teacher_logits.shape[1:]
  ):
    raise ValueError(
        f"student_logits must be (V, n, K) with V >= 2 and (n, K) as in "
        f"teacher_logits {teacher_logits.shape}; got {student_logits.shape}"
    )
  if center.shape != teacher_logits.shape[-1:]:
    raise ValueError(
        f"center must be (K,) = {teacher_logits.shape[-1:]} as in teacher_logits; "
        f"got {center.shape}"
    )
  num_views = student_logits.shape[0]
  centered = (teacher_logits.astype(jnp.float32) - center.astype(jnp.float32)) / teacher_temperature
  teacher_log_probs = jax.lax.stop_gradient(jax.nn.log_softmax(centered, axis=-1))
  teacher_probs = jnp.exp(teacher_log_probs)
  student_log_probs = jax.nn.log_softmax(
      student_logits.astype(jnp.float32) / student_temperature, axis=-1
  )
  cross_entropy = -jnp.einsum("tnk,vnk->tvn", teacher_probs, student_log_probs).mean(axis=-1)
  different_crop = ~jnp.eye(2, num_views, dtype=bool)  # (t, v) with v != t
  loss = jnp.sum(jnp.where(different_crop, cross_entropy, 0.0)) / (2 * (num_views - 1))
  # Every teacher view meets V - 1 student views, so the pair-averaged teacher entropy is this.
  teacher_entropy = -jnp.mean(jnp.sum(teacher_probs * teacher_log_probs, axis=-1))
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
    teacher_entropy = jax.lax.pmean(teacher_entropy, axis_name)
  kl = jax.lax.stop_gradient(loss) - teacher_entropy
  return loss, {"teacher_entropy": teacher_entropy, "kl": kl}


def batch_center(teacher_logits, *, axis_name=None):
  """Mean (K,) of the teacher's logits over both views and the global batch."""
  _check_teacher(teacher_logits)
  mean = jnp.mean(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), axis=(0, 1))
  if axis_name is not None:
    mean = jax.lax.pmean(mean, axis_name)
  return mean


def update_center(center, teacher_logits, *, momentum, axis_name=None):
  """The centre's EMA step: momentum * center + (1 - momentum) * batch_center."""
  new = batch_center(teacher_logits, axis_name=axis_name)
  if center.shape != new.shape:
    raise ValueError(
        f"center must be (K,) = {new.shape} as in teacher_logits "
        f"{teacher_logits.shape}; got {center.shape}"
    )
  return momentum * center.astype(jnp.float32) + (1 - momentum) * new


def teacher_temperature_schedule(step, *, warmup_steps, start=0.04, end=0.07):
  """Linear from `start` at step 0 to `end` at `warmup_steps`, then `end`; `step` may be traced.

  The paper warms the teacher temperature up because a high one early makes training unstable.
  """
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
  step = jnp.asarray(step, jnp.float32)
  fraction = jnp.clip(step / warmup_steps, 0.0, 1.0) if warmup_steps > 0 else jnp.ones_like(step)
  return start + (end - start) * fraction


def _check_teacher(teacher_logits):
  if teacher_logits.ndim != 3 or teacher_logits.shape[0] != 2:
    raise ValueError(
        f"teacher_logits must be (2, n, K), the two global crops; " f"got {teacher_logits.shape}"
    )
