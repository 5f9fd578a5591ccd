"""MoCo's InfoNCE losses: v2 against a queue of earlier keys, v3 against the batch's own keys.

MoCo v2 (He et al. 2020; Chen et al. 2020b): query i's positive is key i, its negatives are the
K keys of earlier batches held in a queue. MoCo v3 (Chen, Xie & He 2021) drops the queue: query
i's negatives are every other key of the global batch, and the loss is symmetrised over two views.
Keys come from the momentum encoder and never carry gradients.
"""

import numbers

import jax
import jax.numpy as jnp


def moco_v2(q, k, queue, *, temperature=0.2, axis_name=None):
  """Returns (loss, metrics) for queries q and keys k of shape (n, d) and a queue (K, d).

  The queue holds keys that were already normalised (`normalize`) and is never trained. Its
  negatives are shared by every query, so nothing is gathered: inside `shard_map`/`pmap` pass the
  mapped axis only to average the loss over the global batch. Under `jit` pass global arrays.
  """
  _check_temperature(temperature)
  if q.ndim != 2 or q.shape != k.shape:
    raise ValueError(f"q and k must both be (n, d); got {q.shape} and {k.shape}")
  if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
    raise ValueError(f"queue must be (K, d) with d = {q.shape[1]} as in q; got {queue.shape}")
  q = normalize(q)
  k = jax.lax.stop_gradient(normalize(k))
  queue = jax.lax.stop_gradient(queue.astype(jnp.float32))
  positive = jnp.sum(q * k, axis=-1, keepdims=True)  # (n, 1)
  logits = jnp.concatenate([positive, q @ queue.T], axis=1) / temperature  # positive at column 0
  loss = -jnp.mean(jax.nn.log_softmax(logits, axis=-1)[:, 0])
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == 0)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
    accuracy = jax.lax.pmean(accuracy, axis_name)
  return loss, {"contrastive_accuracy": accuracy}


def moco_v3(q1, q2, k1, k2, *, temperature=0.2, axis_name=None):
  """Returns (loss, metrics): ctr(q1, k2) + ctr(q2, k1), all four arrays (n, d).

  Each ctr is scaled by 2 * temperature, as in the paper's pseudocode, so the loss's size does not
  move with the temperature. Under `jit` pass global arrays and leave `axis_name` None. Inside
  `shard_map`/`pmap` pass the mapped axis: keys are then gathered from every device and this
  device's positives sit at offset `axis_index * n` in the gathered batch.
  """
  _check_temperature(temperature)
  if q1.ndim != 2 or not q1.shape == q2.shape == k1.shape == k2.shape:
    raise ValueError(
        "q1, q2, k1 and k2 must all be (n, d); got "
        f"{q1.shape}, {q2.shape}, {k1.shape} and {k2.shape}"
    )
  loss_a, accuracy_a = _in_batch_contrast(q1, k2, temperature, axis_name)
  loss_b, accuracy_b = _in_batch_contrast(q2, k1, temperature, axis_name)
  loss = loss_a + loss_b
  accuracy = (accuracy_a + accuracy_b) / 2
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
    accuracy = jax.lax.pmean(accuracy, axis_name)
  return loss, {"contrastive_accuracy": accuracy}


def normalize(x):
  """L2-normalises the rows of x in fp32; these are the keys a task enqueues after `moco_v2`."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def enqueue(queue, pointer, keys):
  """Returns (queue, pointer) with the m rows of keys written from row `pointer` on, wrapping at K.

  `pointer` may be traced. Under `jit` pass the global keys. Inside `shard_map`/`pmap` every
  device holds the whole queue, so gather the keys first and every copy stays the same:
  `enqueue(queue, pointer, lax.all_gather(keys, axis_name, tiled=True))`.
  """
  if queue.ndim != 2 or keys.ndim != 2 or keys.shape[1] != queue.shape[1]:
    raise ValueError(f"queue must be (K, d) and keys (m, d); got {queue.shape} and {keys.shape}")
  size, m = queue.shape[0], keys.shape[0]
  if m > size:
    raise ValueError(
        f"cannot enqueue {m} keys {keys.shape} into a queue of {size} rows "
        f"{queue.shape}; need m <= K"
    )
  queue, pointer = jnp.asarray(queue), jnp.asarray(pointer, jnp.int32)
  rows = (pointer + jnp.arange(m)) % size
  queue = queue.at[rows].set(jax.lax.stop_gradient(keys).astype(queue.dtype))
  return queue, (pointer + m) % size


def _in_batch_contrast(q, k, temperature, axis_name):
  q = normalize(q)
  k = jax.lax.stop_gradient(normalize(k))
  n = q.shape[0]
  if axis_name is None:
    keys, offset = k, 0
  else:
    keys = jax.lax.all_gather(k, axis_name, tiled=True)
    offset = jax.lax.axis_index(axis_name) * n
  logits = q @ keys.T / temperature
  labels = jnp.arange(n) + offset
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)) * 2 * temperature
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  return loss, accuracy


def _check_temperature(temperature):
  if isinstance(temperature, numbers.Real) and not temperature > 0:  # numbers; arrays may be traced
    raise ValueError(f"temperature must be > 0, got {temperature}")
