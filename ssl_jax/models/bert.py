"""BERT (Devlin et al. 2019) in Flax: the encoder, by size name or checkpoint (its MLM and NSP
heads: models/bert_heads.py).

`config.model.bert` names the shape, a BERT miniature by size or a local checkpoint directory
(models/bert_config.py); a checkpoint's weights are the encoder's initialisation
(`pretrained_params`, which the loop applies to a fresh run) for continued pre-training.

The architecture is the original post-norm BERT: token + position + segment embeddings and a
LayerNorm; per layer, self-attention (query/key/value projections, a softmax over the real
tokens, an output projection) then a GELU feed-forward layer, each followed by dropout, the
residual and a LayerNorm; optionally the tanh pooler over [CLS] that NSP reads. Parameter names
follow the checkpoints' (`embeddings/word_embeddings`, `encoder/layer/0/attention/self/query`,
...) so that converting a PyTorch state dict is a rename and a transpose
(`models/bert_checkpoint.py`); features equal transformers 4.57's FlaxBertModel and transformers
5's PyTorch BertModel on the same checkpoint (tests/test_bert.py, goldens from both).

The encoder maps token ids (B, L) to features (B, D): the final [CLS] state (`model.pool='cls'`)
or the mean of the final states over the real tokens ('mean' or 'gap'). Padding (`pad_id`) is
masked out of attention. With `per_token=True` it also returns the final states (B, L, D), which
the MLM heads read. Its parameters sit under `bert`, as in the checkpoints' BERT models.
"""

import functools
import os
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax import models
from ssl_jax.models.bert_config import ACTIVATIONS, Config, bert_config, is_checkpoint

POOLS = ("cls", "mean", "gap")


def _dense(config, features, name, dtype):
  return nn.Dense(
      features, dtype=dtype, name=name, kernel_init=nn.initializers.normal(config.initializer_range)
  )


def layer_norm(config, dtype):
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name="LayerNorm")


def _dropout(rate):
  """Named as in transformers' Flax BERT, so a run draws the masks it drew (Flax folds module
  names into the dropout keys): trajectories, not only forwards, match the stack we replaced."""
  return nn.Dropout(rate, name="dropout")


class Embeddings(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids, token_type_ids, positions, deterministic):
    c = self.config
    init = nn.initializers.normal(c.initializer_range)
    words = nn.Embed(
        c.vocab_size, c.hidden_size, embedding_init=init, dtype=self.dtype, name="word_embeddings"
    )(ids)
    places = nn.Embed(
        c.max_position_embeddings,
        c.hidden_size,
        embedding_init=init,
        dtype=self.dtype,
        name="position_embeddings",
    )(positions)
    segments = nn.Embed(
        c.type_vocab_size,
        c.hidden_size,
        embedding_init=init,
        dtype=self.dtype,
        name="token_type_embeddings",
    )(token_type_ids)
    x = layer_norm(c, self.dtype)(words + segments + places)
    return _dropout(c.hidden_dropout_prob)(x, deterministic=deterministic)


class SelfAttention(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic):
    c = self.config
    heads, head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads
    split = lambda t: t.reshape(t.shape[:2] + (heads, head_dim))  # noqa: E731
    q, k, v = (split(_dense(c, c.hidden_size, n, self.dtype)(x)) for n in ("query", "key", "value"))
    dropout = not deterministic and c.attention_probs_dropout_prob > 0
    weights = nn.dot_product_attention_weights(  # softmax(q k^T / sqrt(d) + bias), dropped out
        q,
        k,
        bias=bias,
        dropout_rng=self.make_rng("dropout") if dropout else None,
        dropout_rate=c.attention_probs_dropout_prob,
        deterministic=not dropout,
        dtype=self.dtype,
    )
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return out.reshape(x.shape[:2] + (c.hidden_size,))


class Output(nn.Module):
  """Dense, dropout, then LayerNorm(residual + it): BERT's sub-layer output."""

  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, residual, deterministic):
    x = _dense(self.config, self.config.hidden_size, "dense", self.dtype)(x)
    x = _dropout(self.config.hidden_dropout_prob)(x, deterministic=deterministic)
    return layer_norm(self.config, self.dtype)(x + residual)


class Attention(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic):
    y = SelfAttention(self.config, self.dtype, name="self")(x, bias, deterministic)
    return Output(self.config, self.dtype, name="output")(y, x, deterministic)


