"""Label subsets: deterministic "N per class" / "P percent" draws, written as files and loaded by
path.

A subset file has one entry a line: an example index into the split, or a file name (a path
relative to an image folder, or its base name, or a TFDS `file_name` such as SimCLR's published
1%/10% ImageNet lists, e.g. `n01440764_10026.JPEG`). Blank lines and `#` comments are ignored.
"""

import math
import os

import numpy as np

UNLABELED = -1


def per_class(labels, n, seed, *, at_most=False):
  """`n` examples of every class (sorted indices); a class with fewer than `n` is an error, or
  with `at_most` gives all of its examples."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels[labels != UNLABELED]):
    members = np.flatnonzero(labels == c)
    if len(members) >= n:
      chosen.append(rng.choice(members, n, replace=False))
    elif at_most:
      chosen.append(members)
    else:
      raise ValueError(f"class {c} has {len(members)} labelled examples; cannot draw {n} per class")
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def percent(labels, p, seed):
  """About `p`% of each class (at least one each), stratified so rare classes stay represented."""
  if not 0 < p <= 100:
    raise ValueError(f"percent={p}: expected a value in (0, 100]")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels[labels != UNLABELED]):
    members = np.flatnonzero(labels == c)
    chosen.append(
        rng.choice(members, max(1, math.floor(len(members) * p / 100 + 0.5)), replace=False)
    )
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def write(path, indices, *, names=None, comment=""):
  """One index (or, given `names`, one file name) a line; returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    if comment:
      f.write(f"# {comment}\n")
    for i in indices:
      f.write(f"{names[i] if names is not None else int(i)}\n")
  return path


def load(path, source):
  """Indices into `source` listed by the subset file `path` (indices or file names)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"subset file {path!r} does not exist (one index or file name a line)")
  with open(path) as f:
    entries = [
        (n, line.strip())
        for n, line in enumerate(f, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
  if not entries:
    raise ValueError(f"subset file {path!r} lists no examples")
  lookup = None
  indices = []
  for line_no, entry in entries:
    if entry.isdigit():
      index = int(entry)
      if index >= len(source):
        raise ValueError(
            f"{path}:{line_no}: index {index} is outside [0, {len(source)}) of {source.name}"
        )
    else:
      lookup = _name_lookup(source) if lookup is None else lookup
      if entry not in lookup:
        raise ValueError(
            f"{path}:{line_no}: file name {entry!r} is not in {source.name} "
            f"(e.g. {next(iter(lookup))!r})"
        )
      index = lookup[entry]
    indices.append(index)
  if len(set(indices)) != len(indices):
    raise ValueError(f"subset file {path!r} lists some examples twice")
  return np.asarray(indices, np.int64)


def _name_lookup(source):
  """Relative path -> index, plus base name -> index where the base name is unique."""
  names = source.file_names()
  lookup = {name: i for i, name in enumerate(names)}
  bases = {}
  for i, name in enumerate(names):
    bases.setdefault(os.path.basename(name), []).append(i)
  lookup.update({b: ids[0] for b, ids in bases.items() if len(ids) == 1 and b not in lookup})
  return lookup
