"""SimCLR, the PyTorch peer: lightly's NTXentLoss and ProjectionHead on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_simclr.py --seed=0

As ssl_jax/tasks/simclr.py: both views of the batch in one forward pass (BatchNorm over 2B),
projector MLPHead(projection_dims), NT-Xent at the recipe's temperature.
"""

import torch
from lightly.loss import NTXentLoss

import torch_common as tc


class SimCLR:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(
        self.encoder.dim, kw["projection_dims"], norm=kw.get("head_norm", "batch")
    )
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, projection=self.projection))
    self.views = tc.Views(recipe, seed)
    self.criterion = NTXentLoss(temperature=kw["temperature"])

  def step(self, step, images):
    v = self.views(step, images)
    z = self.projection(self.encoder(v.flatten(0, 1)))
    z0, z1 = z.chunk(2)
    return self.criterion(z0, z1)


if __name__ == "__main__":
  tc.run("simclr", SimCLR)
