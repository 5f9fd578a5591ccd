"""The PyTorch side of the parity suite: our recipe rebuilt with torch and lightly, method-agnostic.

Runs in the reference venv (experiments/parity/README.md), never the project's. A method's peer
script (torch_<method>.py) defines its heads, loss and any momentum state with lightly's modules;
this file holds everything the two sides must share exactly:
  - the data and recipe that experiments/parity/ours.py exported (digits.npz, recipe_METHOD.json);
  - our ResNet (ssl_jax/models/resnet.py) layer for layer: basic blocks, the small stride-2 stem,
    a 1x1 projection shortcut where the shape changes, the last BatchNorm of each block starting at
    zero (or one: model.zero_init_residual), He-normal (fan-out) convolutions, BatchNorm momentum
    0.1 (flax's 0.9) and eps 1e-5;
  - our heads' initialisation (flax's Dense: LeCun truncated normal, zero bias) put on lightly's
    heads, whose layer layout (Linear without bias before a BatchNorm) is already ours;
  - the optimiser: lightly's LARS (trust coefficient 1e-3) or torch SGD (Nesterov) / AdamW, with
    biases and norm parameters exempt from weight decay (and from LARS's trust ratio), our linear
    warm-up from 0 then cosine to 0, the learning rate scaled by batch / 256;
  - the batch order (a fresh permutation of the 4,000 digits each epoch, last partial batch
    dropped);
  - the views: made by OUR image_ops (jax on the CPU) from the recipe's augment settings, so the
    view code is not a difference between the sides (image_ops is checked against numpy
    references in tests/test_image_ops.py); the keys differ from our run's, the distribution not.
"""

import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))  # ssl_jax.data.image_ops, for the views
sys.path.insert(0, HERE)

import score  # noqa: E402

STAGES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2)}


def load(export, method):
  with open(os.path.join(export, f"recipe_{method}.json")) as f:
    recipe = json.load(f)
  with np.load(os.path.join(export, "digits.npz")) as f:
    data = {k: f[k] for k in f.files}
  return recipe, data


class BasicBlock(nn.Module):

  def __init__(self, cin, cout, stride, zero_init):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    if zero_init:
      nn.init.zeros_(self.bn2.weight)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
      )

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return torch.relu((x if self.shortcut is None else self.shortcut(x)) + y)


class ResNet(nn.Module):
  """images (B, C, H, W) in [0, 1] -> (B, D) pooled features, as ssl_jax.models.resnet.ResNet."""

  def __init__(self, *, depth, width_multiplier, stem, channels, zero_init_residual=True):
    super().__init__()
    if stem not in ("small", "small_stride2"):
      raise ValueError(f"stem {stem!r}: the parity suite mirrors 'small' and 'small_stride2'")
    width = max(8, int(64 * width_multiplier))
    self.stem = nn.Sequential(
        nn.Conv2d(channels, width, 3, 2 if stem == "small_stride2" else 1, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    )
    blocks, cin = [], width
    for i, num_blocks in enumerate(STAGES[depth]):
      for j in range(num_blocks):
        blocks.append(
            BasicBlock(cin, width * 2**i, 2 if i > 0 and j == 0 else 1, zero_init_residual)
        )
        cin = width * 2**i
    self.blocks = nn.Sequential(*blocks)
    self.dim = cin
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x):
    return self.blocks(self.stem(x)).mean(dim=(2, 3))


def backbone(recipe, channels):
  m = recipe["model"]
  return ResNet(
      depth=m["depth"],
      width_multiplier=m["width_multiplier"],
      stem=m["stem"],
      channels=channels,
      zero_init_residual=m.get("zero_init_residual", True),
  )


def flax_dense_init_(module):
  """Every nn.Linear of `module` as flax's Dense starts: LeCun truncated normal, zero bias."""
  for m in module.modules():
    if isinstance(m, nn.Linear):
      std = math.sqrt(1.0 / m.in_features) / 0.87962566103423978  # jax's truncation correction
      nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
  return module


def head_blocks(in_dim, dims, *, norm="batch", last_norm=False):
  """lightly ProjectionHead blocks for ssl_jax.models.heads.MLPHead(dims, norm, last_norm)."""
  blocks = []
  for i, dim in enumerate(dims):
    last = i == len(dims) - 1
    if not last:
      blocks.append((in_dim, dim, nn.BatchNorm1d(dim) if norm == "batch" else None, nn.ReLU()))
    else:
      bn = nn.BatchNorm1d(dim, affine=False) if last_norm and norm == "batch" else None
      blocks.append((in_dim, dim, bn, None))
    in_dim = dim
  return blocks


def head(in_dim, dims, *, norm="batch", last_norm=False):
  """lightly's ProjectionHead laid out and initialised as our MLPHead(dims, norm, last_norm)."""
  from lightly.models.modules.heads import ProjectionHead  # pylint: disable=g-import-not-at-top

  return flax_dense_init_(ProjectionHead(head_blocks(in_dim, dims, norm=norm, last_norm=last_norm)))


def learning_rate(recipe, step):
  """ssl_jax/optim.py's schedule: linear warm-up from 0, then cosine to 0 at total_steps."""
  opt, total = recipe["optimizer"], recipe["total_steps"]
  scale = {
      "linear": recipe["global_batch_size"] / 256,
      "sqrt": math.sqrt(recipe["global_batch_size"] / 256),
      "none": 1.0,
  }[opt["lr_scaling"]]
  peak = opt["base_learning_rate"] * scale
  warmup = min(int(round(opt["warmup_epochs"] * steps_per_epoch(recipe))), max(total - 1, 0))
  if step < warmup:
    return peak * step / warmup
  progress = (step - warmup) / max(total - warmup, 1)
  return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def steps_per_epoch(recipe):
  return recipe["num_examples"] // recipe["global_batch_size"]


