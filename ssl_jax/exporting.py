"""A trained encoder in the formats other ecosystems load (python -m ssl_jax.export).

transformers   ViT encoders -> transformers' `ViTModel` (config.json, model.safetensors,
               preprocessor_config.json): the features are `last_hidden_state[:, 0]`. Exact
               for our class-token ViTs: the class token gets a zero position embedding (ours
               has none), LayerNorm eps 1e-6 and the tanh GELU (flax's defaults) are set in the
               config, inputs are [0, 1] pixels (no mean/std). An average-pooled ViT (pool='gap')
               is refused: `ViTModel` always prepends a class token that every token attends
               to. BERT encoders (text runs) -> `BertForMaskedLM` with the run's tokenizer.
torchvision    ResNets (batch norm) -> model.safetensors in torchvision's `resnet` naming
               (conv1, bn1, layerN.M.*, downsample.0/1; no `fc`: use `fc = nn.Identity()` for
               the features). Our small-image stems are torchvision's usual two-line change:
               `model.conv1 = nn.Conv2d(3, 64, 3, stride, 1, bias=False)` (stride 1, or 2 for
               'small_stride2') and `model.maxpool = nn.Identity()`. export.json records depth,
               stem and width. Inputs are [0, 1] pixels.
safetensors    any encoder: its variables as safetensors (keys `collection/path/to/leaf`) and
               encoder.json (config.model and the image size); `load_safetensors` rebuilds it.
               The time-series encoders have no standard format elsewhere; this is theirs.
"""

import json
import os
import re

import jax
import numpy as np
from flax import traverse_util

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import models

FORMATS = ("transformers", "torchvision", "safetensors")


def save_safetensors(path, tensors):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  save_file(
      {
          k: np.ascontiguousarray(v, np.float32) if v.dtype.kind == "f" else v
          for k, v in tensors.items()
      },
      path,
  )


def vit_to_transformers(model_config, image_size, variables, channels=3):
  """(config dict, {name: tensor}) of transformers' ViTModel holding our ViT; see the docstring."""
  from ssl_jax.models import vit  # pylint: disable=g-import-not-at-top

  if model_config.pool != "cls":
    raise ValueError(
        f"config.model.pool={model_config.pool!r}: transformers' ViTModel always prepends a class "
        "token that every patch attends to, so an average-pooled ViT without one has no exact "
        "equivalent there; export --format=safetensors instead"
    )
  width, depth, mlp_dim, heads = vit.VARIANTS[model_config.variant]
  p = {
      k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables["params"], sep="/").items()
  }
  grid = image_size // model_config.patch_size
  if model_config.posemb == "learn":
    table = p["pos_embedding"].reshape(-1, width)
  else:
    table = vit.sincos_2d(grid, grid, width)
  out = {
      "embeddings.cls_token": p["cls"].reshape(1, 1, width),
      # the class token has no position embedding in ours: a zero row
      "embeddings.position_embeddings": np.concatenate([np.zeros((1, width)), table])[None],
      "embeddings.patch_embeddings.projection.weight": p["embedding/kernel"].transpose(3, 2, 0, 1),
      "embeddings.patch_embeddings.projection.bias": p["embedding/bias"],
      "layernorm.weight": p["encoder_norm/scale"],
      "layernorm.bias": p["encoder_norm/bias"],
  }
  for i in range(depth):
    ours, theirs = f"block{i}", f"encoder.layer.{i}"
    attention = f"{ours}/MultiHeadDotProductAttention_0"
    for name in ("query", "key", "value"):
      out[f"{theirs}.attention.attention.{name}.weight"] = (
          p[f"{attention}/{name}/kernel"].reshape(width, width).T
      )
      out[f"{theirs}.attention.attention.{name}.bias"] = p[f"{attention}/{name}/bias"].reshape(-1)
    out[f"{theirs}.attention.output.dense.weight"] = (
        p[f"{attention}/out/kernel"].reshape(width, width).T
    )
    out[f"{theirs}.attention.output.dense.bias"] = p[f"{attention}/out/bias"]
    for n, name in ((0, "layernorm_before"), (1, "layernorm_after")):
      out[f"{theirs}.{name}.weight"] = p[f"{ours}/LayerNorm_{n}/scale"]
      out[f"{theirs}.{name}.bias"] = p[f"{ours}/LayerNorm_{n}/bias"]
    for n, name in ((0, "intermediate.dense"), (1, "output.dense")):
      out[f"{theirs}.{name}.weight"] = p[f"{ours}/MlpBlock_0/Dense_{n}/kernel"].T
      out[f"{theirs}.{name}.bias"] = p[f"{ours}/MlpBlock_0/Dense_{n}/bias"]
  config = {
      "architectures": ["ViTModel"],
      "model_type": "vit",
      "hidden_size": width,
      "num_hidden_layers": depth,
      "num_attention_heads": heads,
      "intermediate_size": mlp_dim,
      "hidden_act": "gelu_pytorch_tanh",  # flax's nn.gelu default (the tanh approximation)
      "hidden_dropout_prob": 0.0,
      "attention_probs_dropout_prob": 0.0,
      "layer_norm_eps": 1e-6,  # flax's LayerNorm default
      "image_size": image_size,
      "patch_size": model_config.patch_size,
      "num_channels": channels,
      "qkv_bias": True,
  }
  return config, {k: np.asarray(v, np.float32) for k, v in out.items()}


