"""The PyTorch reference for bench_simclr_step.py: lightly's SimCLR with torchvision's ResNet-18.

  /tmp/simclr_ref_venv/bin/python experiments/bench_simclr_torch.py [--batch=256] [--steps=3]
      [--threads=2] [--no_augment]

Runs in its own venv, never the project's (torch 2.13.0 from this machine's disk does not import
with PyPI's torchvision, so the venv takes the pair that lies on disk):
  python3.11 -m venv /tmp/simclr_ref_venv
  /tmp/simclr_ref_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 lightly==1.6.0

The same shapes as ours: torchvision's `resnet18` with its first convolution replaced by a 3x3
stride-1 convolution and its max-pool removed (the small-image stem), lightly's
`SimCLRProjectionHead` 512 -> 512 -> 512 -> 128 (our (512, 512, 128) projector), lightly's
`NTXentLoss(temperature=0.5)`, torch SGD (momentum 0.9, weight decay 5e-4; lightly's example).
Augmentation on (default): lightly's `SimCLRTransform` (32 px random resized crop, flip, colour
jitter 0.5 with p 0.8, grayscale 0.2, no blur: our config's) makes both views of every image inside
the timed step, on the host, in this process. The last line is `images_per_s=<number>`.
"""

import argparse
import time

import numpy as np
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image


class SimCLR(torch.nn.Module):

  def __init__(self):
    super().__init__()
    resnet = torchvision.models.resnet18()
    resnet.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    resnet.fc = torch.nn.Identity()
    self.backbone = resnet
    self.projection_head = SimCLRProjectionHead(512, 512, 128, num_layers=3)

  def forward(self, x):
    return self.projection_head(self.backbone(x))


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--no_augment", action="store_true", help="views are the images themselves")
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)

  model = SimCLR()
  criterion = NTXentLoss(temperature=0.5)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
  transform = SimCLRTransform(
      input_size=args.image_size, cj_strength=0.5, gaussian_blur=0.0, min_scale=0.08
  )
  size = args.image_size
  images = np.random.default_rng(0).integers(0, 256, (args.batch, size, size, 3), dtype=np.uint8)
  pictures = [Image.fromarray(x) for x in images]
  plain = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0

  def step():
    if args.no_augment:
      x0, x1 = plain, plain
    else:
      views = [transform(p) for p in pictures]
      x0 = torch.stack([v[0] for v in views])
      x1 = torch.stack([v[1] for v in views])
    loss = criterion(model(x0), model(x1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  model.train()
  step()  # warm-up
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  step_s = float(np.median(times))
  print(
      f"pytorch={torch.__version__} torchvision={torchvision.__version__} threads={args.threads} "
      f"batch={args.batch} image={size} augment={not args.no_augment} step_s={step_s:.3f}"
  )
  print(f"images_per_s={args.batch / step_s:.2f}")


if __name__ == "__main__":
  main()
