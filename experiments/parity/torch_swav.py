"""SwAV (multi-crop), the PyTorch peer: lightly's SwaVLoss, SwaVProjectionHead layout and
SwaVPrototypes on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_swav.py --seed=0

As ssl_jax/tasks/swav.py: 2 global crops and `num_local_crops` local crops (local_crop_size px,
scale local_crop_scale), one pass per crop size; projector Linear-BN-ReLU-Linear (hidden_dims,
embedding_dim), L2-normalised embeddings scored against num_prototypes prototypes; lightly's
SwaVLoss (Sinkhorn codes from each global crop, swapped prediction from every other crop).
The prototypes: lightly's SwaVPrototypes, frozen for freeze_prototypes_steps steps and
renormalised in place before every step, as the SwAV reference does (ours normalises them inside
the forward pass instead); its Linear's bias, which the SwAV reference does not have, is removed
so that the scores are cosines as ours are. The recipe's no-decay rule exempts the prototypes
from weight decay and LARS's trust ratio, as ours does.

`PEER_VARIANT=forward_prototypes` in the environment runs our variant instead: the prototypes
are normalised inside the forward pass (the gradient flows through the normalisation) and never
renormalised in place.
"""

import os

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules.heads import SwaVPrototypes

import torch_common as tc


class SwAV:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    if kw.get("queue_length", 0):
      raise NotImplementedError("the peer mirrors recipes without SwAV's queue (queue_length=0)")
    self.num_local = kw.get("num_local_crops", 0)
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, (*kw["hidden_dims"], kw["embedding_dim"]))
    self.prototypes = SwaVPrototypes(
        kw["embedding_dim"],
        kw["num_prototypes"],
        n_steps_frozen_prototypes=kw["freeze_prototypes_steps"],
    )
    for layer in self.prototypes.heads:
      layer.bias = None
    self.modules = torch.nn.ModuleDict(
        dict(encoder=self.encoder, projection=self.projection, prototypes=self.prototypes)
    )
    self.views = tc.Views(recipe, seed)
    self.local_views = tc.Views(
        recipe,
        seed,
        crop_size=kw.get("local_crop_size", 16),
        crop_scale=tuple(kw.get("local_crop_scale", (0.05, 0.14))),
    )
    self.forward_norm = os.environ.get("PEER_VARIANT", "") == "forward_prototypes"
    self.criterion = SwaVLoss(
        temperature=kw["temperature"],
        sinkhorn_iterations=kw["sinkhorn_iterations"],
        sinkhorn_epsilon=kw["epsilon"],
    )

  def scores(self, x, step):
    z = F.normalize(self.projection(self.encoder(x)), dim=1)
    if self.forward_norm:
      self.prototypes(z, step)  # lightly's freezing of the prototypes' gradient
      return F.linear(z, F.normalize(self.prototypes.heads[0].weight, dim=1))
    return self.prototypes(z, step)

  def step(self, step, images):
    if not self.forward_norm:
      self.prototypes.normalize()
    high = list(self.scores(self.views(step, images).flatten(0, 1), step).chunk(2))
    low = []
    if self.num_local:
      local = self.local_views(step, images, num_views=self.num_local, salt=7)
      low = list(self.scores(local.flatten(0, 1), step).chunk(self.num_local))
    return self.criterion(high, low)


if __name__ == "__main__":
  tc.run("swav", SwAV)
