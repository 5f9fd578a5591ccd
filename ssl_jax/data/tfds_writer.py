"""Writing a TFDS dataset without TensorFlow (what data/prepare.py produces): `output_dir` checks
the name and gives DATA_DIR/NAME/VERSION, `incomplete` the directory the writing goes into
(VERSION.incomplete), `write_split` a split's serialized examples as ArrayRecord shards, and
`finish` the metadata (tfds's `folder_dataset.write_metadata`) and the rename to the final name,
so that a failed run leaves no dataset behind.
"""

import os
import re
import shutil


def output_dir(name, data_dir, version, overwrite):
  """DATA_DIR/NAME/VERSION after checking the name (replaced only with `overwrite`)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
    raise ValueError(
        f"--name={name!r}: use lower_case letters, digits and underscores (a TFDS name)"
    )
  if name in tfds.list_builders(with_community_datasets=False):
    raise ValueError(
        f"--name={name!r} is a registered TFDS dataset, which tfds would read with its own "
        f"builder; choose another name, e.g. {name}_local"
    )
  out = os.path.join(os.path.expanduser(data_dir), name, version)
  if os.path.exists(out):
    if not overwrite:
      raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    shutil.rmtree(out)
  return out


def write_split(out, name, split, records, n, examples_per_shard):
  """Writes `n` serialized examples (an iterable) as ArrayRecord shards -> tfds SplitInfo."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  records = iter(records)
  shards = [min(examples_per_shard, n - s) for s in range(0, n, examples_per_shard)]
  for k, size in enumerate(shards):
    path = os.path.join(out, f"{name}-{split}.array_record-{k:05d}-of-{len(shards):05d}")
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")  # fast random access
    for _ in range(size):
      writer.write(next(records))
    writer.close()
  print(f"{split}: {n} examples in {len(shards)} shards", flush=True)
  return tfds.core.SplitInfo(name=split, shard_lengths=shards, num_bytes=0, filename_template=None)


def finish(out, final, name, data_dir, spec, features, split_infos):
  """Writes the metadata and renames OUT (NAME/VERSION.incomplete) to its final name."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tfds.folder_dataset.write_metadata(
      data_dir=out,
      features=features,
      split_infos=split_infos,
      check_data=False,
      description=f"Prepared by ssl_jax.data.prepare from {spec}",
  )
  os.rename(out, final)
  print(
      f"wrote {final}; train with --config.data.source=tfds:{name} "
      f"--config.data.data_dir={data_dir}",
      flush=True,
  )
  return final


def incomplete(final):
  out = final + ".incomplete"  # renamed when done, so a failed run leaves no dataset behind
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(out)
  return out
