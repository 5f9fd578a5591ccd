"""TS2Vec (Yue et al., AAAI 2022): contextual consistency between two overlapping crops of a series.

Per step, as the reference implementation does: one crop length l ~ U[2^(temporal_unit+1), T] and
one overlap [left, left + l) for the whole batch; view 1 extends it to the left, [eleft, left + l),
view 2 to the right, [left, eright); every series is shifted by its own random offset. Both views
go through the encoder with timestamp masking (each projected timestep zeroed with probability
`mask_prob`) and dropout, and the hierarchical contrastive loss (losses/ts2vec.py) compares their
representations of the overlap. Evaluators read a running average of the encoder's weights (the
reference encodes with `torch.optim.swa_utils.AveragedModel`: the plain mean of the weights after
every step), kept in the task state.

Static shapes. The crop and view lengths change every step, and under `jit` every new shape would
recompile. Instead there are K = `length_buckets` fixed widths, ceil(T*j/K) for j = 1..K, and one
`lax.switch` runs the branch of the smallest width that holds both views: the step compiles once
(K branches) and only the chosen one runs. Inside a buffer the encoder zeroes everything outside
the view before every convolution, so the view's representations are exactly those of the view
encoded alone with zero padding (what the reference computes); the loss takes the overlap's valid
prefix (`length=`), so its levels, pooling and means are the reference's on the overlap
(tests/test_ts2vec_task.py checks loss and gradients against the reference recipe). Each branch
computes its gradient in its forward pass (`switch_with_gradients`), since a plain switch under
autodiff zero-fills every other branch's activations. The cost, for K=4 on average: the encoder
does about 1.3x the reference's arithmetic (1.6x with K=1), the temporal loss about 2x (it runs
at the buffer's width); measured against the alternatives in experiments/ts2vec_ucr.md.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import tasks
from ssl_jax.losses.ts2vec import hierarchical_contrastive

REFERENCE_SMALL_ITERS, REFERENCE_LARGE_ITERS, REFERENCE_SIZE_LIMIT = 200, 600, 100_000


def reference_iterations(num_series, length, features):
  """The reference's default training length: 200 steps when N*T*F <= 100,000, else 600."""
  small = num_series * length * features <= REFERENCE_SIZE_LIMIT
  return REFERENCE_SMALL_ITERS if small else REFERENCE_LARGE_ITERS


def fast_key(rng):
  """A counter-based (XLA RngBitGenerator) key derived from `rng`: dropout draws one bit per unit
  of a (2B, W, 320) tensor every step, and threefry's unrolled rounds cost more than the dropout."""
  return jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="unsafe_rbg")


def switch_with_gradients(index, branches, params, operands):
  """`lax.switch(index, branches, params, operands)` for scalar-loss branches `fn(params, operands)
  -> (loss, aux)`, differentiable in `params` only, with each branch's gradient computed in its
  forward pass. Plain `lax.switch` under autodiff keeps the activations of every branch (zero-filled
  for those not taken) for the backward pass; here the residual is one gradient, the same shape
  whichever branch ran. The gradient of `aux` is taken as zero (the loop stops it)."""

  @jax.custom_vjp
  def run(params, operands):
    return jax.lax.switch(index, branches, params, operands)

  def forward(params, operands):
    (loss, aux), grads = jax.lax.switch(
        index, [jax.value_and_grad(fn, has_aux=True) for fn in branches], params, operands
    )
    return (loss, aux), (grads, operands)

  def backward(residual, cotangent):
    grads, operands = residual
    zeros = jax.tree.map(_zero_cotangent, operands)
    return jax.tree.map(lambda g: g * cotangent[0], grads), zeros

  run.defvjp(forward, backward)
  return run(params, operands)


def _zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.floating):
    return jnp.zeros_like(x)
  return np.zeros(x.shape, jax.dtypes.float0)


class EncoderOnly(nn.Module):
  """TS2Vec has no heads: the trained network is the encoder (a submodule named `encoder`)."""

  encoder: nn.Module

  def __call__(self, x, train=False, **kwargs):
    return self.encoder(x, train=train, **kwargs)


