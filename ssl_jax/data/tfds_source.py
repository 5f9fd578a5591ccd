"""TFDS datasets prepared as ArrayRecord, read by random access with `tfds.data_source` (no
TensorFlow).

The image feature is read as encoded bytes (`SkipDecoding`) and decoded here, so grayscale, CMYK
or RGBA files become the configured channels and size in whichever process reads them.
"""

import glob
import os

import numpy as np

from ssl_jax.data import sources_base


def default_data_dir():
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _check_prepared(name, data_dir):
  """Our own error for a missing dataset: tfds's lists every dataset it knows, or names TFRECORD."""
  base = name.split(":")[0]
  directory = os.path.join(data_dir, base)
  versions = []
  if os.path.isdir(
      directory
  ):  # name/VERSION, or name/CONFIG/VERSION (tfds picks the default config)
    versions = [
        v
        for v in os.listdir(directory)
        if os.path.isfile(os.path.join(directory, v, "dataset_info.json"))
        or glob.glob(os.path.join(glob.escape(directory), v, "*", "dataset_info.json"))
    ]
  if not versions:
    present = os.listdir(data_dir) if os.path.isdir(data_dir) else []
    present = sorted(d for d in present if not d.startswith("."))
    raise FileNotFoundError(
        f"tfds:{name}: no prepared dataset at {directory} "
        f"(config.data.data_dir={data_dir!r}; datasets there: {present or 'none'}). "
        "Prepare one with `python -m ssl_jax.data.prepare --input=... "
        f"--name={base} --data_dir={data_dir}`, or `tfds build {base} --data_dir={data_dir} "
        "--file_format=array_record` (needs TensorFlow)"
    )


class TfdsSource(sources_base.DecodedSource):
  """One split of a TFDS dataset with an `image` feature and optionally `label` and `file_name`."""

  def __init__(self, name, split, *, data_dir=None, channels=3, image_size=None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    super().__init__(channels=channels, image_size=image_size, name=f"tfds:{name}:{split}")
    data_dir = data_dir or default_data_dir()
    _check_prepared(name, data_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features:
      raise KeyError(
          f"tfds:{name} has features {sorted(features.keys())}; expected an 'image' feature"
      )
    self.num_classes = features["label"].num_classes if "label" in features else None
    self.classes = list(features["label"].names) if "label" in features else []
    self.skipped = []
    try:
      self.data = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    except ValueError as e:
      raise ValueError(
          f"tfds:{name} in {data_dir}: bad split {split!r} ({e}); splits: "
          f"{sorted(builder.info.splits.keys())} (slices like 'train[:90%]' work too)"
      ) from None
    self._labels = None

  def __len__(self):
    return len(self.data)

  def record(self, index):
    example = self.data[int(index)]
    return (
        example["image"],
        int(example.get("label", sources_base.UNLABELED)),
        f"{self.name}[{index}]",
    )

  @property
  def labels(self):
    """All labels (read once: one record read each)."""
    if self._labels is None:
      self._labels = np.asarray(
          [self.data[i].get("label", sources_base.UNLABELED) for i in range(len(self))], np.int32
      )
    return self._labels

  def file_names(self):
    first = self.data[0] if len(self) else {}
    if "file_name" not in first:
      raise KeyError(
          f"{self.name} has no 'file_name' feature; use a subset file of indices instead"
      )
    return [_text(self.data[i]["file_name"]) for i in range(len(self))]

  def __getstate__(self):
    return {**super().__getstate__(), "_labels": None}


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)
