"""MoCo v3 (Chen, Xie & He 2021): symmetrised InfoNCE against the global batch's momentum keys.

Online network: encoder, projector, predictor; momentum network: encoder and projector, an EMA
whose momentum rises from `base_momentum` to `final_momentum` on a cosine schedule. Keys are
the whole global batch (the step is jitted over global arrays, so nothing is gathered by hand);
BatchNorm statistics are global. Heads end in a BatchNorm without affine parameters, as in the
paper's ResNet recipe.
"""

from ssl_jax import tasks
from ssl_jax.losses.moco import moco_v3
from ssl_jax.models.heads import EncoderWithHeads, MLPHead


class Task(tasks.Task):

  def __init__(
      self,
      *,
      temperature=0.2,
      projection_dims=(4096, 256),
      prediction_dims=(4096, 256),
      base_momentum=0.99,
      final_momentum=1.0,
      **context,
  ):
    super().__init__(**context)
    if not temperature > 0:
      raise ValueError(f"task_kwargs.temperature must be > 0, got {temperature}")
    self.temperature = temperature
    self.projection_dims, self.prediction_dims = tuple(projection_dims), tuple(prediction_dims)
    self.base_momentum, self.final_momentum = base_momentum, final_momentum

  def model(self, encoder):
    return EncoderWithHeads(
        encoder,
        MLPHead(self.projection_dims, last_norm=True),
        MLPHead(self.prediction_dims, last_norm=True),
    )

  def init_state(self, variables, rng):
    return {"target": tasks.momentum_target(variables)}

  def loss(self, model, variables, task_state, batch, rng, step):
    n = batch["inputs"].shape[0]
    views = tasks.merge_views(self.views(rng, batch["inputs"]))
    (q, aux), new_state = model.apply(variables, views, train=True, mutable=["batch_stats"])
    (k, _), target_state = model.apply(
        task_state["target"],
        views,
        train=True,
        mutable=["batch_stats"],
        method=EncoderWithHeads.project,
    )
    loss, metrics = moco_v3(q[:n], q[n:], k[:n], k[n:], temperature=self.temperature)
    return loss, (metrics, new_state, {"features": aux["features"], "target_state": target_state})

  def update_state(self, task_state, *, params, model_state, outputs, step):
    momentum = tasks.cosine_momentum(
        step, self.total_steps, base=self.base_momentum, final=self.final_momentum
    )
    return {
        "target": tasks.update_momentum_target(
            task_state["target"], params, outputs["target_state"], momentum
        )
    }
