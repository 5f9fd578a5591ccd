"""grain pipelines: seeded, resumable training batches and padded evaluation batches.

Shuffling works on indices, so every process agrees on the global batch; each process then
reads and decodes only its contiguous slice of it, and `make_array_from_process_local_data`
assembles the global `jax.Array`. The iterator's state (a position) is saved in checkpoints.
"""
import grain
import jax
import numpy as np


class _ReadSlice(grain.transforms.Map):
  """Global batch of indices -> this process's slice, read and stacked."""

  def __init__(self, source, start, stop):
    self.source, self.start, self.stop = source, start, stop

  def map(self, indices):
    records = [self.source[int(i)] for i in indices[self.start:self.stop]]
    return {"image": np.stack([r["image"] for r in records]),
            "label": np.asarray([r["label"] for r in records], np.int32),
            "index": np.asarray(indices[self.start:self.stop], np.int64)}


def train_dataset(source, *, global_batch_size, seed, num_epochs=None,
                  process_index=None, process_count=None):
  """A grain MapDataset of this process's part of each global batch, reshuffled every epoch."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size={global_batch_size} must divide over {process_count} processes")
  if len(source) < global_batch_size:
    raise ValueError(f"dataset has {len(source)} examples, fewer than global_batch_size={global_batch_size}")
  local = global_batch_size // process_count
  indices = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(num_epochs)
  batches = indices.batch(global_batch_size, drop_remainder=True)
  return batches.map(_ReadSlice(source, process_index * local, (process_index + 1) * local))


def train_iterator(source, *, global_batch_size, seed, num_workers=0, **kwargs):
  dataset = train_dataset(source, global_batch_size=global_batch_size, seed=seed, **kwargs)
  dataset = dataset.to_iter_dataset()
  if num_workers > 0:
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(dataset)


def to_global(local_batch, sharding):
  """Host-local numpy batch -> global jax.Arrays sharded along the batch axis."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def padded_batches(images, labels, batch_size):
  """Yields fixed-size batches covering every example once; `mask` marks the real rows."""
  n = len(images)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    widths = [(0, pad)] + [(0, 0)] * (images.ndim - 1)
    yield {"image": np.pad(images[start:stop], widths),
           "label": np.pad(labels[start:stop], (0, pad)),
           "mask": np.arange(batch_size) < (stop - start)}
