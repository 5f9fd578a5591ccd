"""SwAV (Caron et al. 2020): swapped prediction of equipartitioned cluster codes, with multi-crop.

Crops are made on the device: 2 global crops at the data's image size (`config.augment`) and
`num_local_crops` local crops of `local_crop_size` px with scale `local_crop_scale`. Projector:
MLP (with BatchNorm) -> L2-normalised embedding -> scores against `num_prototypes` L2-normalised
prototypes (normalised in the forward pass, equivalent to SwAV's per-step renormalisation). The
prototypes get no gradient for the first `freeze_prototypes_steps` steps; exclude them from
weight decay (`optimizer.no_decay_regex`) so that they stay exactly fixed meanwhile.

With `queue_length` > 0 the two global crops' embeddings of earlier steps are kept (task state,
newest first) and, once the queue is full, their scores join Sinkhorn so that small batches
still get equipartitioned codes. Crops of one size share a forward pass, so BatchNorm statistics
are per crop size over the global batch.
"""

import jax
import jax.numpy as jnp

from ssl_jax import tasks
from ssl_jax.losses import swav as swav_lib
from ssl_jax.models.heads import DINOHead, EncoderWithHeads

LOCAL_CROPS_KEY = 7


class Task(tasks.Task):

  def __init__(
      self,
      *,
      hidden_dims=(2048,),
      embedding_dim=128,
      num_prototypes=3000,
      temperature=0.1,
      epsilon=0.05,
      sinkhorn_iterations=3,
      freeze_prototypes_steps=0,
      queue_length=0,
      num_local_crops=0,
      local_crop_size=16,
      local_crop_scale=(0.05, 0.14),
      **context,
  ):
    super().__init__(**context)
    if queue_length < 0 or num_local_crops < 0 or freeze_prototypes_steps < 0:
      raise ValueError(
          "task_kwargs queue_length, num_local_crops and freeze_prototypes_steps must be "
          f">= 0; got {queue_length}, {num_local_crops}, {freeze_prototypes_steps}"
      )
    self.head = dict(
        hidden_dims=tuple(hidden_dims),
        bottleneck_dim=embedding_dim,
        num_prototypes=num_prototypes,
        norm="batch",
        return_embedding=True,
    )
    self.temperature, self.epsilon, self.sinkhorn_iterations = (
        temperature,
        epsilon,
        sinkhorn_iterations,
    )
    self.freeze_prototypes_steps, self.queue_length = freeze_prototypes_steps, queue_length
    self.num_local_crops, self.local_crop_size = num_local_crops, local_crop_size
    self.local_crop_scale = tuple(local_crop_scale)

  def model(self, encoder):
    return EncoderWithHeads(encoder, DINOHead(**self.head))

  def init_state(self, variables, rng):
    if not self.queue_length:
      return {}
    return {
        "queue": jnp.zeros((2, self.queue_length, self.head["bottleneck_dim"]), jnp.float32),
        "queue_count": jnp.zeros((), jnp.int32),
    }

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    params = dict(variables["params"])
    head = dict(params["projection"])
    frozen = step < self.freeze_prototypes_steps
    head["prototypes"] = jnp.where(
        frozen, jax.lax.stop_gradient(head["prototypes"]), head["prototypes"]
    )
    variables = {**variables, "params": {**params, "projection": head}}
    global_views = tasks.merge_views(self.views(rng, batch["inputs"]))
    ((scores, embedding), aux), new_state = model.apply(
        variables, global_views, train=True, mutable=["batch_stats"]
    )
    scores = [scores.reshape((2, n, -1))]
    if self.num_local_crops:
      local_views = self.views(
          jax.random.fold_in(rng, LOCAL_CROPS_KEY),
          batch["inputs"],
          num_views=self.num_local_crops,
          crop_size=self.local_crop_size,
          crop_scale=self.local_crop_scale,
      )
      ((local, _), _), new_state = model.apply(
          {**variables, **new_state},
          tasks.merge_views(local_views),
          train=True,
          mutable=["batch_stats"],
      )
      scores.append(local.reshape((self.num_local_crops, n, -1)))
    scores = jnp.concatenate(scores)
    settings = dict(
        temperature=self.temperature,
        epsilon=self.epsilon,
        sinkhorn_iterations=self.sinkhorn_iterations,
    )
    embedding = jax.lax.stop_gradient(embedding.reshape((2, n, -1)))
    outputs = {"features": aux["features"], "embedding": embedding}
    loss, metrics = swav_lib.swav(scores, **settings)
    if self.queue_length:
      prototypes = head["prototypes"]
      prototypes = prototypes * jax.lax.rsqrt(jnp.sum(prototypes**2, axis=0, keepdims=True) + 1e-12)
      queue_scores = jax.lax.stop_gradient(task_state["queue"] @ prototypes)
      queue_loss, queue_metrics = swav_lib.swav(scores, queue_scores=queue_scores, **settings)
      full = task_state["queue_count"] >= self.queue_length
      loss = jnp.where(full, queue_loss, loss)
      metrics = jax.tree.map(lambda a, b: jnp.where(full, a, b), queue_metrics, metrics)
      metrics["queue_in_use"] = full.astype(jnp.float32)
    metrics["prototypes_frozen"] = frozen.astype(jnp.float32)
    return loss, (metrics, new_state, outputs)

  def update_state(self, task_state, *, params, model_state, outputs, step):
    if not self.queue_length:
      return task_state
    new = outputs["embedding"][:, : self.queue_length]
    queue = jnp.concatenate([new, task_state["queue"]], axis=1)[:, : self.queue_length]
    return {"queue": queue, "queue_count": task_state["queue_count"] + new.shape[1]}
