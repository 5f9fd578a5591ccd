"""TFDS text classification datasets (`config.data.source='tfds:NAME'`) as `text.TextCorpus`.

A dataset prepared as ArrayRecord in `config.data.data_dir` (default $TFDS_DATA_DIR or
~/tensorflow_datasets) is read with `data_source` (no TensorFlow); NAME may be
`name/config:version` (glue/sst2, imdb_reviews/plain_text:1.0.0). The text feature is `text`, else
`sentence` (GLUE) or `content`; labels come from a ClassLabel `label` (-1: unlabelled). Splits:
`train`, `test` (`validation` when there is no `test` split or its labels are all -1, as in GLUE;
printed) and optionally `unlabeled` / `unsupervised` (imdb_reviews). `python -m
ssl_jax.data.prepare --input=jsonl:DIR` turns a jsonl:DIR corpus into one. Bad input stops with an
error naming the dataset, split and index of bad bytes or of an unlabelled test example; empty
texts are skipped and counted (`TextCorpus.skipped_empty`). `text.load` dispatches tfds: specs
here; data/tfds_source.py is the image-side TFDS reader.
"""

import os

import numpy as np

from ssl_jax.data.text import UNLABELED, TextCorpus

TFDS_TEXT_FEATURES = ("text", "sentence", "content")  # in order of preference
TFDS_UNLABELED_SPLITS = ("unlabeled", "unlabelled", "unsupervised")


def _decode_tfds_text(value, where):
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(
          f"{where}: byte {value[e.start]:#04x} at position {e.start} is not UTF-8; "
          "re-encode the texts as UTF-8 and prepare the dataset again"
      ) from None
  return str(value)


def read_tfds_split(data, where, text_feature, *, chunk=4096):
  """(texts, labels int32, empty texts skipped) of one TFDS data source;
  `where`: 'tfds:NAME:SPLIT'."""
  texts, labels, skipped = [], [], 0
  for start in range(0, len(data), chunk):
    indices = range(start, min(start + chunk, len(data)))
    for i, example in zip(indices, data.__getitems__(indices)):  # one batched read per chunk
      value = _decode_tfds_text(example[text_feature], f"{where}[{i}] '{text_feature}'")
      if not value.strip():
        skipped += 1
        continue
      texts.append(value)
      labels.append(int(example.get("label", UNLABELED)))
  if not texts:
    raise ValueError(
        f"{where}: all {len(data)} texts are empty" if len(data) else f"{where} is empty"
    )
  return texts, np.asarray(labels, np.int32), skipped


def _tfds_features(name, features, where, num_classes):
  """(text feature name, the ClassLabel) of a TFDS text classification dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  have = sorted(features.keys())
  text_feature = next((k for k in TFDS_TEXT_FEATURES if k in features), None)
  if text_feature is None:
    raise KeyError(
        f"{where} has features {have}; a text dataset needs a text feature named one of "
        f"{list(TFDS_TEXT_FEATURES)}"
    )
  if not isinstance(features[text_feature], tfds.features.Text):
    raise ValueError(
        f"{where}: feature {text_feature!r} is a {type(features[text_feature]).__name__}, "
        "not a tfds.features.Text"
    )
  label = features["label"] if "label" in features else None
  if not isinstance(label, tfds.features.ClassLabel):
    got = "no 'label' feature" if label is None else f"'label' is a {type(label).__name__}"
    raise ValueError(
        f"{where} has {got} (features {have}); text classification needs a ClassLabel "
        "feature named 'label'"
    )
  if num_classes and num_classes != label.num_classes:
    raise ValueError(
        f"tfds:{name} has {label.num_classes} classes but config.data.num_classes="
        f"{num_classes}; set it to {label.num_classes} (or 0)"
    )
  return text_feature, label


def tfds_dataset(name, *, data_dir=None, num_classes=0):
  """The TextCorpus of a prepared TFDS text dataset (see the module docstring)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import tfds_source  # pylint: disable=g-import-not-at-top

  if not name:
    raise ValueError(
        "config.data.source='tfds:' names no dataset; give tfds:NAME (e.g. tfds:glue/sst2)"
    )
  data_dir = os.path.expanduser(data_dir or tfds_source.default_data_dir())
  tfds_source._check_prepared(name, data_dir)  # pylint: disable=protected-access
  builder = tfds.builder(name, data_dir=data_dir)
  where = f"tfds:{name} in {data_dir}"
  text_feature, label = _tfds_features(name, builder.info.features, where, num_classes)
  splits = sorted(builder.info.splits.keys())
  skipped = {}

  def read(split):
    key = f"tfds:{name}:{split}"
    texts, labels, skipped[key] = read_tfds_split(builder.as_data_source(split), key, text_feature)
    return texts, labels

  if "train" not in splits:
    raise ValueError(f"{where} has no 'train' split; splits: {splits}")
  train_texts, train_labels = read("train")
  test_split = "test" if "test" in splits else "validation"
  if test_split not in splits:
    raise ValueError(f"{where} has neither a 'test' nor a 'validation' split; splits: {splits}")
  test_texts, test_labels = read(test_split)
  if test_split == "test" and np.all(test_labels == UNLABELED):
    if "validation" not in splits:
      raise ValueError(
          f"{where}: every 'test' label is -1 (unlabelled) and there is no 'validation' "
          f"split to test on instead; splits: {splits}"
      )
    test_split = "validation"  # GLUE hides its test labels (all -1)
    test_texts, test_labels = read(test_split)
  if test_split == "validation":
    print(f"tfds:{name}: no labelled 'test' split; testing on 'validation'", flush=True)
  if np.any(test_labels == UNLABELED):
    data = builder.as_data_source(test_split)
    first = next(
        i
        for i in range(len(data))
        if data[i].get("label", UNLABELED) == UNLABELED
        and _decode_tfds_text(data[i][text_feature], "").strip()
    )
    raise ValueError(
        f"tfds:{name}:{test_split}[{first}] is unlabelled (-1), as are "
        f"{np.sum(test_labels == UNLABELED) - 1} more; every test text needs a label"
    )
  unlabeled = []
  unlabeled_split = next((s for s in TFDS_UNLABELED_SPLITS if s in splits), None)
  if unlabeled_split:
    unlabeled, _ = read(unlabeled_split)
  labelled = np.unique(train_labels[train_labels != UNLABELED])
  if len(labelled) < 2:
    raise ValueError(
        f"tfds:{name}:train: {len(labelled)} labelled class(es); few-label "
        "classification needs labelled examples of at least 2 classes"
    )
  return TextCorpus(
      f"tfds:{name}",
      train_texts,
      train_labels,
      test_texts,
      test_labels,
      unlabeled,
      label.num_classes,
      list(label.names),
      {k: n for k, n in skipped.items() if n},
  )