def optimizer(recipe, named_params):
  """LARS / SGD / AdamW with biases and norm parameters in a group without weight decay."""
  opt = recipe["optimizer"]
  decay, no_decay = [], []
  exempt_prototypes = "prototypes" in opt["no_decay_regex"]  # SwAV's recipe exempts them too
  for name, p in named_params:
    exempt = name.endswith("bias") or p.ndim == 1 or (exempt_prototypes and "prototypes" in name)
    (no_decay if exempt else decay).append(p)
  groups = [
      dict(params=decay, weight_decay=opt["weight_decay"]),
      dict(params=no_decay, weight_decay=0.0),
  ]
  if opt["name"] == "lars":
    from lightly.utils.lars import LARS  # pylint: disable=g-import-not-at-top

    return LARS(groups, lr=0.0, momentum=opt["momentum"])  # weight decay 0: no trust ratio either
  if opt["name"] == "sgd":
    return torch.optim.SGD(groups, lr=0.0, momentum=opt["momentum"], nesterov=True)
  if opt["name"] == "adamw":
    return torch.optim.AdamW(groups, lr=0.0)
  raise ValueError(f"optimizer {opt['name']!r}")


class Views:
  """Our image_ops views on the host: (V, B, C, S, S) float32 torch tensors per step."""

  def __init__(self, recipe, seed, **overrides):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from ssl_jax.data import image_ops  # pylint: disable=g-import-not-at-top

    self.jax = jax
    kwargs = {"crop_size": recipe["data"]["image_size"], **recipe["augment"], **overrides}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    self.key = jax.random.PRNGKey(seed + 10_000)  # not our run's keys: the same distribution

    def make(key, images, num_views):
      return image_ops.augment_views(
          key, images.astype(jnp.float32) / 255.0, num_views=num_views, **kwargs
      )

    self.make = jax.jit(make, static_argnums=2)

  def __call__(self, step, images, num_views=2, salt=0):
    key = self.jax.random.fold_in(self.jax.random.fold_in(self.key, step), salt)
    views = np.asarray(self.make(key, images, num_views))
    return torch.from_numpy(views).permute(0, 1, 4, 2, 3).contiguous()


def batches(data, recipe, seed):
  """Endless (uint8 (B, H, W, C) images, (B,) indices) training batches: a permutation per epoch."""
  rng = np.random.default_rng(seed)
  images, n, b = data["train_images"], len(data["train_images"]), recipe["global_batch_size"]
  while True:
    order = rng.permutation(n)
    for start in range(0, n - b + 1, b):
      index = order[start : start + b]
      yield images[index], torch.from_numpy(index)


@torch.no_grad()
def features(encoder, images, batch=500):
  encoder.eval()
  out = []
  for start in range(0, len(images), batch):
    x = torch.from_numpy(images[start : start + batch]).float().div(255).permute(0, 3, 1, 2)
    out.append(encoder(x).numpy())
  encoder.train()
  return np.concatenate(out)


def run(method, make_method, *, argv=None):
  """Parses --seed/--steps/--export/--threads, trains `make_method(recipe, data, seed)`, scores it.

  `make_method` returns an object with `.encoder` (the backbone; the scorer reads it, or
  `.scored_encoder` where the method has one, e.g. DINO's teacher), `.modules` (an
  nn.Module holding every trained parameter) and `.step(step, images) -> loss tensor` (with
  `needs_index = True`: `.step(step, images, index)`, the batch's training-set rows), plus an
  optional `.after_step(step)` (momentum updates, queues, centres) run after the optimiser step.
  """
  import argparse  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser()
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--export", default="/tmp/parity")
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args(argv)
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  recipe, data = load(args.export, method)
  recipe["num_examples"] = len(data["train_images"])
  start = time.time()
  m = make_method(recipe, data, args.seed)
  opt = optimizer(recipe, m.modules.named_parameters())
  stream = batches(data, recipe, args.seed)
  total, log_every = recipe["total_steps"], max(recipe["total_steps"] // 6, 1)
  for step in range(total):
    for group in opt.param_groups:
      group["lr"] = learning_rate(recipe, step)
    images, index = next(stream)
    loss = m.step(step, images, index) if getattr(m, "needs_index", False) else m.step(step, images)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if hasattr(m, "after_step"):
      m.after_step(step)
    if not math.isfinite(loss.item()):
      raise FloatingPointError(f"non-finite loss at step {step}")
    if (step + 1) % log_every == 0:
      print(
          f"step {step + 1}/{total} loss {loss.item():.4f} ({time.time() - start:.0f} s)",
          flush=True,
      )
  pretrain_s = time.time() - start
  encoder = getattr(m, "scored_encoder", m.encoder)
  scores = score.score(
      features(encoder, data["train_images"]),
      data["train_labels"],
      features(encoder, data["test_images"]),
      data["test_labels"],
  )
  print(
      json.dumps(
          dict(
              side="peer",
              method=method,
              seed=args.seed,
              steps=total,
              overrides=recipe.get("parity_overrides", []),
              variant=os.environ.get("PEER_VARIANT", ""),
              **scores,
              pretrain_s=round(pretrain_s, 1),
              final_loss=round(loss.item(), 4),
          )
      )
  )
