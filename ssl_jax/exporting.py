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


# how a tensor goes from ours to theirs, and back (`shape`: ours)
_TRANSFORMS = {
    "same": (lambda x: x, lambda y, shape: y.reshape(shape)),
    "dense": (lambda x: x.T, lambda y, shape: y.T),  # (in, out) <-> torch (out, in)
    "conv": (lambda x: x.transpose(3, 2, 0, 1), lambda y, shape: y.transpose(2, 3, 1, 0)),
    "heads_in": (  # attention q/k/v: (width, heads, head_dim) <-> (width, width)
        lambda x: x.reshape(x.shape[0], -1).T,
        lambda y, shape: y.T.reshape(shape),
    ),
    "heads_out": (  # attention output: (heads, head_dim, width) <-> (width, width)
        lambda x: x.reshape(-1, x.shape[-1]).T,
        lambda y, shape: y.T.reshape(shape),
    ),
    "flat": (lambda x: x.reshape(-1), lambda y, shape: y.reshape(shape)),
}


def _vit_pairs(depth, posemb):
  """[(our 'collection/path', their name, transform)] of a class-token ViT."""
  pairs = [
      ("params/cls", "embeddings.cls_token", "same"),
      ("params/embedding/kernel", "embeddings.patch_embeddings.projection.weight", "conv"),
      ("params/embedding/bias", "embeddings.patch_embeddings.projection.bias", "same"),
      ("params/encoder_norm/scale", "layernorm.weight", "same"),
      ("params/encoder_norm/bias", "layernorm.bias", "same"),
  ]
  for i in range(depth):
    ours, theirs = f"params/block{i}", f"encoder.layer.{i}"
    attention = f"{ours}/MultiHeadDotProductAttention_0"
    for name in ("query", "key", "value"):
      pairs += [
          (f"{attention}/{name}/kernel", f"{theirs}.attention.attention.{name}.weight", "heads_in"),
          (f"{attention}/{name}/bias", f"{theirs}.attention.attention.{name}.bias", "flat"),
      ]
    pairs += [
        (f"{attention}/out/kernel", f"{theirs}.attention.output.dense.weight", "heads_out"),
        (f"{attention}/out/bias", f"{theirs}.attention.output.dense.bias", "same"),
    ]
    for n, name in ((0, "layernorm_before"), (1, "layernorm_after")):
      pairs += [
          (f"{ours}/LayerNorm_{n}/scale", f"{theirs}.{name}.weight", "same"),
          (f"{ours}/LayerNorm_{n}/bias", f"{theirs}.{name}.bias", "same"),
      ]
    for n, name in ((0, "intermediate.dense"), (1, "output.dense")):
      pairs += [
          (f"{ours}/MlpBlock_0/Dense_{n}/kernel", f"{theirs}.{name}.weight", "dense"),
          (f"{ours}/MlpBlock_0/Dense_{n}/bias", f"{theirs}.{name}.bias", "same"),
      ]
  return pairs


def _to_theirs(pairs, variables):
  flat = traverse_util.flatten_dict(variables, sep="/")
  return {theirs: _TRANSFORMS[how][0](np.asarray(flat[ours])) for ours, theirs, how in pairs}


def _to_ours(pairs, tensors, abstract):
  """{collection: tree} of `abstract`'s shapes from their tensors."""
  shapes = traverse_util.flatten_dict(abstract, sep="/")
  missing = sorted(theirs for _, theirs, _ in pairs if theirs not in tensors)
  if missing:
    raise ValueError(f"the export lacks {len(missing)} tensors, e.g. {missing[:3]}")
  flat = {
      ours: np.asarray(_TRANSFORMS[how][1](np.asarray(tensors[theirs]), shapes[ours].shape))
      for ours, theirs, how in pairs
  }
  return traverse_util.unflatten_dict(flat, sep="/")


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
  grid = image_size // model_config.patch_size
  if model_config.posemb == "learn":
    table = np.asarray(variables["params"]["pos_embedding"]).reshape(-1, width)
  else:
    table = vit.sincos_2d(grid, grid, width)
  out = _to_theirs(_vit_pairs(depth, model_config.posemb), {"params": variables["params"]})
  # the class token has no position embedding in ours: a zero row
  out["embeddings.position_embeddings"] = np.concatenate([np.zeros((1, width)), table])[None]
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


def vit_from_transformers(config, tensors):
  """(our ViT, variables) from one of our ViTModel exports (learned positions: the same table)."""
  from ssl_jax.models import vit  # pylint: disable=g-import-not-at-top

  shape = (
      config["hidden_size"],
      config["num_hidden_layers"],
      config["intermediate_size"],
      config["num_attention_heads"],
  )
  variant = [name for name, sizes in vit.VARIANTS.items() if sizes == shape]
  pos = np.asarray(tensors["embeddings.position_embeddings"])
  ours = (
      variant
      and config.get("hidden_act") == "gelu_pytorch_tanh"
      and config.get("layer_norm_eps") == 1e-6
      and not np.any(pos[0, 0])
  )
  if not ours:
    raise ValueError(
        "this ViTModel is not one of our exports (a known ViT size, the tanh GELU, LayerNorm eps "
        "1e-6 and no position embedding on the class token); load it with transformers"
    )
  encoder = vit.ViT(
      variant=variant[0],
      patch_size=config["patch_size"],
      image_size=config["image_size"],
      posemb="learn",
      pool="cls",
  )
  images = np.zeros((1, config["image_size"], config["image_size"], config["num_channels"]))
  abstract = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), images)
  variables = _to_ours(_vit_pairs(config["num_hidden_layers"], "learn"), tensors, abstract)
  variables["params"]["pos_embedding"] = pos[:, 1:].astype(np.float32)
  return encoder, variables


