"""Converts an image folder, an .npz or a jsonl:DIR text corpus into a TFDS ArrayRecord dataset
that `tfds:NAME` reads.

  python -m ssl_jax.data.prepare --input=folder:/data/xrays --name=xrays \
      --data_dir=~/tensorflow_datasets
  python -m ssl_jax.data.prepare --input=npz:cifar10_jpeg_bytes.npz --name=cifar10_jpeg \
      --data_dir=DIR
  python -m ssl_jax.data.prepare --input=jsonl:/data/sst2 --name=sst2_jsonl --data_dir=DIR

then train with `--config.data.source=tfds:xrays --config.data.data_dir=DIR`. No TensorFlow needed:
examples are serialised with tfds's feature connectors, written with array_record, and described
with `tfds.folder_dataset.write_metadata` (data/tfds_writer.py). Splits: a folder's split
subfolders (train/, test/, ...) or an npz's `{split}_` arrays; otherwise 'train', plus 'test' when
--holdout_per_class > 0. Every image is fully decoded once to validate it; JPEG/PNG bytes are
stored as they are unless their channels differ from --channels (then converted and stored as
PNG). Features: `image`, `label` (ClassLabel; labelled data only) and `file_name` (for subset
files of names).

A jsonl:DIR corpus is read exactly as `jsonl:DIR` reads it (data/text.py: the same files, errors
and checks; empty texts skipped and reported) into features `text` (Text) and `label` (ClassLabel
of K classes named '0'..'K-1': --num_classes, else the largest label + 1) and splits 'train',
'test' and, when DIR has one, 'unlabeled'. Unlabelled rows, those of the train file and the whole
'unlabeled' split, are stored with label -1, which ClassLabel accepts as "no label" (as tfds's own
imdb_reviews 'unsupervised' split does), so `tfds:NAME` gives back the texts and labels of
`jsonl:DIR`.
"""

import argparse
import concurrent.futures
import io
import os

import numpy as np

from ssl_jax.data import decode
from ssl_jax.data import folder
from ssl_jax.data import sources
from ssl_jax.data import sources_base
from ssl_jax.data import text
from ssl_jax.data import tfds_writer

_MODE = {1: "L", 3: "RGB"}


def _splits_and_classes(spec, channels, skip_corrupt):
  """{split: source} and class names for the input spec."""
  kind, _, path = spec.partition(":")
  if kind == "folder":
    if os.path.isdir(os.path.join(path, "train")):
      names = sorted(
          d
          for d in os.listdir(path)
          if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")
      )
      splits = {
          s: folder.build(path, s, channels=channels, skip_corrupt=skip_corrupt) for s in names
      }
    else:
      splits = {
          "train": folder.build(
              path, "train", channels=channels, holdout_per_class=0, skip_corrupt=skip_corrupt
          )
      }
    return splits, splits["train"].classes
  if kind == "npz":
    if not os.path.isfile(path):
      raise FileNotFoundError(f"--input: {path!r} does not exist")
    with np.load(path) as f:
      keys = set(f.files)
      classes = [str(c) for c in f["classes"]] if "classes" in keys else None
    names = sorted({k.rsplit("_", 1)[0] for k in keys if k.endswith(("_images", "_jpeg"))})
    splits = {s: sources.npz(path, s, channels=channels) for s in names or ["train"]}
    if classes is None:
      top = max(int(np.max(np.asarray(s.labels), initial=-1)) for s in splits.values())
      classes = [str(c) for c in range(top + 1)]
    return splits, classes
  raise ValueError(f"--input={spec!r}: accepted 'folder:PATH', 'npz:PATH' or 'jsonl:DIR'")


def _holdout(splits, per_class, seed):
  if per_class <= 0 or list(splits) != ["train"]:
    return splits
  train, test = sources_base.holdout_split(np.asarray(splits["train"].labels), per_class, seed)
  whole = splits["train"]
  return {"train": sources_base.Subset(whole, train), "test": sources_base.Subset(whole, test)}


def _encoded(source, index, channels):
  """(bytes, label, format) of one example, validated by a full decode."""
  data, label, where = source.record(index)
  image = decode.open_image(data, where, channels)  # raises, naming `where`, on corrupt data
  with decode.Image.open(io.BytesIO(data)) as original:
    kind, mode = original.format, original.mode
  if mode != _MODE[channels]:  # store what the model reads (lossless), so plain tfds readers agree
    data, kind = decode.encode_png(decode.to_array(image)), "PNG"
  return data, label, kind


def _features(channels, classes, encoding):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  features = {
      "image": tfds.features.Image(shape=(None, None, channels), encoding_format=encoding),
      "file_name": tfds.features.Text(),
  }
  if classes is not None:
    features["label"] = tfds.features.ClassLabel(names=classes)
  return tfds.features.FeaturesDict(features)


def _file_names(source):
  try:
    return source.file_names()
  except (AttributeError, KeyError):
    return [str(i) for i in range(len(source))]


def _text_features(num_classes):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  return tfds.features.FeaturesDict(
      {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=num_classes)}
  )


