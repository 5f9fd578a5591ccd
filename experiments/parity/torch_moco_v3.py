"""MoCo v3 (ResNet recipe), the PyTorch peer: lightly's heads and momentum utilities on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_moco_v3.py --seed=0

As ssl_jax/tasks/moco_v3.py: both views through the online network (encoder, projector,
predictor; heads end in a BatchNorm without affine parameters) and through the momentum network
(an EMA copy of encoder + projector, training mode) in one pass each; loss
2 tau (ctr(q0, k1) + ctr(q1, k0)) with ctr the InfoNCE of each query against the batch's keys
(the paper's Algorithm 1; lightly 1.6.0 has no MoCo v3 loss, and tests/test_loss_goldens.py checks
our form against its memory-bank NT-Xent); EMA with lightly's update_momentum at its
cosine_schedule after each optimiser step.
"""

import copy

import torch
import torch.nn.functional as F
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

import torch_common as tc


def ctr(q, k, temperature):
  logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature
  return F.cross_entropy(logits, torch.arange(len(q))) * 2 * temperature


class MoCoV3:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.total, self.temperature = recipe["total_steps"], kw["temperature"]
    self.base, self.final = kw["base_momentum"], kw["final_momentum"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, kw["projection_dims"], last_norm=True)
    self.prediction = tc.head(kw["projection_dims"][-1], kw["prediction_dims"], last_norm=True)
    self.modules = torch.nn.ModuleDict(
        dict(encoder=self.encoder, projection=self.projection, prediction=self.prediction)
    )
    self.online = torch.nn.Sequential(self.encoder, self.projection)
    self.target = copy.deepcopy(self.online)
    deactivate_requires_grad(self.target)
    self.views = tc.Views(recipe, seed)

  def step(self, step, images):
    v = self.views(step, images).flatten(0, 1)
    q0, q1 = self.prediction(self.online(v)).chunk(2)
    with torch.no_grad():
      k0, k1 = self.target(v).chunk(2)
    return ctr(q0, k1, self.temperature) + ctr(q1, k0, self.temperature)

  def after_step(self, step):
    update_momentum(
        self.online, self.target, m=cosine_schedule(step, self.total, self.base, self.final)
    )


if __name__ == "__main__":
  tc.run("moco_v3", MoCoV3)
