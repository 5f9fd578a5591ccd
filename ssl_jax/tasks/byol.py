"""BYOL (Grill et al. 2020): an online network with a predictor regresses a momentum target.

The target (encoder + projection) is an EMA of the online weights, its momentum rising from
`base_momentum` to `final_momentum` on BYOL's cosine schedule, updated inside the jitted step
after the optimiser step. Both views of the global batch go through each network in one pass,
so BatchNorm statistics are global; the target's running statistics come from its own forward.
"""

from ssl_jax import tasks
from ssl_jax.losses.byol import byol
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(
      self,
      *,
      projection_dims=(4096, 256),
      prediction_dims=(4096, 256),
      base_momentum=0.996,
      final_momentum=1.0,
      **context,
  ):
    super().__init__(**context)
    if not 0 <= base_momentum <= final_momentum <= 1:
      raise ValueError(
          f"task_kwargs: need 0 <= base_momentum ({base_momentum}) <= final_momentum "
          f"({final_momentum}) <= 1"
      )
    self.projection_dims, self.prediction_dims = tuple(projection_dims), tuple(prediction_dims)
    self.base_momentum, self.final_momentum = base_momentum, final_momentum

  def model(self, encoder):
    return EncoderWithHeads(encoder, MLPHead(self.projection_dims), MLPHead(self.prediction_dims))

  def init_state(self, variables, rng):
    return {"target": tasks.momentum_target(variables)}

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (p, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    (z, _), target_state = model.apply(
        task_state["target"],
        views,
        train=True,
        mutable=["batch_stats"],
        method=EncoderWithHeads.project,
    )
    loss, metrics = byol(p[:n], p[n:], z[:n], z[n:])
    return loss, (metrics, new_state, {"features": aux["features"], "target_state": target_state})

  def momentum(self, step):
    return tasks.cosine_momentum(
        step, self.total_steps, base=self.base_momentum, final=self.final_momentum
    )

  def update_state(self, task_state, *, params, model_state, outputs, step):
    target = tasks.update_momentum_target(
        task_state["target"], params, outputs["target_state"], self.momentum(step)
    )
    return {**task_state, "target": target}