def _indexed(names, prefix):
  """Submodule names `prefix_N` sorted by N."""
  found = [n for n in names if re.fullmatch(rf"{prefix}_\d+", n)]
  return sorted(found, key=lambda n: int(n.rsplit("_", 1)[1]))


def _resnet_pairs(depth, params):
  """[(our 'collection/path', their name, transform)] of a batch-norm ResNet (`params`: ours)."""
  from ssl_jax.models import resnet  # pylint: disable=g-import-not-at-top

  pairs = []

  def norm(ours, theirs):
    nonlocal pairs
    pairs += [
        (f"params/{ours}/scale", f"{theirs}.weight", "same"),
        (f"params/{ours}/bias", f"{theirs}.bias", "same"),
        (f"batch_stats/{ours}/mean", f"{theirs}.running_mean", "same"),
        (f"batch_stats/{ours}/var", f"{theirs}.running_var", "same"),
    ]

  pairs.append(("params/stem/kernel", "conv1.weight", "conv"))
  norm("BatchNorm_0", "bn1")
  stage_sizes, bottleneck = resnet.STAGES[depth]
  blocks = iter(_indexed(params, "Bottleneck" if bottleneck else "BasicBlock"))
  for stage, count in enumerate(stage_sizes):
    for j in range(count):
      ours, theirs = next(blocks), f"layer{stage + 1}.{j}"
      p = params[ours]
      convs = _indexed([n for n in p if n != "shortcut"], r"\w*Conv\w*")
      norms = _indexed(p, "BatchNorm")
      for n, name in enumerate(convs):
        pairs.append((f"params/{ours}/{name}/kernel", f"{theirs}.conv{n + 1}.weight", "conv"))
        norm(f"{ours}/{norms[n]}", f"{theirs}.bn{n + 1}")
      if "shortcut" in p:
        pairs.append((f"params/{ours}/shortcut/kernel", f"{theirs}.downsample.0.weight", "conv"))
        norm(f"{ours}/{norms[len(convs)]}", f"{theirs}.downsample.1")
  return pairs


def resnet_to_torchvision(model_config, variables):
  """{name: tensor} of torchvision's ResNet holding our ResNet (see the module docstring)."""
  if model_config.norm != "batch":
    raise ValueError(
        f"config.model.norm={model_config.norm!r}: torchvision's ResNets use batch norm; "
        "export --format=safetensors instead"
    )
  pairs = _resnet_pairs(model_config.depth, variables["params"])
  out = _to_theirs(pairs, {c: variables[c] for c in ("params", "batch_stats")})
  for name in [n for n in out if n.endswith(".running_var")]:
    out[name[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
  return out


def resnet_from_torchvision(info, tensors):
  """(our ResNet, variables) from one of our torchvision exports (export.json: `info`)."""
  from ssl_jax.models import resnet  # pylint: disable=g-import-not-at-top

  encoder = resnet.ResNet(
      depth=info["depth"], stem=info["stem"], width_multiplier=info["width_multiplier"]
  )
  channels = tensors["conv1.weight"].shape[1]
  abstract = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), np.zeros((1, 32, 32, channels)))
  pairs = _resnet_pairs(info["depth"], abstract["params"])
  return encoder, _to_ours(pairs, tensors, abstract)


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


def load(directory):
  """(encoder module, variables) from any of our exports in `directory`: what
  `encoder.apply(variables, inputs)` turns into the run's features (`ssl_jax.models.load`)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  read = lambda name: json.load(open(os.path.join(directory, name)))
  has = lambda name: os.path.isfile(os.path.join(directory, name))
  info = read("export.json") if has("export.json") else {}
  config = read("config.json") if has("config.json") else {}
  if config.get("model_type") == "bert":  # BertForMaskedLM and its tokenizer
    from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top

    generic = generic_models.load(directory)
    return generic.encoder, generic.variables
  if not has("model.safetensors"):
    raise FileNotFoundError(f"{directory} holds no model.safetensors: not one of our exports")
  tensors = load_file(os.path.join(directory, "model.safetensors"))
  if "model" in info:  # --format=safetensors
    encoder = models.build_encoder(
        ml_collections.ConfigDict(info["model"]), image_size=info["image_size"]
    )
    return encoder, traverse_util.unflatten_dict(tensors, sep="/")
  if config.get("model_type") == "vit":
    return vit_from_transformers(config, tensors)
  if "depth" in info:
    return resnet_from_torchvision(info, tensors)
  raise ValueError(f"{directory}: not one of our exports (no export.json or a ViT/BERT config)")