class Task(tasks.Task):
  modality = "timeseries"  # ssl_jax/modalities/timeseries.py: the UCR SVM protocol, the study

  def __init__(
      self,
      *,
      alpha=0.5,
      temporal_unit=0,
      mask_prob=0.5,
      length_buckets=4,
      average_weights=True,
      **context,
  ):
    super().__init__(**context)
    if not 0 <= alpha <= 1:
      raise ValueError(f"task_kwargs.alpha must lie in [0, 1], got {alpha}")
    if not 0 <= mask_prob < 1:
      raise ValueError(f"task_kwargs.mask_prob must lie in [0, 1), got {mask_prob}")
    if int(length_buckets) != length_buckets or length_buckets < 1:
      raise ValueError(f"task_kwargs.length_buckets must be an integer >= 1, got {length_buckets}")
    if int(temporal_unit) != temporal_unit or temporal_unit < 0:
      raise ValueError(f"task_kwargs.temporal_unit must be an integer >= 0, got {temporal_unit}")
    self.alpha, self.temporal_unit, self.mask_prob = alpha, int(temporal_unit), mask_prob
    self.length_buckets, self.average_weights = int(length_buckets), average_weights

  def model(self, encoder):
    return EncoderOnly(encoder)

  def example_input(self, input_shape):
    return jnp.zeros((2,) + tuple(input_shape), jnp.float32)

  def preprocess(self, inputs):
    return inputs.astype(jnp.float32)

  def widths(self, length):
    return sorted(
        {math.ceil(length * j / self.length_buckets) for j in range(1, self.length_buckets + 1)}
    )

  def crops(self, rng, batch_size, length):
    """The reference's random crops: scalars shared by the batch, one offset per series."""
    shortest = 2 ** (self.temporal_unit + 1)
    if length < shortest:
      raise ValueError(
          f"series of length {length} are shorter than the shortest crop {shortest} "
          f"(2^(temporal_unit+1), task_kwargs.temporal_unit={self.temporal_unit})"
      )
    k = jax.random.split(rng, 5)
    crop = jax.random.randint(k[0], (), shortest, length + 1)
    left = jax.random.randint(k[1], (), 0, length - crop + 1)
    right = left + crop
    eleft = jax.random.randint(k[2], (), 0, left + 1)
    eright = jax.random.randint(k[3], (), right, length + 1)
    offset = jax.random.randint(k[4], (batch_size,), -eleft, length - eright + 1)
    return {"crop": crop, "left": left, "eleft": eleft, "eright": eright, "offset": offset}

  def loss(self, model, variables, task_state, batch, rng, step):
    x = batch["inputs"].astype(jnp.float32)  # (B, T, F) series (the loop's input key)
    b, t = x.shape[:2]
    crop_rng, mask_rng, dropout_rng = jax.random.split(rng, 3)
    c = self.crops(crop_rng, b, t)
    operands = {
        "views": jnp.concatenate([x, x]),
        "crop": c,
        "starts": jnp.concatenate([c["offset"] + c["eleft"], c["offset"] + c["left"]]),
        "lengths": jnp.stack([c["left"] + c["crop"] - c["eleft"], c["eright"] - c["left"]]),
        "keep": jax.random.key_data(mask_rng),
        "dropout": jax.random.key_data(dropout_rng),
    }

    def branch(width):
      def run(variables, o):
        steps = jnp.arange(width)
        valid = steps[None, :] < jnp.repeat(o["lengths"], b)[:, None]  # (2B, W)
        index = jnp.minimum(o["starts"][:, None] + steps, t - 1)[..., None]
        window = jnp.take_along_axis(o["views"], index, axis=1)
        keep = jax.random.bernoulli(
            jax.random.wrap_key_data(o["keep"]), 1 - self.mask_prob, valid.shape
        )
        z = model.apply(
            variables,
            window,
            train=True,
            per_timestep=True,
            keep=keep,
            valid=valid,
            rngs={"dropout": fast_key(jax.random.wrap_key_data(o["dropout"]))},
        )
        features = jnp.max(jnp.where(valid[..., None], z, -jnp.inf), axis=1)
        # the overlap starts at left - eleft in view 1's window and at 0 in view 2's
        z1 = jax.lax.dynamic_slice_in_dim(
            jnp.pad(z[:b], ((0, 0), (0, width), (0, 0))),
            o["crop"]["left"] - o["crop"]["eleft"],
            width,
            axis=1,
        )
        loss, metrics = hierarchical_contrastive(
            z1, z[b:], alpha=self.alpha, temporal_unit=self.temporal_unit, length=o["crop"]["crop"]
        )
        return loss, ({k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}, features)

      return run

    widths = self.widths(t)
    index = jnp.searchsorted(jnp.asarray(widths), jnp.max(operands["lengths"]))
    loss, (metrics, features) = switch_with_gradients(
        index, [branch(w) for w in widths], variables, operands
    )
    metrics = {
        **metrics,
        "crop_length": c["crop"].astype(jnp.float32),
        "width": jnp.asarray(widths, jnp.float32)[index],
    }
    return loss, (metrics, {}, {"features": features})

  def init_state(self, variables, rng):
    del rng
    if not self.average_weights:
      return {}
    return {
        "average": tasks.subtree(variables, "encoder")["params"],
        "count": jnp.zeros((), jnp.int32),
    }

  def update_state(self, task_state, *, params, model_state, outputs, step):
    if not self.average_weights:
      return task_state
    count = task_state["count"] + 1  # average <- average + (params - average) / count
    average = jax.tree.map(
        lambda a, p: a + (p - a) / count.astype(a.dtype), task_state["average"], params["encoder"]
    )
    return {"average": average, "count": count}

  def encoder_variables(self, params, model_state, task_state):
    if not self.average_weights:
      return super().encoder_variables(params, model_state, task_state)
    return {"params": task_state["average"]}
