"""Time-series classification data (UCR/UEA): checked arrays, normalisation, and a source per split.

A source has the loop's contract (`len`, `source[i] -> {"inputs": float32 (T, F), "label": int}`,
`labels`, `arrays()`); the series travel under the loop's input key "inputs", as images and tokens
do, so the pipeline and the jitted step need no second code path. Selected by `config.data.source`:
  npz:PATH   arrays x_train (N, T[, F]), y_train, x_test, y_test (one file per UCR
             set); labels are any integers (or strings), remapped to 0..K-1
  ucr:NAME   a UCR/UEA set through aeon's loader: ArrowHead, GunPoint, ItalyPowerDemand, OSULeaf,
             ACSF1, BasicMotions and JapaneseVowels ship inside the aeon wheel (offline); other
             names are downloaded by aeon where there is internet
Variable-length series are NaN-padded at the end to one length (the model masks NaN timesteps).
Normalisation follows the TS2Vec protocol: sets already z-normalised series by series (most of the
UCR archive) are kept as they are; any other set gets one dataset-wide z-normalisation per feature
with the training split's mean and std.
"""

import dataclasses
import functools
import os
import warnings

import numpy as np

SPLITS = ("train", "test")
SERIES_KEYS = ("x_train", "y_train", "x_test", "y_test")
BUNDLED = (
    "ArrowHead",
    "GunPoint",
    "ItalyPowerDemand",
    "OSULeaf",
    "ACSF1",
    "BasicMotions",
    "JapaneseVowels",
)


