"""grain pipelines: seeded, resumable training batches and padded evaluation batches.

The global example stream is the dataset's indices, reshuffled every epoch (epochs run on without
a gap, so every example appears exactly once per epoch); global batch b is stream positions
[b*G, (b+1)*G). Each process reads and decodes only its contiguous slice of every global batch,
and `sharding.from_process_local` (`make_array_from_process_local_data`) assembles the global
`jax.Array`, so one process and N processes see the same global batches. Reading runs in grain
threads, or in `num_workers` worker processes; the iterator's state (the next batch number, JSON)
goes into checkpoints, and a resumed iterator yields exactly what the uninterrupted one would have,
with any number of workers.

`DevicePrefetch` keeps the next batches already on the devices (global `jax.Array`s) while the
current step runs, and reports the position of the batches it has handed out, not of those it
has read ahead.

Batches are dicts of numpy arrays: `label` int32 (B,), `index` int64 (B,) (into the source) and
either `image` uint8 (B, H, W, C) or, with `crops`, one entry per view:
`view0`, `view1`, ... uint8 (B, size_k, size_k, C), large crops first (see `train_dataset`).
"""

import collections

import grain
import jax
import numpy as np
from PIL import Image

from ssl_jax.data import decode

SIMCLR_CROPS = ((2, None, 0.08, 1.0),)  # two views at the source's size (None)
SWAV_CROPS = ((2, 224, 0.14, 1.0), (6, 96, 0.05, 0.14))  # Caron et al. 2020, multi-crop


def _pil(image):
  if isinstance(image, Image.Image):
    return image
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


