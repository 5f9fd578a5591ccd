"""Our exports loaded by the PyTorch ecosystem give our features (python -m ssl_jax.export).

Two steps, two venvs (torch is never a project dependency):

  python experiments/export_check.py --make /tmp/export_check          # the project's venv
  /tmp/torchenv/bin/python experiments/export_check.py --check /tmp/export_check
      # a side venv: torch (CPU), torchvision, transformers, safetensors, pillow

--make builds encoders with random weights (and random BatchNorm statistics, residual scales at
one, a non-zero class token, so that every mapped tensor matters), writes them with
ssl_jax/export_formats.py and saves our features of 8 random images. --check loads the files into
transformers' ViTModel and torchvision's resnet18 / resnet50 (fc = Identity, the small stems by
the usual two-line change) and prints the largest absolute difference per model, and relative
to the largest feature (random ResNets without BatchNorm's training-time statistics grow large
features); the last line is the largest relative difference of all. Results: experiments/export.md.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {  # name: (kind, settings)
    "vit_s_cls_learn": ("vit", dict(variant="s", patch_size=4, posemb="learn", pool="cls")),
    "vit_mu_cls_sincos": ("vit", dict(variant="mu", patch_size=4, posemb="sincos2d", pool="cls")),
    "resnet18_small": ("resnet", dict(depth=18, stem="small")),
    "resnet18_small_stride2": ("resnet", dict(depth=18, stem="small_stride2")),
    "resnet50_imagenet": ("resnet", dict(depth=50, stem="imagenet")),
}
IMAGE_SIZE = 32


def make(out):
  sys.path.insert(0, os.path.join(HERE, ".."))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from ssl_jax import export_formats  # pylint: disable=g-import-not-at-top
  from ssl_jax import exporting  # pylint: disable=g-import-not-at-top
  from ssl_jax.models import resnet, vit  # pylint: disable=g-import-not-at-top

  os.makedirs(out, exist_ok=True)
  images = np.random.default_rng(0).uniform(size=(8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
  np.save(os.path.join(out, "images.npy"), images)
  for i, (name, (kind, settings)) in enumerate(CASES.items()):
    key = jax.random.PRNGKey(i)
    if kind == "vit":
      encoder = vit.ViT(image_size=IMAGE_SIZE, **settings)
    else:
      encoder = resnet.ResNet(zero_init_residual=False, **settings)
    variables = jax.device_get(encoder.init(key, jnp.asarray(images)))
    noise = lambda x, k: np.asarray(x) + 0.05 * np.asarray(jax.random.normal(k, np.shape(x)))
    variables = jax.tree.map(noise, variables, _keys(jax, key, variables))
    # (the noise also moves the running statistics off their initial 0 / 1)
    ours = np.asarray(encoder.apply(variables, jnp.asarray(images), train=False))
    directory = os.path.join(out, name)
    os.makedirs(directory, exist_ok=True)
    config = ml_collections.ConfigDict({"name": kind, "norm": "batch", **settings})
    if kind == "vit":
      hf_config, tensors = export_formats.vit_to_transformers(config, IMAGE_SIZE, variables)
      with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    else:
      tensors = export_formats.resnet_to_torchvision(config, variables)
    exporting.save_safetensors(os.path.join(directory, "model.safetensors"), tensors)
    np.save(os.path.join(directory, "ours.npy"), ours)
    print(f"{name}: features {ours.shape}", flush=True)


def _keys(jax, key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def check(out):
  import torch  # pylint: disable=g-import-not-at-top

  # torchvision's detection operators need its compiled extension, which this CPU torch lacks;
  # its ResNets do not use them
  torch.library.register_fake = lambda *args, **kwargs: (lambda f: f)
  import torchvision  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top

  print(
      f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"transformers {transformers.__version__}",
      flush=True,
  )
  images = torch.from_numpy(np.load(os.path.join(out, "images.npy")))
  worst = 0.0
  for name, (kind, settings) in CASES.items():
    directory = os.path.join(out, name)
    with torch.no_grad():
      if kind == "vit":
        model = transformers.ViTModel.from_pretrained(directory, add_pooling_layer=False).eval()
        theirs = model(pixel_values=images.permute(0, 3, 1, 2)).last_hidden_state[:, 0]
      else:
        build = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[
            settings["depth"]
        ]
        model = build()
        if settings["stem"] != "imagenet":  # the two-line change for small images
          stride = 2 if settings["stem"] == "small_stride2" else 1
          model.conv1 = torch.nn.Conv2d(3, 64, 3, stride, 1, bias=False)
          model.maxpool = torch.nn.Identity()
        model.fc = torch.nn.Identity()
        model.load_state_dict(load_file(os.path.join(directory, "model.safetensors")), strict=True)
        theirs = model.eval()(images.permute(0, 3, 1, 2))
    ours = np.load(os.path.join(directory, "ours.npy"))
    diff = float(np.max(np.abs(theirs.numpy() - ours)))
    scale = float(np.max(np.abs(ours)))
    worst = max(worst, diff / scale)
    print(
        f"{name}: max |theirs - ours| = {diff:.2e}, features up to {scale:.4g}: "
        f"{diff / scale:.1e} of the largest",
        flush=True,
    )
  print(f"largest difference over all models, relative to the largest feature: {worst:.1e}")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--make")
  parser.add_argument("--check")
  args = parser.parse_args()
  if args.make:
    make(args.make)
  if args.check:
    check(args.check)
