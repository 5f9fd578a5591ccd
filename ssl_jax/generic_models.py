"""Generic pretrained encoders: the study's "generic foundation model", on our own Flax modules.

`load(name_or_path)` reads a BERT-family checkpoint in the Hugging Face layout (a local directory
or a Hub name; config.json, model.safetensors, the tokenizer) into our BERT encoder
(models/bert.py, models/bert_checkpoint.py): token ids (B, L), `pad_id` marking padding ->
the mean of the last hidden states over the real tokens (all-MiniLM-L6-v2's sentence embedding,
before its L2 normalisation). Fine-tuning, LoRA and probes treat it like any registry encoder.

Vision checkpoints (ViT, DINOv2, ResNet) were loaded through transformers' Flax models, which
transformers 5 removed. Their layouts differ from our ViT and ResNet (a position embedding for
the class token, LayerNorm epsilon 1e-12 and exact GELU in ViT; layer scale and interpolated
positions in DINOv2; a different stem and block naming in ResNet), so they are refused with an
error naming what is accepted, rather than loaded into a model that computes something else.
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import numpy as np

from ssl_jax.models import bert
from ssl_jax.models import bert_config
from ssl_jax.models import bert_checkpoint

ACCEPTED = (
    "BERT-family text checkpoints (model_type 'bert', e.g. all-MiniLM-L6-v2, bert-base-uncased)"
)
VISION = ("vit", "dinov2", "resnet", "convnext", "swin", "beit", "deit")


@dataclasses.dataclass
class Generic:
  encoder: nn.Module  # inputs -> features (B, D)
  variables: Any  # {collection: tree} for encoder.apply
  modality: str  # 'text'
  tokenizer: Any = None  # the model's tokenizer

  def tokenize(self, texts, max_length=128):
    """int32 token ids (N, L), padded with the encoder's pad_id."""
    out = self.tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    return out["input_ids"].astype(np.int32)


def _model_type(directory):
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise ValueError(
        f"config.generic_model={directory!r}: no config.json there; accepted: " f"{ACCEPTED}"
    )
  with open(path) as f:
    return json.load(f).get("model_type")


def load(name_or_path):
  """The `Generic` encoder of a BERT-family checkpoint (hub name or local directory)."""
  directory = bert_checkpoint.resolve(name_or_path)
  kind = _model_type(directory)
  if kind != "bert":
    why = (
        " (vision checkpoints went with transformers' Flax models; see this module's docstring)"
        if kind in VISION
        else ""
    )
    raise ValueError(
        f"config.generic_model={name_or_path!r} is a {kind!r} model{why}; accepted: " f"{ACCEPTED}"
    )
  from ssl_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  config = bert_config.Config.from_json(os.path.join(directory, "config.json"))
  tokenizer = tokenizer_lib.load(directory)
  pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.pad_token_id
  encoder = bert.BertEncoder(config, pool="mean", pad_id=int(pad_id or 0))
  params = {"bert": bert_checkpoint.load(directory)["bert"]}
  params["bert"].pop("pooler", None)  # the features never read it
  return Generic(encoder, {"params": params}, "text", tokenizer)