def prepare_text(
    spec,
    *,
    name,
    data_dir,
    version="1.0.0",
    num_classes=0,
    examples_per_shard=10_000,
    overwrite=False,
):
  """A jsonl:DIR corpus as DATA_DIR/NAME/VERSION/ (see the module docstring)."""
  final = tfds_writer.output_dir(name, data_dir, version, overwrite)
  corpus = text.jsonl_dir(spec.partition(":")[2], num_classes=num_classes)
  for path, count in corpus.skipped_empty.items():
    print(f"skipped {count} empty text(s) in {path}", flush=True)
  splits = {
      "train": (corpus.train_texts, corpus.train_labels),
      "test": (corpus.test_texts, corpus.test_labels),
  }
  if corpus.unlabeled_texts:
    splits["unlabeled"] = (
        corpus.unlabeled_texts,
        [sources_base.UNLABELED] * len(corpus.unlabeled_texts),
    )
  features = _text_features(corpus.num_classes)
  out, split_infos = tfds_writer.incomplete(final), []
  for split, (texts, labels) in splits.items():
    records = (
        features.serialize_example({"text": t, "label": int(y)}) for t, y in zip(texts, labels)
    )
    split_infos.append(
        tfds_writer.write_split(out, name, split, records, len(texts), examples_per_shard)
    )
  return tfds_writer.finish(out, final, name, data_dir, spec, features, split_infos)


def prepare(
    spec,
    *,
    name,
    data_dir,
    version="1.0.0",
    channels=3,
    holdout_per_class=0,
    seed=0,
    skip_corrupt=False,
    examples_per_shard=10_000,
    overwrite=False,
    num_classes=0,
):
  """Writes DATA_DIR/NAME/VERSION/ (ArrayRecord shards, dataset_info.json, features.json)."""
  if spec.partition(":")[0] == "jsonl":
    if holdout_per_class or skip_corrupt or channels != 3:
      raise ValueError(
          f"--input={spec!r}: --holdout_per_class, --skip_corrupt and --channels are for "
          "images; a jsonl:DIR corpus has its own test file"
      )
    return prepare_text(
        spec,
        name=name,
        data_dir=data_dir,
        version=version,
        num_classes=num_classes,
        examples_per_shard=examples_per_shard,
        overwrite=overwrite,
    )
  if num_classes:
    raise ValueError(
        f"--num_classes={num_classes} is for jsonl:DIR; images take their classes from "
        "the folder names or the .npz"
    )
  final = tfds_writer.output_dir(name, data_dir, version, overwrite)
  splits, classes = _splits_and_classes(spec, channels, skip_corrupt)
  splits = _holdout(splits, holdout_per_class, seed)
  labelled = any(np.any(np.asarray(s.labels) >= 0) for s in splits.values())
  out = tfds_writer.incomplete(final)
  formats, split_infos = set(), []
  serializer = _features(channels, classes if labelled else None, "png")  # format: metadata only

  def records(split, source, pool):
    file_names, n = _file_names(source), len(source)
    for start in range(0, n, examples_per_shard):  # a shard's images decoded in parallel
      shard = range(start, min(start + examples_per_shard, n))
      for i, (data, label, kind) in zip(
          shard, pool.map(lambda i: _encoded(source, i, channels), shard)
      ):
        formats.add(kind)
        example = {"image": data, "file_name": file_names[i]}
        if labelled:
          if label < 0:
            raise ValueError(
                f"{spec}:{split}[{i}] is unlabelled (-1) in a labelled dataset; every "
                "example needs a label in [0, num_classes)"
            )
          example["label"] = label
        yield serializer.serialize_example(example)

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    for split, source in splits.items():
      if labelled:
        sources_base.check_labels(np.asarray(source.labels), len(classes), f"{spec}:{split}")
      split_infos.append(
          tfds_writer.write_split(
              out, name, split, records(split, source, pool), len(source), examples_per_shard
          )
      )
  features = _features(
      channels, classes if labelled else None, "jpeg" if formats == {"JPEG"} else "png"
  )
  skipped = [line for s in splits.values() for line in getattr(s, "skipped", [])]
  if skipped:
    with open(os.path.join(out, "skipped_files.txt"), "w") as f:
      f.writelines(line + "\n" for line in sorted(set(skipped)))
  return tfds_writer.finish(out, final, name, data_dir, spec, features, split_infos)


def main(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--input", required=True, help="folder:PATH, npz:PATH or jsonl:DIR")
  parser.add_argument("--name", required=True, help="TFDS dataset name (lower_case)")
  parser.add_argument(
      "--data_dir", default=os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  )
  parser.add_argument("--version", default="1.0.0")
  parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
  parser.add_argument(
      "--num_classes",
      type=int,
      default=0,
      help="jsonl:DIR: the label's classes (0: the largest label + 1)",
  )
  parser.add_argument(
      "--holdout_per_class",
      type=int,
      default=0,
      help="without split folders/keys: hold out this many per class as 'test'",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
      "--skip_corrupt", action="store_true", help="skip unreadable files, list them"
  )
  parser.add_argument("--examples_per_shard", type=int, default=10_000)
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  prepare(
      args.input,
      name=args.name,
      data_dir=args.data_dir,
      version=args.version,
      channels=args.channels,
      holdout_per_class=args.holdout_per_class,
      seed=args.seed,
      skip_corrupt=args.skip_corrupt,
      examples_per_shard=args.examples_per_shard,
      overwrite=args.overwrite,
      num_classes=args.num_classes,
  )


if __name__ == "__main__":
  main()
