"""Image-folder sources: PATH/CLASS/**/IMAGE is labelled, PATH/IMAGE (no subfolders) unlabelled.

If PATH has a `train/` subfolder, its subfolders are splits (`train/`, `test/`, ...), each laid out
as above, and class indices come from `train/` so they agree across splits. Otherwise the
'train'/'test' splits hold out `holdout_per_class` images per class, as for MNIST. JPEG and PNG
are accepted; hidden entries (names starting with '.') are ignored, any other file is an error.
"""

import concurrent.futures
import os

import numpy as np

from ssl_jax.data import decode
from ssl_jax.data import sources_base

_SCAN_THREADS = 16  # header checks are I/O bound


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _files_under(directory):
  found = []
  for parent, dirs, files in os.walk(directory):
    dirs[:] = _visible(dirs)
    found += [os.path.join(parent, f) for f in _visible(files)]
  return sorted(found)


def _check(path):
  if not path.lower().endswith(decode.IMAGE_EXTENSIONS):
    return f"not an image file (accepted extensions: {', '.join(decode.IMAGE_EXTENSIONS)})"
  return decode.check_file(path)


def scan(root, *, class_names=None, skip_corrupt=False):
  """Lists images under `root`: (paths, labels int32 (-1: unlabelled), class names, skipped)."""
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f"image folder {root!r} does not exist (config.data.source='folder:PATH')"
    )
  entries = _visible(os.listdir(root))
  dirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
  files = [e for e in entries if e not in dirs]
  if not entries:
    raise ValueError(
        f"image folder {root!r} is empty; expected class subfolders of JPEG/PNG images "
        "(labelled) or the images themselves (unlabelled)"
    )
  if dirs and files:
    raise ValueError(
        f"image folder {root!r} mixes class folders ({', '.join(dirs[:3])}) with loose "
        f"files ({', '.join(files[:3])}); put every image in a class folder, or use a "
        "flat folder for unlabelled data"
    )
  if dirs:
    classes = list(class_names) if class_names is not None else dirs
    unknown = [d for d in dirs if d not in classes]
    if unknown:
      raise ValueError(
          f"{os.path.join(root, unknown[0])}: class folder not in the train split's "
          f"classes {classes}"
      )
    groups = [(classes.index(d), _files_under(os.path.join(root, d))) for d in dirs]
  else:
    classes = []
    groups = [(sources_base.UNLABELED, [os.path.join(root, f) for f in files])]
  paths, labels, skipped = [], [], []
  with concurrent.futures.ThreadPoolExecutor(_SCAN_THREADS) as pool:
    for label, candidates in groups:
      good = 0
      for path, reason in zip(candidates, pool.map(_check, candidates)):
        if reason is None:
          paths.append(path)
          labels.append(label)
          good += 1
        elif skip_corrupt:
          skipped.append(f"{path}: {reason}")
        else:
          raise ValueError(
              f"{path}: {reason}. Fix or remove it, or set config.data.skip_corrupt=True "
              "to skip bad files and list them in the workdir"
          )
      if not good and label != sources_base.UNLABELED:
        raise ValueError(
            f"class folder {os.path.join(root, classes[label])!r} has no usable JPEG/PNG "
            f"images ({len(candidates)} files, {len(candidates) - good} skipped)"
        )
  if not paths:
    raise ValueError(
        f"image folder {root!r} has no usable JPEG/PNG images ({len(skipped)} skipped)"
    )
  if skipped:
    print(f"skipped {len(skipped)} bad files under {root}, e.g. {skipped[0]}", flush=True)
  return paths, np.asarray(labels, np.int32), classes, skipped


class FolderSource(sources_base.DecodedSource):
  """Files decoded on access to `image_size` (shorter side, centred square) and `channels`."""

  def __init__(
      self, root, paths, labels, classes, *, channels=3, image_size=None, skipped=(), name=None
  ):
    super().__init__(channels=channels, image_size=image_size, name=name or root)
    self.root, self.paths, self.labels = root, list(paths), np.asarray(labels, np.int32)
    self.classes, self.skipped = list(classes), list(skipped)

  def __len__(self):
    return len(self.paths)

  def record(self, index):
    with open(self.paths[index], "rb") as f:
      return f.read(), int(self.labels[index]), self.paths[index]

  def file_names(self):
    return [os.path.relpath(p, self.root) for p in self.paths]


def build(
    path, split, *, channels=3, image_size=None, holdout_per_class=100, seed=0, skip_corrupt=False
):
  """The `split` of folder PATH (see the module docstring for layouts)."""
  if os.path.isdir(os.path.join(path, "train")):
    splits = _visible(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if split not in splits:
      raise ValueError(
          f"image folder {path!r} has split folders {splits}; no {split!r} "
          f"(config.data.train_split / eval_split)"
      )
    train_dir = os.path.join(path, "train")
    train_entries = _visible(os.listdir(train_dir))
    class_names = [e for e in train_entries if os.path.isdir(os.path.join(train_dir, e))] or None
    root = os.path.join(path, split)
    paths, labels, classes, skipped = scan(root, class_names=class_names, skip_corrupt=skip_corrupt)
    return FolderSource(
        root,
        paths,
        labels,
        classes,
        channels=channels,
        image_size=image_size,
        skipped=skipped,
        name=f"{root}",
    )
  paths, labels, classes, skipped = scan(path, skip_corrupt=skip_corrupt)
  if not classes:
    if split != "train":
      raise ValueError(
          f"image folder {path!r} is unlabelled (no class folders), so it has only a "
          f"'train' split, not {split!r}; add {os.path.join(path, 'test')}/CLASS/ "
          "folders with labelled images (and move the rest to train/) for evaluation"
      )
    keep = np.arange(len(paths))
  elif split in ("train", "test"):
    keep = sources_base.holdout_split(labels, holdout_per_class, seed)[split == "test"]
  else:
    raise ValueError(
        f"image folder {path!r} has no split folders, so its splits are 'train' and "
        f"'test' (holding out {holdout_per_class} per class), not {split!r}"
    )
  return FolderSource(
      path,
      [paths[i] for i in keep],
      labels[keep],
      classes,
      channels=channels,
      image_size=image_size,
      skipped=skipped,
      name=f"{path}:{split}",
  )
