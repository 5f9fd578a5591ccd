"""MoCo v2 (symmetrised, solo-learn's "MoCo v2+"), the PyTorch peer: lightly's heads, memory bank
and momentum utilities on our recipe.

  /tmp/parity_venv/bin/python experiments/parity/torch_moco_v2.py --seed=0

As ssl_jax/tasks/moco_v2.py: both views through the query network and the key network (an EMA
copy of encoder + projector, in training mode) in one pass each; projector MLPHead(dims, 'none')
(Dense-ReLU-Dense); each view's query against the other view's key and lightly's
MemoryBankModule's queue (random unit vectors at the start), InfoNCE at the recipe's temperature,
averaged over the two directions, both against the queue as it was before this step; then both
views' L2-normalised keys are enqueued (2B rows) and the key network takes an EMA step with
lightly's update_momentum at lightly's cosine_schedule from base to final momentum.
lightly's NTXentLoss with a memory bank computes this InfoNCE (tests/test_loss_goldens.py), but it
enqueues on each call, so the second direction would see the first's keys: written out here.
"""

import copy

import torch
import torch.nn.functional as F
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

import torch_common as tc


def info_nce(q, k, queue, temperature):
  q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
  positive = torch.sum(q * k, dim=1, keepdim=True)
  logits = torch.cat([positive, q @ queue.T], dim=1) / temperature
  return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


class MoCoV2:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.total, self.temperature = recipe["total_steps"], kw["temperature"]
    self.base, self.final = kw["base_momentum"], kw["final_momentum"]
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.projection = tc.head(self.encoder.dim, kw["projection_dims"], norm=kw["head_norm"])
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, projection=self.projection))
    self.online = torch.nn.Sequential(self.encoder, self.projection)
    self.target = copy.deepcopy(self.online)
    deactivate_requires_grad(self.target)
    self.bank = MemoryBankModule(
        size=(kw["queue_size"], kw["projection_dims"][-1]), feature_dim_first=False
    )
    self.views = tc.Views(recipe, seed)

  def step(self, step, images):
    v = self.views(step, images).flatten(0, 1)
    q0, q1 = self.online(v).chunk(2)
    with torch.no_grad():
      k = self.target(v)
    k0, k1 = k.chunk(2)
    _, queue = self.bank(k, update=False)
    loss = 0.5 * (
        info_nce(q0, k1, queue, self.temperature) + info_nce(q1, k0, queue, self.temperature)
    )
    self.bank(F.normalize(k, dim=1), update=True)
    return loss

  def after_step(self, step):
    update_momentum(
        self.online, self.target, m=cosine_schedule(step, self.total, self.base, self.final)
    )


if __name__ == "__main__":
  tc.run("moco_v2", MoCoV2)
