"""Generic pretrained encoders from transformers' Flax models: the study's "generic foundation model".

`load(name_or_path)` goes through the real `from_pretrained` with a hub name or a local directory
(what `save_pretrained` writes): Flax weights directly, else PyTorch weights with `from_pt=True`
(a `model.safetensors` file loads without torch). The transformers linen module is wrapped in our
encoder contract (inputs -> features (B, D)), so fine-tuning, LoRA and probes treat it like any
registry encoder:
  vision (ViT, DINOv2, ResNet)  float images [0, 1] (B, H, W, C): grey -> RGB, resized to the
        model's image size, normalised by its mean/std; features: the CLS token after the final
        norm (ViT, DINOv2) or the pooled last stage (ResNet)
  text (BERT family)  token ids (B, L), `pad_id` marking padding; features: the mean of the last
        hidden states over the real tokens (all-MiniLM-L6-v2's sentence embedding, before its L2
        normalisation)
"""
import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

VISION = ("vit", "dinov2", "resnet")
TEXT = ("bert", "roberta")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NO_POOLER = ("vit", "bert", "roberta")  # built without their (unused) pooling layer


class VisionEncoder(nn.Module):
  model: nn.Module  # the transformers linen module (FlaxViTModule, ...)
  model_type: str
  image_size: int
  mean: tuple = IMAGENET_MEAN
  std: tuple = IMAGENET_STD

  def __call__(self, x, train=False):
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if x.shape[1:3] != (self.image_size, self.image_size):
      x = jax.image.resize(x, (x.shape[0], self.image_size, self.image_size, 3), "bilinear")
    x = (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    out = self.model(x, deterministic=not train)
    if self.model_type == "resnet":
      return out.pooler_output.reshape(x.shape[0], -1)
    return out.last_hidden_state[:, 0]


class TextEncoder(nn.Module):
  model: nn.Module
  pad_id: int = 0

  def __call__(self, ids, train=False):
    mask = (ids != self.pad_id).astype(jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    out = self.model(ids, mask, jnp.zeros_like(ids), positions, None, deterministic=not train)
    weights = mask[..., None].astype(out.last_hidden_state.dtype)
    return jnp.sum(out.last_hidden_state * weights, 1) / jnp.maximum(jnp.sum(weights, 1), 1)


@dataclasses.dataclass
class Generic:
  encoder: nn.Module  # inputs -> features (B, D)
  variables: Any  # {collection: tree} for encoder.apply
  modality: str  # 'image' | 'text'
  tokenizer: Any = None  # text: the model's tokenizer

  def tokenize(self, texts, max_length=128):
    """int32 token ids (N, L), padded with the encoder's pad_id."""
    out = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                         return_tensors="np")
    return out["input_ids"].astype(np.int32)


def _from_pretrained(name_or_path, **kwargs):
  import transformers  # pylint: disable=g-import-not-at-top
  try:  # Flax weights, without a random initialisation first
    return transformers.FlaxAutoModel.from_pretrained(name_or_path, _do_init=False, **kwargs)
  except (OSError, ValueError) as flax_error:
    try:  # PyTorch-format weights (safetensors loads without torch); the conversion needs init
      model = transformers.FlaxAutoModel.from_pretrained(name_or_path, from_pt=True, **kwargs)
    except OSError:
      raise flax_error from None
    return model, model.params


def _image_normalisation(name_or_path, model_type):
  path = os.path.join(name_or_path, "preprocessor_config.json")
  if os.path.isfile(path):
    with open(path) as f:
      pre = json.load(f)
    if "image_mean" in pre and "image_std" in pre:
      return tuple(pre["image_mean"]), tuple(pre["image_std"])
  if model_type == "vit":  # ViTImageProcessor's defaults
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
  return IMAGENET_MEAN, IMAGENET_STD


def load(name_or_path):
  """The `Generic` encoder of a transformers model (hub name or local directory)."""
  import transformers  # pylint: disable=g-import-not-at-top
  try:
    hf_config = transformers.AutoConfig.from_pretrained(name_or_path)
  except (OSError, ValueError) as e:
    raise ValueError(f"config.generic_model={name_or_path!r}: no transformers model there "
                     f"({e})") from None
  kind = hf_config.model_type
  if kind not in VISION + TEXT:
    raise ValueError(f"config.generic_model={name_or_path!r} is a {kind!r} model; accepted model "
                     f"types: {list(VISION + TEXT)}")
  verbosity = transformers.logging.get_verbosity()
  transformers.logging.set_verbosity_error()  # not the "pooler weights not used" notice
  try:
    model, params = _from_pretrained(name_or_path,
                                     **({"add_pooling_layer": False} if kind in NO_POOLER else {}))
  finally:
    transformers.logging.set_verbosity(verbosity)
  collections = params if "params" in params else {"params": params}  # ResNet: params + batch_stats
  variables = {c: {"model": tree} for c, tree in collections.items()}
  if kind in TEXT:
    tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else hf_config.pad_token_id
    return Generic(TextEncoder(model.module, pad_id=int(pad_id or 0)), variables, "text", tokenizer)
  image_size = getattr(hf_config, "image_size", 224)
  mean, std = _image_normalisation(name_or_path, kind)
  return Generic(VisionEncoder(model.module, kind, int(image_size), mean, std), variables, "image")
