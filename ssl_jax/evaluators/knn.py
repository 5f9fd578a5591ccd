"""Weighted kNN on frozen features (Wu et al. 2018): cosine similarity, votes weighted exp(sim / T).

The usual SSL setting is k=200 and T=0.1 (as in InstDisc and lightly's benchmarks); both are
reported with the result so numbers from different settings are never compared by accident.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _predict_chunk(queries, bank, bank_labels, *, k, temperature, num_classes):
  sims = queries @ bank.T
  top_sims, top_idx = jax.lax.top_k(sims, k)
  votes = (
      jax.nn.one_hot(bank_labels[top_idx], num_classes) * jnp.exp(top_sims / temperature)[..., None]
  )
  return jnp.argmax(votes.sum(axis=1), axis=-1)


def predict(
    train_features, train_labels, test_features, *, num_classes, k=200, temperature=0.1, chunk=1024
):
  normalise = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  bank = jnp.asarray(normalise(np.asarray(train_features, np.float32)))
  queries = normalise(np.asarray(test_features, np.float32))
  k = min(k, len(bank))
  out = []
  for start in range(0, len(queries), chunk):
    block = queries[start : start + chunk]
    pad = chunk - len(block) if len(queries) > chunk else 0
    block = np.pad(block, ((0, pad), (0, 0)))
    labels = _predict_chunk(
        block,
        bank,
        jnp.asarray(train_labels),
        k=k,
        temperature=temperature,
        num_classes=num_classes,
    )
    out.append(np.asarray(labels)[: len(block) - pad])
  return np.concatenate(out)


class KNN:

  def __init__(self, *, data, every_steps, k=200, temperature=0.1):
    if k < 1 or temperature <= 0:
      raise ValueError(
          f"kNN needs k >= 1 and temperature > 0; got k={k}, temperature={temperature}"
      )
    self.data, self.every_steps, self.k, self.temperature = data, every_steps, k, temperature

  def run(self, features_of):
    train_x, train_y, test_x, test_y = self.data.features(features_of)
    predicted = predict(
        train_x,
        train_y,
        test_x,
        num_classes=self.data.num_classes,
        k=self.k,
        temperature=self.temperature,
    )
    return {
        "accuracy": float(np.mean(predicted == test_y)),
        "k": self.k,
        "temperature": self.temperature,
    }
