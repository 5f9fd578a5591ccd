"""VICReg (Bardes et al. 2022): invariance + variance + covariance terms on two views' embeddings.

Variance and covariance are taken over the global batch inside the loss.
"""
from ssl_jax import tasks
from ssl_jax.losses.vicreg import vicreg
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(self, *, projection_dims=(2048, 2048, 2048), sim_weight=25.0, var_weight=25.0,
               cov_weight=1.0, **context):
    super().__init__(**context)
    self.projection_dims = tuple(projection_dims)
    self.weights = dict(sim_weight=sim_weight, var_weight=var_weight, cov_weight=cov_weight)

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims))

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["image"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["image"]))
    (z, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    loss, metrics = vicreg(z[:n], z[n:], **self.weights)
    return loss, (metrics, new_state, {"features": aux["features"]})