class Intermediate(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = _dense(self.config, self.config.intermediate_size, "dense", self.dtype)(x)
    return ACTIVATIONS[self.config.hidden_act](x)


class Layer(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic):
    x = Attention(self.config, self.dtype, name="attention")(x, bias, deterministic)
    y = Intermediate(self.config, self.dtype, name="intermediate")(x)
    return Output(self.config, self.dtype, name="output")(y, x, deterministic)


class Layers(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic):
    for i in range(self.config.num_hidden_layers):
      x = Layer(self.config, self.dtype, name=str(i))(x, bias, deterministic)
    return x


class Encoder(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, deterministic):
    return Layers(self.config, self.dtype, name="layer")(x, bias, deterministic)


class Pooler(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden):
    return jnp.tanh(_dense(self.config, self.config.hidden_size, "dense", self.dtype)(hidden[:, 0]))


class Bert(nn.Module):
  """BertModel: ids (B, L) -> (final states (B, L, D), pooled [CLS] (B, D) or None)."""

  config: Config
  dtype: Any = jnp.float32
  add_pooling_layer: bool = False

  def setup(self):
    self.embeddings = Embeddings(self.config, self.dtype)
    self.encoder = Encoder(self.config, self.dtype)
    if self.add_pooling_layer:
      self.pooler = Pooler(self.config, self.dtype)

  def __call__(self, ids, attention_mask, token_type_ids, positions, deterministic=True):
    x = self.embeddings(ids, token_type_ids, positions, deterministic)
    bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(self.dtype).min).astype(
        self.dtype
    )
    hidden = self.encoder(x, bias, deterministic)
    return hidden, (self.pooler(hidden) if self.add_pooling_layer else None)


class BertEncoder(nn.Module):
  """The registry's encoder: BERT under `bert`, features pooled by `pool`."""

  config: Config
  pool: str = "mean"
  pad_id: int = 0
  dtype: Any = jnp.float32
  add_pooling_layer: bool = False  # BERT's tanh pooler over [CLS]: the NSP head reads it

  def setup(self):
    self.bert = Bert(self.config, dtype=self.dtype, add_pooling_layer=self.add_pooling_layer)

  def __call__(
      self, ids, train=False, *, attention_mask=None, token_type_ids=None, per_token=False
  ):
    if attention_mask is None:
      attention_mask = ids != self.pad_id
    attention_mask = attention_mask.astype(jnp.int32)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(ids)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    hidden, pooled = self.bert(
        ids, attention_mask, token_type_ids, positions, deterministic=not train
    )
    if self.pool == "cls":
      features = hidden[:, 0]
    else:
      weights = attention_mask[..., None].astype(hidden.dtype)
      features = jnp.sum(hidden * weights, 1) / jnp.maximum(jnp.sum(weights, 1), 1)
    features = features.astype(jnp.float32)
    if not per_token:
      return features
    return (hidden, features, pooled) if self.add_pooling_layer else (hidden, features)

  def word_embeddings(self):
    """The input embedding matrix (V, D), which the MLM decoder shares (tied weights)."""
    return self.bert.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


SETTINGS = ("bert", "pool")  # config.model.*


def encoder(model_config):
  if model_config.pool not in POOLS:
    raise ValueError(f"config.model.pool={model_config.pool!r}; the bert encoder accepts {POOLS}")
  config = bert_config(model_config.bert)
  return BertEncoder(
      config,
      pool="cls" if model_config.pool == "cls" else "mean",
      pad_id=int(config.pad_token_id or 0),
      dtype=models.DTYPES[model_config.dtype],
  )


def pretrained_params(model_config):
  """The encoder's parameters ({'bert': tree}, without the pooler) from a checkpoint directory,
  or None for a size."""
  if not is_checkpoint(model_config.bert.size):
    return None
  return {
      "bert": _load(
          os.path.abspath(model_config.bert.size), os.path.getmtime(model_config.bert.size)
      )
  }


def pretrained_heads(model_config):
  """The checkpoint's own heads ({'cls': tree}: MLM, and NSP where saved) or None: a checkpoint
  saved from BertForMaskedLM / BertForPreTraining has them, a bare encoder (a sentence-transformers
  model such as all-MiniLM-L6-v2) does not."""
  if not is_checkpoint(model_config.bert.size):
    return None
  from ssl_jax.models import bert_checkpoint  # pylint: disable=g-import-not-at-top

  heads = bert_checkpoint.load(os.path.abspath(model_config.bert.size)).get("cls")
  return {"cls": heads} if heads else None


@functools.lru_cache(maxsize=2)
def _load(path, mtime):
  """Read once per process (TAPT and the generic baselines start from the same weights); treat
  the result as read-only host arrays (a run donates its device buffers to the train step)."""
  del mtime  # part of the cache key: a rewritten checkpoint is read again
  from ssl_jax.models import bert_checkpoint  # pylint: disable=g-import-not-at-top

  tree = bert_checkpoint.load(path)["bert"]
  tree.pop("pooler", None)  # the encoder's features never read it; NSP starts a fresh one
  return tree
