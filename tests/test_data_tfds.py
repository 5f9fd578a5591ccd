"""TFDS round trip without TensorFlow: prepare -> tfds.data_source -> grain -> the input images."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from ssl_jax.data import pipeline
from ssl_jax.data import prepare
from ssl_jax.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CIFAR = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar10_jpeg_bytes.npz")
RNG = np.random.default_rng(0)


def _folder(root, splits=("train", "test"), per_class=3):
  saved = {}
  for split in splits:
    for c in ("cat", "dog", "emu"):
      for i in range(per_class):
        rel = f"{c}/{split}_{c}_{i}.png"
        saved[(split, rel)] = RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        os.makedirs(os.path.join(root, split, c), exist_ok=True)
        Image.fromarray(saved[(split, rel)]).save(os.path.join(root, split, rel))
  return saved


def test_folder_round_trip_through_prepare_tfds_and_grain(tmp_path):
  saved = _folder(tmp_path / "pets")
  prepare.main(
      [f"--input=folder:{tmp_path / 'pets'}", "--name=tiny_pets", f"--data_dir={tmp_path / 'tfds'}"]
  )
  for split in ("train", "test"):
    source = sources.build(
        "tfds:tiny_pets",
        split,
        data_dir=str(tmp_path / "tfds"),
        image_size=8,
        channels=3,
        num_classes=3,
    )
    assert len(source) == 9 and source.classes == ["cat", "dog", "emu"]
    names = source.file_names()
    batch = next(pipeline.train_iterator(source, global_batch_size=9, seed=0))
    assert sorted(batch["index"].tolist()) == list(range(9))
    for image, label, index in zip(batch["inputs"], batch["label"], batch["index"]):
      np.testing.assert_array_equal(image, saved[(split, names[index])])
      assert label == ["cat", "dog", "emu"].index(names[index].split("/")[0])
  subset_file = tmp_path / "names.txt"
  subset_file.write_text("train_dog_1.png\nemu/train_emu_2.png\n")  # base names, as SimCLR's lists
  subset = sources.build(
      "tfds:tiny_pets",
      "train",
      data_dir=str(tmp_path / "tfds"),
      image_size=8,
      subset=str(subset_file),
  )
  assert subset.labels.tolist() == [1, 2]
  np.testing.assert_array_equal(subset.arrays()[0][1], saved[("train", "emu/train_emu_2.png")])


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG")
  return np.frombuffer(buffer.getvalue(), np.uint8)


def test_npz_arrays_and_jpeg_bundle_round_trip(tmp_path):
  images = RNG.integers(0, 255, (12, 6, 6, 1), dtype=np.uint8)
  np.savez(tmp_path / "a.npz", images=images, labels=np.arange(12) % 2)
  prepare.main(
      [
          f"--input=npz:{tmp_path / 'a.npz'}",
          "--name=gray",
          f"--data_dir={tmp_path}",
          "--channels=1",
          "--holdout_per_class=2",
      ]
  )
  train = sources.build("tfds:gray", "train", data_dir=str(tmp_path), channels=1)
  test = sources.build("tfds:gray", "test", data_dir=str(tmp_path), channels=1)
  assert (len(train), len(test)) == (8, 4)
  got = np.concatenate([train.arrays()[0], test.arrays()[0]])
  want = images[[int(n) for n in train.file_names() + test.file_names()]]
  np.testing.assert_array_equal(got, want)

  blobs = [_jpeg(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(5)]
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
  np.savez(
      tmp_path / "b.npz",
      train_jpeg=np.concatenate(blobs),
      train_offsets=offsets,
      train_labels=[0, 1, 2, 0, 1],
      classes=["a", "b", "c"],
  )
  prepare.main([f"--input=npz:{tmp_path / 'b.npz'}", "--name=bundle", f"--data_dir={tmp_path}"])
  source = sources.build("tfds:bundle", "train", data_dir=str(tmp_path))
  assert source.classes == ["a", "b", "c"] and source.labels.tolist() == [0, 1, 2, 0, 1]
  assert source.record(3)[0] == blobs[3].tobytes()  # JPEG bytes stored as they were
  direct = sources.build(f"npz:{tmp_path / 'b.npz'}", "train")
  np.testing.assert_array_equal(source.arrays()[0], direct.arrays()[0])


def test_unlabelled_folder_and_bad_names_and_splits(tmp_path):
  for i in range(4):
    Image.fromarray(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
  prepare.main([f"--input=folder:{tmp_path}", "--name=unlab", f"--data_dir={tmp_path / 'tfds'}"])
  source = sources.build("tfds:unlab", "train", data_dir=str(tmp_path / "tfds"))
  assert source.labels.tolist() == [-1] * 4 and source[0]["label"] == -1
  with pytest.raises(
      FileNotFoundError, match=r"tfds:nothing: no prepared dataset .*there: \['unlab'\]"
  ):
    sources.build("tfds:nothing", "train", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match=r"bad split 'test'.*splits: \['train'\]"):
    sources.build("tfds:unlab", "test", data_dir=str(tmp_path / "tfds"))
  assert len(sources.build("tfds:unlab", "train[:50%]", data_dir=str(tmp_path / "tfds"))) == 2
  with pytest.raises(FileExistsError, match="--overwrite"):
    prepare.main([f"--input=folder:{tmp_path}", "--name=unlab", f"--data_dir={tmp_path / 'tfds'}"])
  with pytest.raises(ValueError, match="registered TFDS dataset"):
    prepare.main(
        [f"--input=folder:{tmp_path}", "--name=cifar10", f"--data_dir={tmp_path / 'tfds'}"]
    )


def test_shared_cifar10_bundle_reads_the_official_split():
  if not os.path.isfile(SHARED_CIFAR):
    pytest.skip(f"real CIFAR-10 bundle not present at {SHARED_CIFAR}")
  test = sources.build(f"npz:{SHARED_CIFAR}", "test", channels=3, image_size=32, num_classes=10)
  assert len(test) == 10_000 and np.bincount(test.labels).tolist() == [1000] * 10
  batch = next(
      pipeline.train_iterator(test, global_batch_size=64, seed=0, crops=pipeline.SIMCLR_CROPS)
  )
  assert batch["view0"].shape == batch["view1"].shape == (64, 32, 32, 3)


def test_registered_tfds_dataset_reads_through_its_own_builder(tmp_path):
  """Lays files out as `tfds build cifar10 --file_format=array_record` would (no TensorFlow
  here)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  builder = tfds.builder("cifar10", data_dir=str(tmp_path), file_format="array_record")
  os.makedirs(builder.data_path)
  images = RNG.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
  split_infos = []
  for split in ("train", "test"):
    writer = array_record_module.ArrayRecordWriter(
        os.path.join(builder.data_path, f"cifar10-{split}.array_record-00000-of-00001"),
        "group_size:1",
    )
    for i, image in enumerate(images):
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      writer.write(
          builder.info.features.serialize_example(
              {"id": f"{split}_{i}", "image": buffer.getvalue(), "label": 7 - i}
          )
      )
    writer.close()
    split_infos.append(
        tfds.core.SplitInfo(name=split, shard_lengths=[4], num_bytes=0, filename_template=None)
    )
  builder.info.set_splits(tfds.core.SplitDict(split_infos))
  builder.info.set_file_format("array_record")
  builder.info.write_to_directory(builder.data_path)
  source = sources.build(
      "tfds:cifar10", "test", data_dir=str(tmp_path), image_size=32, num_classes=10
  )
  np.testing.assert_array_equal(source.arrays()[0], images)
  assert source.labels.tolist() == [7, 6, 5, 4] and source.num_classes == 10
  with pytest.raises(
      ValueError, match=r"tfds:cifar10:test: 10 classes .* but config.data.num_classes=5"
  ):
    sources.build("tfds:cifar10", "test", data_dir=str(tmp_path), num_classes=5)
