"""VICReg, the PyTorch peer: lightly's VICRegLoss and heads on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_vicreg.py --seed=0

As ssl_jax/tasks/vicreg.py: both views in one forward pass, projector MLPHead(projection_dims),
lightly's VICRegLoss with our invariance / variance / covariance weights.
"""

import torch
from lightly.loss import VICRegLoss

import torch_common as tc


class VICReg:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(
        self.encoder.dim, kw["projection_dims"], norm=kw.get("head_norm", "batch")
    )
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, projection=self.projection))
    self.views = tc.Views(recipe, seed)
    self.criterion = VICRegLoss(
        lambda_param=kw["sim_weight"], mu_param=kw["var_weight"], nu_param=kw["cov_weight"]
    )

  def step(self, step, images):
    z0, z1 = self.projection(self.encoder(self.views(step, images).flatten(0, 1))).chunk(2)
    return self.criterion(z0, z1)


if __name__ == "__main__":
  tc.run("vicreg", VICReg)