class _ReadExample(grain.transforms.Map):
  """Local position j -> global stream position -> source index -> decoded example (or views)."""

  def __init__(self, source, order, *, global_batch_size, local_batch_size, offset, seed, crops):
    self.source, self.order, self.seed, self.crops = source, order, seed, crops
    self.global_batch_size, self.local_batch_size, self.offset = (
        global_batch_size,
        local_batch_size,
        offset,
    )

  def map(self, j):
    position = (
        (j // self.local_batch_size) * self.global_batch_size
        + self.offset
        + j % self.local_batch_size
    )
    index = int(self.order[position])
    if not self.crops:
      example = self.source[index]
      out = {"inputs": example["inputs"]}
    else:
      example = self.source.read(index)
      image = _pil(example["inputs"])
      rng = np.random.default_rng(
          [self.seed, position]
      )  # a crop depends on the stream position only
      default = getattr(self.source, "image_size", None) or min(image.size)
      views = [
          decode.random_resized_crop(image, rng, size or default, (low, high))
          for count, size, low, high in self.crops
          for _ in range(count)
      ]
      out = {f"view{v}": decode.to_array(view) for v, view in enumerate(views)}
    out["label"] = np.int32(example["label"])
    out["index"] = np.int64(index)
    return out


def _stack(examples):
  """Stacks a batch; differently sized images get an error naming two of them."""
  shapes = {}
  for ex in examples:
    shapes.setdefault(ex.get("inputs", ex.get("view0")).shape, ex["index"])
  if len(shapes) > 1:
    (s1, i1), (s2, i2) = list(shapes.items())[:2]
    raise ValueError(
        f"examples {i1} and {i2} have image shapes {s1} and {s2}; set "
        "config.data.image_size so every image is resized to one size"
    )
  return {k: np.stack([ex[k] for ex in examples]) for k in examples[0]}


def train_dataset(
    source,
    *,
    global_batch_size,
    seed,
    num_epochs=None,
    process_index=None,
    process_count=None,
    crops=(),
):
  """A grain MapDataset of this process's part of each global batch, reshuffled every epoch.

  crops: () yields `image` as stored (augmentation happens on the device); otherwise
  ((count, size, min_scale, max_scale), ...) yields count random-resized crops of each size
  (None: the source image's size) as `view0..`, e.g. SIMCLR_CROPS or SWAV_CROPS.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(
        f"global_batch_size={global_batch_size} must divide over {process_count} processes"
    )
  if len(source) < global_batch_size:
    raise ValueError(
        f"dataset has {len(source)} examples, fewer than global_batch_size={global_batch_size}"
    )
  for crop in crops:
    if len(crop) != 4 or crop[0] < 1 or not 0 < crop[2] <= crop[3] <= 1:
      raise ValueError(
          f"crop spec {crop!r}: expected (count >= 1, size or None, min_scale, max_scale) "
          "with 0 < min_scale <= max_scale <= 1"
      )
  local = global_batch_size // process_count
  order = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(num_epochs)
  num_batches = len(order) // global_batch_size
  read = _ReadExample(
      source,
      order,
      global_batch_size=global_batch_size,
      local_batch_size=local,
      offset=process_index * local,
      seed=seed,
      crops=tuple(crops),
  )
  examples = grain.MapDataset.range(num_batches * local).map(read)
  return examples.batch(local, drop_remainder=True, batch_fn=_stack)


def train_iterator(
    source, *, global_batch_size, seed, num_workers=0, read_threads=2, prefetch=2, **kwargs
):
  """A `BatchIterator` of local batches; kwargs go to `train_dataset`.

  num_workers > 0 decodes in that many grain worker processes (each with `read_threads`
  threads); `prefetch` batches are read ahead (per worker).
  """
  dataset = train_dataset(source, global_batch_size=global_batch_size, seed=seed, **kwargs)
  return BatchIterator(
      dataset, num_workers=num_workers, read_threads=read_threads, prefetch=prefetch
  )


class BatchIterator:
  """Batches from a position on; the state {"next_batch": int} (JSON) works with any worker count.

  `close()` (or `with`) stops reading ahead: grain worker processes hand batches over in shared
  memory, and the batches still queued are released only when the iterator is closed.
  """

  def __init__(self, dataset, *, num_workers=0, read_threads=2, prefetch=2):
    self._dataset, self._next_batch, self._iterator = dataset, 0, None
    self._num_workers, self._read_threads, self._prefetch = num_workers, read_threads, prefetch

  def _start(self):
    dataset = self._dataset[self._next_batch :].to_iter_dataset(
        grain.ReadOptions(
            num_threads=self._read_threads,
            prefetch_buffer_size=max(self._prefetch, self._read_threads),
        )
    )
    if self._num_workers > 0:
      _absl_flags_parsed()
      dataset = dataset.mp_prefetch(
          grain.MultiprocessingOptions(
              num_workers=self._num_workers, per_worker_buffer_size=self._prefetch
          )
      )
    return iter(dataset)

  def __iter__(self):
    return self

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self):
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None

  def __next__(self):
    if self._iterator is None:  # started lazily, so set_state right after construction is free
      self._iterator = self._start()
    batch = next(self._iterator)
    self._next_batch += 1
    return batch

  def get_state(self):
    return {"next_batch": self._next_batch}

  def set_state(self, state):
    position = state.get("next_batch", state.get("next_index"))  # next_index: grain's own state
    if not isinstance(position, int) or position < 0:
      raise ValueError(f"data iterator state {state!r}: expected {{'next_batch': int >= 0}}")
    self.close()
    self._next_batch = position


def _absl_flags_parsed():
  """grain's worker processes read absl flags; a library caller may not have parsed any."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class DevicePrefetch:
  """Keeps `size` batches on the devices: the step's and `size - 1` read ahead (2: double buffer).

  `put(local batch) -> device batch` (e.g. `sharding.from_process_local` onto the batch sharding)
  runs when a batch is read ahead, so its host-to-device copy overlaps the step in flight, as in
  flax's `jax_utils.prefetch_to_device` but for any sharding. `get_state()` is the iterator's state
  after the last batch handed out, so a checkpoint resumes at the next batch the step would
  have seen, not after the batches still queued here.
  """

  def __init__(self, iterator, put, *, size=2):
    if size < 1:
      raise ValueError(f"prefetch size={size}: expected >= 1 batches on the devices")
    self._iterator, self._put, self._size = iterator, put, size
    self._queue = collections.deque()  # (device batch, iterator state after reading it)
    self._state = iterator.get_state()

  def __iter__(self):
    return self

  def __next__(self):
    while len(self._queue) < self._size:
      try:
        local = next(self._iterator)
      except StopIteration:
        break
      self._queue.append((self._put(local), self._iterator.get_state()))
    if not self._queue:
      raise StopIteration
    batch, self._state = self._queue.popleft()
    return batch

  def get_state(self):
    return self._state

  def close(self):
    self._queue.clear()
    self._iterator.close()


def padded(arrays, batch_size):
  """Yields (arrays' next rows padded to `batch_size`, mask of the real rows), covering every row
  once: fixed-size batches, so one compiled function serves every length. Each array needs only
  `len` and slicing (a lazily decoded split is decoded batch by batch)."""
  n = len(arrays[0])
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    rows = [np.asarray(a[start:stop]) for a in arrays]
    yield (
        [np.pad(r, [(0, pad)] + [(0, 0)] * (r.ndim - 1)) for r in rows],
        np.arange(batch_size) < (stop - start),
    )


def padded_batches(images, labels, batch_size):
  """`padded` as batches {'inputs', 'label', 'mask'}."""
  for (x, y), mask in padded((images, np.asarray(labels)), batch_size):
    yield {"inputs": x, "label": y, "mask": mask}
