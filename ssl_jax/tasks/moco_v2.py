"""MoCo v2 (He et al. 2020; Chen et al. 2020b): queries against a momentum key and a queue of keys.

Symmetrised as solo-learn's "MoCo v2+": each view's query is contrasted with the other view's
key and the queue, and both views' keys are enqueued (2B rows per step into one queue of
`queue_size` L2-normalised keys). The key encoder is an EMA of the query encoder (momentum from
`base_momentum` to `final_momentum`, cosine). The head is MoCo v2's MLP (Dense-ReLU-Dense).

BatchNorm: statistics are global (the step is jitted over the global batch) and each network
sees both views in one pass. MoCo's Shuffle-BN is not implemented: it exists to stop a model
from reading its positive off per-device batch statistics, and with global statistics every
key's BatchNorm mixes the whole global batch.
"""

import jax

from ssl_jax import tasks
from ssl_jax.losses import moco
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(
      self,
      *,
      temperature=0.2,
      queue_size=65536,
      projection_dims=(2048, 128),
      head_norm="none",
      base_momentum=0.99,
      final_momentum=0.999,
      **context,
  ):
    super().__init__(**context)
    if not temperature > 0:
      raise ValueError(f"task_kwargs.temperature must be > 0, got {temperature}")
    if queue_size < 1:
      raise ValueError(f"task_kwargs.queue_size must be >= 1, got {queue_size}")
    self.temperature, self.queue_size = temperature, queue_size
    self.projection_dims, self.head_norm = tuple(projection_dims), head_norm
    self.base_momentum, self.final_momentum = base_momentum, final_momentum

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims, self.head_norm))

  def init_state(self, variables, rng):
    # the queue starts as random unit vectors, as in the reference implementation
    queue = moco.normalize(jax.random.normal(rng, (self.queue_size, self.projection_dims[-1])))
    return {
        "target": tasks.momentum_target(variables),
        "queue": queue,
        "queue_pointer": jax.numpy.zeros((), jax.numpy.int32),
    }

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    if 2 * n > self.queue_size:
      raise ValueError(
          f"task_kwargs.queue_size={self.queue_size} must hold the {2 * n} keys of "
          "one step (2 x global_batch_size)"
      )
    views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (q, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    (k, _), target_state = model.apply(
        task_state["target"],
        views,
        train=True,
        mutable=["batch_stats"],
        method=EncoderWithHeads.project,
    )
    queue = task_state["queue"]
    loss_a, metrics_a = moco.moco_v2(q[:n], k[n:], queue, temperature=self.temperature)
    loss_b, metrics_b = moco.moco_v2(q[n:], k[:n], queue, temperature=self.temperature)
    metrics = {name: (metrics_a[name] + metrics_b[name]) / 2 for name in metrics_a}
    outputs = {
        "features": aux["features"],
        "target_state": target_state,
        "keys": moco.normalize(jax.lax.stop_gradient(k)),
    }
    return (loss_a + loss_b) / 2, (metrics, new_state, outputs)

  def update_state(self, task_state, *, params, model_state, outputs, step):
    momentum = tasks.cosine_momentum(
        step, self.total_steps, base=self.base_momentum, final=self.final_momentum
    )
    queue, pointer = moco.enqueue(task_state["queue"], task_state["queue_pointer"], outputs["keys"])
    return {
        "target": tasks.update_momentum_target(
            task_state["target"], params, outputs["target_state"], momentum
        ),
        "queue": queue,
        "queue_pointer": pointer,
    }
