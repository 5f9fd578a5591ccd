"""SimCLR (Chen et al. 2020): two augmented views per image, NT-Xent on projected embeddings.

Views are made on the device inside the jitted step. BatchNorm sees both views of the whole
global batch at once, so its statistics are global (SimCLR's "global BN").
"""
from ssl_jax import tasks
from ssl_jax.losses.ntxent import ntxent
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(self, *, temperature=0.5, projection_dims=(512, 128), head_norm="batch", **context):
    super().__init__(**context)
    if not temperature > 0:
      raise ValueError(f"task_kwargs.temperature must be > 0, got {temperature}")
    self.temperature = temperature
    self.projection_dims = tuple(projection_dims)
    self.head_norm = head_norm

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims, self.head_norm))

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["image"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["image"]))
    (z, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    loss, metrics = ntxent(z[:n], z[n:], temperature=self.temperature)
    return loss, (metrics, new_state, {"features": aux["features"]})
