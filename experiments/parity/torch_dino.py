"""DINO (ResNet, multi-crop), the PyTorch peer: lightly's DINOLoss, heads and momentum utilities.

  /tmp/parity_venv/bin/python experiments/parity/torch_dino.py --seed=0

As ssl_jax/tasks/dino.py: 2 global crops (the recipe's views) and `num_local_crops` local crops
(local_crop_size px, scale local_crop_scale) through the student, one pass per crop size (so
BatchNorm statistics are per crop size); the teacher (an EMA copy of encoder + head, training
mode) sees the global crops in one pass. Head as our DINOHead: lightly's ProjectionHead with our
layout (hidden_dims with ReLU, no BatchNorm, then bottleneck_dim; lightly's DINOProjectionHead is
fixed at 3 GELU layers, the paper's), L2 normalisation, a weight-normalised prototype layer without
bias whose gain is fixed at 1 (lightly's and the paper's norm_last_layer). lightly's DINOLoss keeps
the centre (momentum center_momentum, updated after the loss) and warms the teacher temperature
up; our warm-up of W steps is its warm-up of W + 1 "epochs" indexed by step
(tests/test_loss_goldens.py). Momentum from base to final on lightly's cosine_schedule, EMA after
each optimiser step. The scorer reads the teacher's encoder, as ours does.
"""

import copy

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

import torch_common as tc


class Head(torch.nn.Module):
  """ssl_jax.models.heads.DINOHead: MLP -> L2-normalised bottleneck -> cosine to prototypes."""

  def __init__(self, in_dim, hidden_dims, bottleneck_dim, num_prototypes, norm):
    super().__init__()
    self.mlp = tc.head(in_dim, (*hidden_dims, bottleneck_dim), norm=norm)
    self.prototypes = torch.nn.utils.parametrizations.weight_norm(
        torch.nn.Linear(bottleneck_dim, num_prototypes, bias=False)
    )
    gain = self.prototypes.parametrizations.weight.original0
    gain.data.fill_(1)
    gain.requires_grad = False

  def forward(self, x):
    return self.prototypes(F.normalize(self.mlp(x), dim=1))


class DINO:

  def __init__(self, recipe, data, seed):
    kw = recipe["task_kwargs"]
    self.total, self.base, self.final = (
        recipe["total_steps"],
        kw["base_momentum"],
        kw["final_momentum"],
    )
    self.num_local = kw.get("num_local_crops", 0)
    self.encoder = tc.backbone(recipe, data["train_images"].shape[-1])
    self.head = Head(
        self.encoder.dim,
        kw["hidden_dims"],
        kw["bottleneck_dim"],
        kw["num_prototypes"],
        kw.get("head_norm", "none"),
    )
    self.modules = torch.nn.ModuleDict(dict(encoder=self.encoder, head=self.head))
    self.student = torch.nn.Sequential(self.encoder, self.head)
    self.teacher = copy.deepcopy(self.student)
    deactivate_requires_grad(self.teacher)
    self.views = tc.Views(recipe, seed)
    self.local_views = tc.Views(
        recipe,
        seed,
        crop_size=kw.get("local_crop_size", 16),
        crop_scale=tuple(kw.get("local_crop_scale", (0.05, 0.4))),
    )
    self.scored_encoder = self.teacher[0]
    warmup = int(kw["teacher_warmup_fraction"] * self.total)
    self.criterion = DINOLoss(
        output_dim=kw["num_prototypes"],
        warmup_teacher_temp=kw["warmup_teacher_temperature"],
        teacher_temp=kw["teacher_temperature"],
        warmup_teacher_temp_epochs=warmup + 1,
        student_temp=kw["student_temperature"],
        center_momentum=kw["center_momentum"],
    )

  def step(self, step, images):
    g = self.views(step, images).flatten(0, 1)
    student = list(self.student(g).chunk(2))
    if self.num_local:
      local = self.local_views(step, images, num_views=self.num_local, salt=7)
      student += list(self.student(local.flatten(0, 1)).chunk(self.num_local))
    with torch.no_grad():
      teacher = list(self.teacher(g).chunk(2))
    return self.criterion(teacher, student, epoch=step)

  def after_step(self, step):
    update_momentum(
        self.student, self.teacher, m=cosine_schedule(step, self.total, self.base, self.final)
    )


if __name__ == "__main__":
  tc.run("dino", DINO)
