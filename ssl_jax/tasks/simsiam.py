"""SimSiam (Chen & He 2021): a predictor and a stop-gradient, no momentum encoder, no negatives.

Projector: Dense-BN-ReLU layers with a BatchNorm (no affine) on the output; predictor: a
bottleneck MLP. The loss's `output_std` (std of the normalised projections, ~1/sqrt(d) when
healthy) is the paper's collapse indicator.
"""

from ssl_jax import tasks
from ssl_jax.losses.simsiam import simsiam
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(self, *, projection_dims=(2048, 2048, 2048), prediction_dims=(512, 2048), **context):
    super().__init__(**context)
    self.projection_dims, self.prediction_dims = tuple(projection_dims), tuple(prediction_dims)

  def model(self, encoder):
    return EncoderWithHeads(
        encoder, MLPHead(self.projection_dims, last_norm=True), MLPHead(self.prediction_dims)
    )

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (p, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    z = aux["projection"]
    loss, metrics = simsiam(p[:n], p[n:], z[:n], z[n:])
    return loss, (metrics, new_state, {"features": aux["features"]})
