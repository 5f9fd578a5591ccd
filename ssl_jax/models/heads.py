"""Heads that pretext tasks put on an encoder: MLP projectors/predictors and DINO's head."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLPHead(nn.Module):
  """Dense layers with BatchNorm + ReLU between them (SimCLR v2 style); the last is linear.

  `norm='none'` drops the BatchNorms (GroupNorm encoders, or methods whose heads have none);
  `last_norm` adds a BatchNorm without affine parameters after the last layer (SimSiam's
  projector, MoCo v3's heads).
  """

  dims: Sequence[int]
  norm: str = "batch"
  last_norm: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    batch_norm = lambda **kw: nn.BatchNorm(use_running_average=not train, momentum=0.9, **kw)
    for i, dim in enumerate(self.dims):
      last = i == len(self.dims) - 1
      x = nn.Dense(dim, use_bias=(last and not self.last_norm) or self.norm != "batch")(x)
      if not last:
        if self.norm == "batch":
          x = batch_norm()(x)
        x = nn.relu(x)
      elif self.last_norm and self.norm == "batch":
        x = batch_norm(use_scale=False, use_bias=False)(x)
    return x


class DINOHead(nn.Module):
  """DINO's head (Caron et al. 2021): MLP -> L2-normalised bottleneck -> weight-normalised
  prototypes.

  SwAV's projector and prototypes have the same form (with BatchNorm in the MLP).

  The last layer's columns are normalised to unit length (weight norm with its gain fixed at 1,
  the paper's `norm_last_layer=True`), so the logits are cosine similarities to K prototypes.
  """

  hidden_dims: Sequence[int] = (2048, 2048)
  bottleneck_dim: int = 256
  num_prototypes: int = 65536
  norm: str = "none"  # DINO's head has no BatchNorm by default
  return_embedding: bool = False  # also return the normalised bottleneck (SwAV's queue needs it)

  @nn.compact
  def __call__(self, x, train=False):
    x = MLPHead((*self.hidden_dims, self.bottleneck_dim), norm=self.norm, name="mlp")(
        x, train=train
    )
    x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))
    kernel = self.param(
        "prototypes", nn.initializers.lecun_normal(), (x.shape[-1], self.num_prototypes)
    )
    kernel = kernel * jax.lax.rsqrt(
        jnp.maximum(jnp.sum(kernel * kernel, axis=0, keepdims=True), 1e-12)
    )
    return (x @ kernel, x) if self.return_embedding else x @ kernel


class EncoderWithHeads(nn.Module):
  """encoder -> projection (-> prediction): the network of most joint-embedding methods.

  `__call__` returns (prediction, or the projection without a predictor, aux) with
  aux = {"features", "projection"}; `project` runs the encoder and projection only (what a
  momentum target network computes).
  """

  encoder: nn.Module
  projection: nn.Module
  prediction: nn.Module = None

  def __call__(self, x, train=False):
    z, features = self.project(x, train=train)
    out = z if self.prediction is None else self.prediction(z, train=train)
    return out, {"features": features, "projection": z}

  def project(self, x, train=False):
    features = self.encoder(x, train=train)
    return self.projection(features, train=train), features
