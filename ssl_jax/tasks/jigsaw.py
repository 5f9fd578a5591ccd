"""Jigsaw puzzles (Noroozi & Favaro 2016): recognise which permutation shuffled 3x3 tiles.

Each view (`config.augment`, resized to the data's size) is cut into a 3x3 grid of cells; each
tile is a `tile_size` crop at a random offset inside its cell (the random gap and jitter that
stop the network from matching edges). The tiles are shuffled by one of `num_permutations`
fixed permutations, encoded one by one by the shared encoder (the tile encoder), and their
features, concatenated in shuffled order, go through an MLP that classifies the permutation.

The permutation set is chosen greedily for a large Hamming distance, from a seeded start: each
new permutation maximises its distance to the closest one already chosen (max-min). The paper's
Algorithm 1 maximises the summed distance instead, which leaves near-duplicate pairs (its
table 3 reports a minimum distance of 2); max-min keeps every pair far apart. The set lives in
the task state, so checkpoints carry it and a resumed run uses the same set.
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax import tasks
from ssl_jax.losses.classification import pretext_cross_entropy
from ssl_jax.models.heads import MLPHead


@functools.lru_cache(maxsize=8)
def hamming_permutations(num_permutations, seed=0, grid=3):
  """(num_permutations, grid**2) int32 permutations of the tiles, far apart in Hamming distance."""
  candidates = np.asarray(list(itertools.permutations(range(grid * grid))), np.int8)
  if not 1 <= num_permutations <= len(candidates):
    raise ValueError(f"num_permutations={num_permutations} must be in [1, {len(candidates)}]")
  rng = np.random.default_rng(seed)
  chosen = [int(rng.integers(len(candidates)))]
  nearest = np.full(len(candidates), grid * grid, np.int32)  # distance to the closest chosen one
  for _ in range(num_permutations - 1):
    nearest = np.minimum(nearest, np.sum(candidates != candidates[chosen[-1]], axis=1))
    chosen.append(int(np.argmax(nearest)))  # a chosen permutation has distance 0: never again
  return candidates[chosen].astype(np.int32)


class JigsawModel(nn.Module):
  encoder: nn.Module
  num_permutations: int
  head_dims: tuple = (512,)

  @nn.compact
  def __call__(self, tiles, train=False):
    """tiles (B, 9, t, t, C) in shuffled order -> (permutation logits, {"features": per tile})."""
    batch, count = tiles.shape[:2]
    features = self.encoder(tiles.reshape((batch * count,) + tiles.shape[2:]), train=train)
    joint = features.reshape(batch, count * features.shape[-1])
    logits = MLPHead((*self.head_dims, self.num_permutations), name="projection")(
        joint, train=train
    )
    return logits, {"features": features}


class Task(tasks.Task):

  def __init__(
      self, *, num_permutations=100, tile_size=None, head_dims=(512,), permutation_seed=0, **context
  ):
    super().__init__(**context)
    self.permutations = hamming_permutations(int(num_permutations), int(permutation_seed))
    self.cell = (self.image_size or 0) // 3
    self.tile_size = tile_size or max(1, self.cell - max(1, self.cell // 8))
    if self.image_size and not 1 <= self.tile_size <= self.cell:
      raise ValueError(
          f"task_kwargs.tile_size={tile_size} must fit a cell of {self.cell} px "
          f"(image_size {self.image_size} / 3)"
      )
    self.head_dims = tuple(head_dims)

  def model(self, encoder):
    return JigsawModel(encoder, len(self.permutations), self.head_dims)

  def init_state(self, variables, rng):
    return {"permutations": jnp.asarray(self.permutations)}

  def example_input(self, input_shape):
    return jnp.zeros((2, 9, self.tile_size, self.tile_size, input_shape[-1]), jnp.float32)

  def tiles(self, rng, views):
    """(B, S, S, C) -> (B, 9, t, t, C): each cell's tile at a random offset within the cell."""
    batch, channels = views.shape[0], views.shape[-1]
    jitter = self.cell - self.tile_size + 1
    offsets = jax.random.randint(rng, (batch, 9, 2), 0, jitter)

    def cut(image, offsets):
      def one(cell, offset):
        top, left = (cell // 3) * self.cell + offset[0], (cell % 3) * self.cell + offset[1]
        return jax.lax.dynamic_slice(
            image, (top, left, 0), (self.tile_size, self.tile_size, channels)
        )

      return jax.vmap(one)(jnp.arange(9), offsets)

    return jax.vmap(cut)(views, offsets)

  def loss(self, model, variables, task_state, batch, rng, step):
    views = self.views(rng, batch["inputs"], num_views=1)[0]
    tiles = self.tiles(jax.random.fold_in(rng, 1), views)
    labels = jax.random.randint(
        jax.random.fold_in(rng, 2), (views.shape[0],), 0, len(self.permutations)
    )
    order = task_state["permutations"][labels]  # (B, 9): position i shows tile order[i]
    shuffled = jnp.take_along_axis(tiles, order[:, :, None, None, None], axis=1)
    (logits, aux), new_state = model.apply(variables, shuffled, train=True, mutable=["batch_stats"])
    loss, metrics = pretext_cross_entropy(logits, labels)
    return loss, (metrics, new_state, {"features": aux["features"]})
