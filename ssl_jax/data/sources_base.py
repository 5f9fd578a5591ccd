"""What every source shares: the record contract, in-memory arrays, decode-on-access, subsets.

A source has `len(source)`, `source[i] -> {"inputs": uint8 (H, W, C), "label": int}`
(-1: unlabelled), `source.read(i)` (the same image before resizing, for host-side crops) and
`source.arrays() -> (images uint8 (N, H, W, C), labels int32 (N,))`.
"""

import concurrent.futures
import os

import numpy as np

from ssl_jax.data import decode

UNLABELED = -1


def check_image_array(images, name):
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
        f"{name}: images must be uint8 (N, H, W, C) with C in (1, 3), got shape " f"{images.shape}"
    )
  if images.dtype != np.uint8:
    raise ValueError(f"{name}: images must be uint8 in [0, 255], got dtype {images.dtype}")


def check_labels(labels, num_classes, name):
  labels = np.asarray(labels)
  bad = np.flatnonzero((labels != UNLABELED) & ((labels < 0) | (labels >= num_classes)))
  if bad.size:
    raise ValueError(
        f"{name}: label {labels[bad[0]]} at index {bad[0]} is outside [0, {num_classes}) "
        f"(config.data.num_classes={num_classes}; -1 marks unlabelled)"
    )
  return labels[labels != UNLABELED]


def holdout_split(labels, per_class, seed):
  """Deterministic test indices (`per_class` of each class) and the remaining train indices."""
  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) <= per_class:
      raise ValueError(
          f"class {c} has {len(members)} examples; cannot hold out {per_class} "
          "(config.data.holdout_per_class)"
      )
    test.append(rng.choice(members, per_class, replace=False))
  test = np.sort(np.concatenate(test))
  train = np.setdiff1d(np.arange(len(labels)), test)
  return train, test


def convert_channels(images, channels):
  """uint8 (N, H, W, C) -> `channels` (1: ITU-R 601 luma, as PIL; 3: gray repeated)."""
  if channels is None or images.shape[-1] == channels:
    return images
  if channels == 3:
    return np.repeat(images, 3, axis=-1)
  luma = images.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]


class ArraySource:
  """Decoded images in memory (N, H, W, C) uint8 with labels (N,) int32 (-1: unlabelled)."""

  def __init__(self, images, labels, name="arrays"):
    self.images, self.labels, self.name = images, np.asarray(labels, np.int32), name
    check_image_array(self.images, self.name)
    if len(self.labels) != len(self.images):
      raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    return {"inputs": self.images[index], "label": self.labels[index]}

  read = __getitem__

  def record(self, index):
    """(PNG bytes, label, where), as decoded sources give, for `prepare`."""
    return decode.encode_png(self.images[index]), int(self.labels[index]), f"{self.name}[{index}]"

  def file_names(self):
    return [str(i) for i in range(len(self))]

  def arrays(self):
    return self.images, self.labels


class DecodedSource:
  """Encoded images decoded on access (in grain workers when they are on).

  Subclasses define `record(i) -> (encoded bytes, label, where)` (`where` names it in errors),
  `__len__` and `labels` (int32 (N,)).
  """

  _DECODE_THREADS = os.cpu_count() or 1  # PIL releases the GIL while decoding

  def __init__(self, *, channels=3, image_size=None, name=""):
    self.channels, self.image_size, self.name = channels, image_size, name
    self._arrays = None

  def __getitem__(self, index):
    data, label, where = self.record(index)
    return {
        "inputs": decode.decode_image(data, where, self.channels, self.image_size),
        "label": label,
    }

  def read(self, index):
    """The full-resolution PIL image (channels converted) and label, for host-side crops."""
    data, label, where = self.record(index)
    return {"inputs": decode.open_image(data, where, self.channels), "label": label}

  def arrays(self):
    """All images decoded (once, cached), with threads."""
    if self._arrays is None:
      with concurrent.futures.ThreadPoolExecutor(self._DECODE_THREADS) as pool:
        images = list(pool.map(lambda i: self[i]["inputs"], range(len(self))))
      shapes = {im.shape for im in images}
      if len(shapes) > 1:
        raise ValueError(
            f"{self.name}: images have different shapes {sorted(shapes)[:3]}; set "
            "config.data.image_size to resize them"
        )
      self._arrays = (np.stack(images), np.asarray(self.labels, np.int32))
    return self._arrays

  def __getstate__(self):  # grain pickles sources into its workers: leave the decoded cache behind
    return {**self.__dict__, "_arrays": None}


class Subset:
  """The examples `indices` of `source` (a label subset, a holdout); same interface."""

  def __init__(self, source, indices, name=None):
    self.source, self.indices = source, np.asarray(indices, np.int64)
    self.name = name or getattr(source, "name", "subset")

  @property
  def labels(self):
    return np.asarray(self.source.labels)[self.indices]

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, index):
    return self.source[int(self.indices[index])]

  def read(self, index):
    return self.source.read(int(self.indices[index]))

  def record(self, index):
    return self.source.record(int(self.indices[index]))

  def arrays(self):
    if isinstance(self.source, ArraySource):
      return self.source.images[self.indices], self.source.labels[self.indices]
    with concurrent.futures.ThreadPoolExecutor(DecodedSource._DECODE_THREADS) as pool:
      images = list(pool.map(lambda i: self[i]["inputs"], range(len(self))))
    return np.stack(images), self.labels

  def file_names(self):
    names = self.source.file_names()
    return [names[i] for i in self.indices]

  def __getattr__(self, attr):  # classes, skipped, file names... come from the wrapped source
    if attr in ("source", "indices"):
      raise AttributeError(attr)
    return getattr(self.source, attr)