def _indexed(names, prefix):
  """Submodule names `prefix_N` sorted by N."""
  found = [n for n in names if re.fullmatch(rf"{prefix}_\d+", n)]
  return sorted(found, key=lambda n: int(n.rsplit("_", 1)[1]))


def resnet_to_torchvision(model_config, variables):
  """{name: tensor} of torchvision's ResNet holding our ResNet (see the module docstring)."""
  from ssl_jax.models import resnet  # pylint: disable=g-import-not-at-top

  if model_config.norm != "batch":
    raise ValueError(
        f"config.model.norm={model_config.norm!r}: torchvision's ResNets use batch norm; "
        "export --format=safetensors instead"
    )
  params, stats = variables["params"], variables["batch_stats"]
  out = {}

  def conv(name, kernel):
    out[f"{name}.weight"] = np.asarray(kernel).transpose(3, 2, 0, 1)  # HWIO -> OIHW

  def norm(name, p, s):
    out[f"{name}.weight"], out[f"{name}.bias"] = np.asarray(p["scale"]), np.asarray(p["bias"])
    out[f"{name}.running_mean"], out[f"{name}.running_var"] = (
        np.asarray(s["mean"]),
        np.asarray(s["var"]),
    )
    out[f"{name}.num_batches_tracked"] = np.zeros((), np.int64)

  conv("conv1", params["stem"]["kernel"])
  norm("bn1", params["BatchNorm_0"], stats["BatchNorm_0"])
  stage_sizes, bottleneck = resnet.STAGES[model_config.depth]
  blocks = _indexed(params, "Bottleneck" if bottleneck else "BasicBlock")
  index = 0
  for stage, count in enumerate(stage_sizes):
    for j in range(count):
      ours, theirs = blocks[index], f"layer{stage + 1}.{j}"
      index += 1
      p, s = params[ours], stats[ours]
      convs, norms = _indexed([n for n in p if n != "shortcut"], r"\w*Conv\w*"), _indexed(
          p, "BatchNorm"
      )
      for n, name in enumerate(convs):
        conv(f"{theirs}.conv{n + 1}", p[name]["kernel"])
        norm(f"{theirs}.bn{n + 1}", p[norms[n]], s[norms[n]])
      if "shortcut" in p:
        conv(f"{theirs}.downsample.0", p["shortcut"]["kernel"])
        norm(f"{theirs}.downsample.1", p[norms[len(convs)]], s[norms[len(convs)]])
  return out


def export(workdir, fmt, out):
  """Writes the encoder of the run in `workdir` in format `fmt` into the directory `out`."""
  from ssl_jax import inference  # pylint: disable=g-import-not-at-top

  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r}; accepted: {list(FORMATS)}")
  trained = inference.Trained.load(workdir)
  config, name = trained.config, trained.config.model.name
  variables = jax.device_get(trained.variables)  # {collection: encoder tree}, numpy
  os.makedirs(out, exist_ok=True)
  if fmt == "safetensors":
    flat = traverse_util.flatten_dict(variables, sep="/")
    save_safetensors(
        os.path.join(out, "model.safetensors"), {k: np.asarray(v) for k, v in flat.items()}
    )
    info = {
        "model": config.model.to_dict(),
        "image_size": config.data.image_size,
        "source": os.path.abspath(workdir),
        "step": trained.step,
    }
  elif fmt == "transformers" and name == "vit":
    hf_config, tensors = vit_to_transformers(
        config.model, config.data.image_size, variables, channels=config.data.channels
    )
    save_safetensors(os.path.join(out, "model.safetensors"), tensors)
    checkpoint_lib.write_atomically(
        os.path.join(out, "config.json"), json.dumps(hf_config, indent=2)
    )
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": config.data.image_size, "width": config.data.image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": False,
    }
    checkpoint_lib.write_atomically(
        os.path.join(out, "preprocessor_config.json"), json.dumps(processor, indent=2)
    )
    info = {"features": "last_hidden_state[:, 0]"}
  elif fmt == "transformers" and name == "bert":
    return trained.modality.export_transformers(config, workdir, out)
  elif fmt == "torchvision" and name == "resnet":
    save_safetensors(
        os.path.join(out, "model.safetensors"), resnet_to_torchvision(config.model, variables)
    )
    info = {
        "depth": config.model.depth,
        "stem": config.model.stem,
        "width_multiplier": config.model.width_multiplier,
        "features": "torchvision resnet with fc = nn.Identity(), inputs in [0, 1]",
    }
  else:
    accepted = {"vit": "transformers", "bert": "transformers", "resnet": "torchvision"}
    raise ValueError(
        f"--format={fmt!r} does not take a {name!r} encoder: {name} goes to "
        f"{accepted.get(name, 'safetensors')!r} (or 'safetensors', which takes every encoder)"
    )
  checkpoint_lib.write_atomically(os.path.join(out, "export.json"), json.dumps(info, indent=2))
  print(f"wrote {out} ({fmt}) from {workdir} step {trained.step}", flush=True)
  return out


def load_safetensors(directory):
  """(encoder module, variables) of a --format=safetensors export."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  with open(os.path.join(directory, "export.json")) as f:
    info = json.load(f)
  model_config = ml_collections.ConfigDict(info["model"])
  encoder = models.build_encoder(model_config, image_size=info["image_size"])
  flat = load_file(os.path.join(directory, "model.safetensors"))
  return encoder, traverse_util.unflatten_dict(flat, sep="/")
