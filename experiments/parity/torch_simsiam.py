"""SimSiam, the PyTorch peer: lightly's heads and NegativeCosineSimilarity on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_simsiam.py --seed=0

As ssl_jax/tasks/simsiam.py: both views in one forward pass, projector MLPHead(projection_dims)
ending in a BatchNorm without affine parameters, predictor MLPHead(prediction_dims), loss
0.5 (NCS(p0, sg(z1)) + NCS(p1, sg(z0))): lightly's example loss, our scale.
"""

import torch
from lightly.loss import NegativeCosineSimilarity

import torch_common as tc


class SimSiam:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, kw["projection_dims"], last_norm=True)
    self.prediction = tc.head(kw["projection_dims"][-1], kw["prediction_dims"])
    self.modules = torch.nn.ModuleDict(
        dict(encoder=self.encoder, projection=self.projection, prediction=self.prediction)
    )
    self.views = tc.Views(recipe, seed)
    self.criterion = NegativeCosineSimilarity()

  def step(self, step, images):
    z = self.projection(self.encoder(self.views(step, images).flatten(0, 1)))
    p0, p1 = self.prediction(z).chunk(2)
    z0, z1 = z.detach().chunk(2)
    return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


if __name__ == "__main__":
  tc.run("simsiam", SimSiam)