@dataclasses.dataclass
class SeriesData:
  """Both splits, checked: x float32 (N, T, F) (NaN: missing), y int32 in [0, K)."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  classes: np.ndarray  # the original label of each class index
  normalised: bool  # whether the dataset-wide z-normalisation was applied here

  @property
  def shape(self):
    return self.x_train.shape


def _as_series_array(x, key, name):
  """(N, T) or (N, T, F) float32; a ragged collection gets an error naming the first odd series."""
  if isinstance(x, np.ndarray) and x.dtype != object:
    array = x
  else:
    items = list(x)
    shapes = [np.shape(item) for item in items]
    for i, shape in enumerate(shapes):
      if shape != shapes[0]:
        raise ValueError(
            f"{name}: '{key}' is ragged: series {key}[{i}] has shape {shape} but "
            f"{key}[0] has {shapes[0]}; pad variable-length series with NaN at the end "
            "to one length"
        )
    array = np.stack([np.asarray(item) for item in items]) if items else np.zeros((0, 0))
  try:
    array = np.asarray(array, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name}: '{key}' must hold numbers, got dtype {array.dtype}: {e}") from None
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
    raise ValueError(
        f"{name}: '{key}' must be (N, T) or (N, T, F) with N, T >= 1, got shape " f"{array.shape}"
    )
  if np.isinf(array).any():
    where = np.argwhere(np.isinf(array))[0]
    raise ValueError(
        f"{name}: '{key}' has an infinite value at series {where[0]}, timestep "
        f"{where[1]}; mark missing values with NaN"
    )
  empty = np.flatnonzero(np.isnan(array).all(axis=(1, 2)))
  if empty.size:
    raise ValueError(
        f"{name}: series {key}[{empty[0]}] is entirely NaN ({empty.size} such series "
        f"in '{key}'); drop them before training"
    )
  return array


def from_arrays(x_train, y_train, x_test, y_test, *, name="arrays", normalise="auto"):
  """Checks and normalises the two splits; `normalise`: 'auto' (see the module doc), True, False."""
  x_train = _as_series_array(x_train, "x_train", name)
  x_test = _as_series_array(x_test, "x_test", name)
  if x_train.shape[1] != x_test.shape[1]:
    raise ValueError(
        f"{name}: 'x_train' series have length {x_train.shape[1]} but 'x_test' series "
        f"have {x_test.shape[1]}; both splits must share one length (NaN-pad the "
        "shorter)"
    )
  if x_train.shape[2] != x_test.shape[2]:
    raise ValueError(
        f"{name}: 'x_train' has {x_train.shape[2]} features per timestep but 'x_test' "
        f"has {x_test.shape[2]}; both splits must have the same features"
    )
  y_train, y_test = np.asarray(y_train).reshape(-1), np.asarray(y_test).reshape(-1)
  for key, x, y in (("y_train", x_train, y_train), ("y_test", x_test, y_test)):
    if len(y) != len(x):
      raise ValueError(f"{name}: '{key}' has {len(y)} labels for {len(x)} series")
  classes = np.unique(y_train)
  if len(classes) < 2:
    raise ValueError(
        f"{name}: 'y_train' has {len(classes)} class ({classes.tolist()}); "
        "classification needs at least 2"
    )
  unseen = np.flatnonzero(~np.isin(y_test, classes))
  if unseen.size:
    raise ValueError(
        f"{name}: y_test[{unseen[0]}] = {y_test[unseen[0]].item()!r} is not a class of "
        f"'y_train' (classes: {classes.tolist()[:10]})"
    )
  if normalise not in ("auto", True, False):
    raise ValueError(f"normalise={normalise!r}; accepted: 'auto', True, False")
  apply = not is_z_normalised(x_train, x_test) if normalise == "auto" else normalise
  if apply:
    mean = np.nanmean(x_train, axis=(0, 1))
    std = np.nanstd(x_train, axis=(0, 1))
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  return SeriesData(
      name,
      x_train.astype(np.float32),
      np.searchsorted(classes, y_train).astype(np.int32),
      x_test.astype(np.float32),
      np.searchsorted(classes, y_test).astype(np.int32),
      classes,
      bool(apply),
  )


def is_z_normalised(*arrays, tol=1e-2):
  """Every series (and feature) has mean 0 and std 1 (either estimator), or is constant 0."""
  for x in arrays:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features of short series
      mean = np.nanmean(x, axis=1)
      std0, std1 = np.nanstd(x, axis=1), np.nanstd(x, axis=1, ddof=1)
    ok = (np.abs(mean) <= tol) & (
        (np.abs(std0 - 1) <= tol) | (np.abs(std1 - 1) <= tol) | (std0 <= 1e-6)
    )
    if not np.all(ok | np.isnan(mean)):
      return False
  return True


def centre_variable_length(x):
  """Moves each series' observed span to the middle of the buffer (the reference does this to the
  training series when some start or end with missing timesteps), so crops see data on both sides.
  """
  missing = np.isnan(x).all(axis=-1)  # (N, T)
  if not (missing[:, 0].any() or missing[:, -1].any()):
    return x
  t = x.shape[1]
  lead = np.argmax(~missing, axis=1)
  trail = np.argmax(~missing[:, ::-1], axis=1)
  shift = (lead + trail) // 2 - lead
  return np.stack([np.roll(series, s, axis=0) for series, s in zip(x, shift)]).reshape(
      x.shape[0], t, -1
  )


class SeriesSource:
  """One split of a SeriesData: `source[i] -> {"inputs": float32 (T, F), "label": int32}`.

  The train split serves centred variable-length series to pre-training (see
  `centre_variable_length`); `arrays()` gives the series as stored, for evaluation.
  """

  modality = "timeseries"

  def __init__(self, data, split):
    if split not in SPLITS:
      raise ValueError(
          f"{data.name}: split {split!r}; time-series sets have {list(SPLITS)} "
          "(config.data.train_split / eval_split)"
      )
    self.data, self.split, self.name = data, split, f"{data.name}:{split}"
    self.series = getattr(data, f"x_{split}")
    self.labels = getattr(data, f"y_{split}")
    self.training_series = centre_variable_length(self.series) if split == "train" else self.series
    self.classes = [str(c) for c in data.classes]
    self.num_classes = len(self.classes)

  def __len__(self):
    return len(self.series)

  def __getitem__(self, index):
    return {"inputs": self.training_series[index], "label": self.labels[index]}

  read = __getitem__

  def arrays(self):
    return self.series, self.labels

  def file_names(self):
    return [str(i) for i in range(len(self))]


@functools.lru_cache(maxsize=8)
def _load_npz(path, mtime):
  del mtime  # part of the cache key: a rewritten file is read again
  with np.load(path) as f:
    missing = [k for k in SERIES_KEYS if k not in f.files]
    if missing:
      raise KeyError(
          f"{path}: a time-series file needs {list(SERIES_KEYS)}; missing {missing} "
          f"(has {sorted(f.files)})"
      )
    arrays = {}
    for key in SERIES_KEYS:
      try:
        arrays[key] = f[key]
      except ValueError as e:  # object arrays: np.load refuses them without pickle
        raise ValueError(
            f"{path}: array '{key}' cannot be read as numbers ({e}); ragged series "
            "must be NaN-padded at the end to one length"
        ) from None
  return from_arrays(**arrays, name=path)


def load_npz(path):
  if not os.path.isfile(path):
    raise FileNotFoundError(f"data file {path!r} does not exist (config.data.source='npz:PATH')")
  return _load_npz(os.path.abspath(path), os.path.getmtime(path))


def is_series_file(keys):
  return "x_train" in keys


@functools.lru_cache(maxsize=8)
def load_ucr(name):
  """A UCR/UEA set by name through aeon (bundled sets offline, others downloaded by aeon)."""
  try:
    from aeon.datasets import load_classification  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"config.data.source='ucr:{name}' needs the 'aeon' package "
        "(pip install -r requirements.txt)"
    ) from e
  splits = {}
  for split in SPLITS:
    try:
      x, y = load_classification(name, split=split)
    except Exception as e:  # aeon raises several kinds for unknown names / no network
      raise ValueError(
          f"ucr:{name}: aeon could not load split {split!r} ({type(e).__name__}: {e}); "
          f"sets bundled with aeon (offline): {list(BUNDLED)}"
      ) from None
    splits[split] = (x, y)
  # aeon gives (N, F, T) arrays, or lists of (F, T_i) for unequal lengths: NaN-pad to one length
  length = max(max(np.shape(s)[-1] for s in x) for x, _ in splits.values())

  def pad(x):
    out = np.full((len(x), length, np.shape(x[0])[0]), np.nan, np.float32)
    for i, series in enumerate(x):
      series = np.asarray(series, np.float32).T
      out[i, : len(series)] = series
    return out

  (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
  return from_arrays(pad(x_train), y_train, pad(x_test), y_test, name=f"ucr:{name}")


def npz(path, split):
  return SeriesSource(load_npz(path), split)


def ucr(name, split):
  return SeriesSource(load_ucr(name), split)


def load(spec):
  """The SeriesData named by a source spec ('npz:PATH' or 'ucr:NAME')."""
  kind, _, arg = spec.partition(":")
  if kind == "npz":
    return load_npz(arg)
  if kind == "ucr":
    return load_ucr(arg)
  raise ValueError(f"time-series source {spec!r}; accepted: 'npz:PATH', 'ucr:NAME'")
