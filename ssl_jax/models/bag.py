"""A bag of embeddings: fastText's classifier body (Joulin et al. 2017, "Bag of Tricks for
Efficient Text Classification").

The features of a text are the mean of the embeddings of its tokens and, with `bigram_buckets` > 0,
of its token bigrams hashed into that many extra rows (fastText's `-wordNgrams 2`); padding
(`pad_id`) is left out of the mean. A linear head on these features is fastText's model. It has no
hidden layer and no attention, so it trains from random weights on a few hundred labelled texts in
seconds: the from-scratch text baseline that is strong for its cost (`bag_of_embeddings` in the
text study, modalities/text.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_jax import models

SETTINGS = ("bag",)  # config.model.*
_BIGRAM_PRIME = 1_000_003  # hash of a bigram (a, b): (a * prime + b) mod bigram_buckets


class BagOfEmbeddings(nn.Module):
  vocab_size: int
  dim: int = 64
  bigram_buckets: int = 0
  pad_id: int = 0
  dtype: object = jnp.float32

  def uniform(self, key, shape, dtype=jnp.float32):
    """fastText's initialisation: U(-1/dim, 1/dim)."""
    return jax.random.uniform(key, shape, dtype, -1.0 / self.dim, 1.0 / self.dim)

  @nn.compact
  def __call__(self, ids, train=False):
    del train  # no dropout, no batch statistics
    ids = ids.astype(jnp.int32)
    real = ids != self.pad_id
    rows, weights = ids, real
    if self.bigram_buckets:
      bigrams = (ids[:, :-1] * _BIGRAM_PRIME + ids[:, 1:]) % self.bigram_buckets + self.vocab_size
      rows = jnp.concatenate([ids, bigrams], axis=1)
      weights = jnp.concatenate([real, real[:, :-1] & real[:, 1:]], axis=1)
    table = nn.Embed(
        self.vocab_size + self.bigram_buckets,
        self.dim,
        embedding_init=self.uniform,
        name="embeddings",
    )
    vectors = table(rows).astype(self.dtype)
    weights = weights[..., None].astype(self.dtype)
    return jnp.sum(vectors * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


def encoder(model_config):
  bag = model_config.bag
  if bag.vocab_size < 1 or bag.dim < 1 or bag.bigram_buckets < 0:
    raise ValueError(
        f"config.model.bag: vocab_size={bag.vocab_size}, dim={bag.dim}, "
        f"bigram_buckets={bag.bigram_buckets}; accepted: vocab_size >= 1 (a text run sets it from "
        "its tokenizer), dim >= 1, bigram_buckets >= 0"
    )
  return BagOfEmbeddings(
      int(bag.vocab_size),
      int(bag.dim),
      int(bag.bigram_buckets),
      int(bag.pad_id),
      models.DTYPES[model_config.dtype],
  )
