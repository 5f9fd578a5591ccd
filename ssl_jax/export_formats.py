"""Our encoders' tensors under other ecosystems' names, both ways (what exporting.py writes and
`load`s back; its docstring says what maps exactly and what is refused).

ViT (class token)       transformers' `ViTModel`: `vit_to_transformers`, `vit_from_transformers`
ResNet (batch norm)     torchvision's `resnet` naming: `resnet_to_torchvision`,
                        `resnet_from_torchvision`
Each is a list of (our 'collection/path', their name, transform) pairs; a transform turns a tensor
into theirs (a transpose, a reshape of the attention heads) and back to our shape.
"""

import re

import jax
import numpy as np
from flax import traverse_util

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
