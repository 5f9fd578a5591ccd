"""BYOL, the PyTorch peer: lightly's heads, NegativeCosineSimilarity and momentum utilities.

  /tmp/parity_venv/bin/python experiments/parity/torch_byol.py --seed=0

As ssl_jax/tasks/byol.py: both views through the online network in one pass and through the
target (encoder + projector, an EMA copy made at initialisation, in training mode so that its
BatchNorm normalises with batch statistics and keeps its own running statistics) in one pass;
the target's momentum rises from base_momentum to final_momentum on lightly's cosine_schedule and
the EMA (lightly's update_momentum, parameters only) follows each optimiser step. Loss scale:
ours sums the two directions of ||p - z||^2 = 2 - 2cos (the paper's L + L~), which is
4 + 4 x lightly's example loss 0.5 (NCS(p0, z1) + NCS(p1, z0)); the peer uses that multiple so
that the optimiser sees our gradients.
"""

import copy

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

import torch_common as tc


class BYOL:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.total = recipe["total_steps"]
    self.base, self.final = kw["base_momentum"], kw["final_momentum"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, kw["projection_dims"])
    self.prediction = tc.head(kw["projection_dims"][-1], kw["prediction_dims"])
    self.modules = torch.nn.ModuleDict(
        dict(encoder=self.encoder, projection=self.projection, prediction=self.prediction)
    )
    self.target = torch.nn.Sequential(copy.deepcopy(self.encoder), copy.deepcopy(self.projection))
    deactivate_requires_grad(self.target)
    self.online = torch.nn.Sequential(self.encoder, self.projection)
    self.views = tc.Views(recipe, seed)
    self.criterion = NegativeCosineSimilarity()

  def step(self, step, images):
    v = self.views(step, images).flatten(0, 1)
    p0, p1 = self.prediction(self.online(v)).chunk(2)
    with torch.no_grad():
      z0, z1 = self.target(v).chunk(2)
    return 4 + 4 * 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

  def after_step(self, step):
    update_momentum(
        self.online, self.target, m=cosine_schedule(step, self.total, self.base, self.final)
    )


if __name__ == "__main__":
  tc.run("byol", BYOL)
