"""BERT's pre-training heads in Flax, under `cls` as in the checkpoints: the MLM head
(`predictions`, its decoder tied to the word embeddings) alone (`MLMHeads`, BertForMaskedLM's)
or with NSP's classifier (`PreTrainingHeads`, BertForPreTraining's). The tasks own them
(tasks/mlm.py, tasks/mlm_nsp.py); the encoder is models/bert.py.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssl_jax.models import bert
from ssl_jax.models.bert_config import ACTIVATIONS, Config


class MLMHead(nn.Module):
  """BERT's MLM head (`cls/predictions`): dense + activation + LayerNorm (`transform`), then the
  decoder tied to the word embeddings, plus a bias (V,)."""

  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, word_embeddings):
    c = self.config
    x = _TransformBlock(c, self.dtype, name="transform")(hidden)
    bias = self.param("bias", nn.initializers.zeros, (c.vocab_size,))
    logits = jnp.einsum("...d,vd->...v", x, word_embeddings.astype(self.dtype))
    return logits + bias.astype(self.dtype)


class _TransformBlock(nn.Module):
  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # Flax's default (LeCun normal) initialisation here and in NSP's classifier, as in
    # transformers' Flax heads, whose runs ours reproduce; the encoder's layers draw N(0, 0.02)
    x = nn.Dense(self.config.hidden_size, dtype=self.dtype, name="dense")(x)
    return bert.layer_norm(self.config, self.dtype)(ACTIVATIONS[self.config.hidden_act](x))


class PreTrainingHeads(nn.Module):
  """`cls`: the MLM head (`predictions`) and NSP's two-way classifier (`seq_relationship`) on the
  pooled [CLS]."""

  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, pooled, word_embeddings):
    logits = MLMHead(self.config, self.dtype, name="predictions")(hidden, word_embeddings)
    return logits, nn.Dense(2, dtype=self.dtype, name="seq_relationship")(pooled)


class MLMHeads(nn.Module):
  """`cls` of BertForMaskedLM: the MLM head alone."""

  config: Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden, word_embeddings):
    return MLMHead(self.config, self.dtype, name="predictions")(hidden, word_embeddings)
