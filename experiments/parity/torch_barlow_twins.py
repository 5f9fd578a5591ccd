"""Barlow Twins, the PyTorch peer: lightly's BarlowTwinsLoss and heads on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_barlow_twins.py --seed=0

As ssl_jax/tasks/barlow_twins.py: both views in one forward pass, projector
MLPHead(projection_dims), lightly's BarlowTwinsLoss(lambda_param=lambd) times `scale_loss`.
"""

import torch
from lightly.loss import BarlowTwinsLoss

import torch_common as tc


class BarlowTwins:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(
        self.encoder.dim, kw["projection_dims"], norm=kw.get("head_norm", "batch")
    )
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, projection=self.projection))
    self.views = tc.Views(recipe, seed)
    self.criterion = BarlowTwinsLoss(lambda_param=kw["lambd"])
    self.scale = kw.get("scale_loss", 1.0)

  def step(self, step, images):
    z0, z1 = self.projection(self.encoder(self.views(step, images).flatten(0, 1))).chunk(2)
    return self.scale * self.criterion(z0, z1)


if __name__ == "__main__":
  tc.run("barlow_twins", BarlowTwins)
