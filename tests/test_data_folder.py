"""Image folders (labelled, unlabelled, split folders), every bad-input error, skip_corrupt, label
subsets."""

import os

import numpy as np
import pytest
from PIL import Image

from ssl_jax.data import sources
from ssl_jax.data import subsets

RNG = np.random.default_rng(0)


def _save(path, array, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, format=fmt)
  return array


def _labelled(root, per_class=4, size=8):
  """Two classes of RGB PNGs; returns {relative path: array}."""
  saved = {}
  for c in ("ants", "bees"):
    for i in range(per_class):
      rel = f"{c}/{c}_{i}.png"
      saved[rel] = _save(
          os.path.join(root, rel), RNG.integers(0, 255, (size, size, 3), dtype=np.uint8)
      )
  return saved


def test_labelled_folder_holds_out_a_test_split_and_decodes_exactly(tmp_path):
  saved = _labelled(tmp_path)
  train = sources.build(
      f"folder:{tmp_path}", "train", holdout_per_class=1, image_size=8, channels=3, num_classes=2
  )
  test = sources.build(f"folder:{tmp_path}", "test", holdout_per_class=1, image_size=8, channels=3)
  assert (len(train), len(test)) == (6, 2) and sorted(test.labels.tolist()) == [0, 1]
  assert not set(train.file_names()) & set(test.file_names())
  assert set(train.file_names()) | set(test.file_names()) == set(saved)
  images, labels = train.arrays()
  for name, image, label in zip(train.file_names(), images, labels):
    np.testing.assert_array_equal(image, saved[name])
    assert label == ("ants", "bees").index(name.split("/")[0])


def test_mixed_formats_modes_and_sizes_become_the_configured_shape(tmp_path):
  _save(str(tmp_path / "a" / "gray.jpg"), RNG.integers(0, 255, (20, 30), dtype=np.uint8))
  _save(str(tmp_path / "a" / "rgba.png"), RNG.integers(0, 255, (12, 9, 4), dtype=np.uint8))
  _save(str(tmp_path / "b" / "palette.png"), RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8))
  Image.open(tmp_path / "b" / "palette.png").convert("P").save(tmp_path / "b" / "palette.png")
  _save(str(tmp_path / "b" / "big.JPEG"), RNG.integers(0, 255, (64, 48, 3), dtype=np.uint8))
  for channels in (1, 3):
    source = sources.build(
        f"folder:{tmp_path}", "train", holdout_per_class=0, image_size=8, channels=channels
    )
    images, labels = source.arrays()
    assert images.shape == (4, 8, 8, channels) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 1, 1]
    assert source.read(0)["inputs"].size == (30, 20)  # full resolution for host-side crops


def test_unlabelled_flat_folder_and_split_folders(tmp_path):
  for i in range(3):
    _save(str(tmp_path / "flat" / f"{i}.png"), RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8))
  flat = sources.build(f"folder:{tmp_path / 'flat'}", "train", image_size=8)
  assert len(flat) == 3 and flat.labels.tolist() == [-1, -1, -1]
  with pytest.raises(ValueError, match="unlabelled .* only a 'train' split"):
    sources.build(f"folder:{tmp_path / 'flat'}", "test")

  _labelled(tmp_path / "split" / "train", per_class=2)
  _save(str(tmp_path / "split" / "test" / "bees" / "x.png"), np.zeros((8, 8, 3), np.uint8))
  test = sources.build(f"folder:{tmp_path / 'split'}", "test", image_size=8)
  assert len(test) == 1 and test.labels.tolist() == [1]  # class index from train/, not from test/
  with pytest.raises(ValueError, match=r"split folders \['test', 'train'\]; no 'validation'"):
    sources.build(f"folder:{tmp_path / 'split'}", "validation")
  _save(str(tmp_path / "split" / "test" / "wasps" / "y.png"), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match="wasps: class folder not in the train split"):
    sources.build(f"folder:{tmp_path / 'split'}", "test")


def _bad_folder(tmp_path, kind):
  root = tmp_path / kind
  _labelled(root, per_class=3)
  good = (root / "ants" / "ants_0.png").read_bytes()
  jpeg = root / "ants" / "j.jpg"
  _save(str(jpeg), RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8))
  if kind == "corrupt":
    (root / "ants" / "bad.jpg").write_bytes(RNG.integers(0, 255, 500, dtype=np.uint8).tobytes())
  elif kind == "truncated":
    (root / "ants" / "bad.jpg").write_bytes(jpeg.read_bytes()[:-40])
  elif kind == "truncated_png":
    (root / "ants" / "bad.png").write_bytes(good[: len(good) // 2])
  elif kind == "not_image":
    (root / "ants" / "bad.txt").write_text("notes")
  return root


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("corrupt", "not a readable image"),
        ("truncated", "truncated JPEG"),
        ("truncated_png", "truncated PNG"),
        ("not_image", "not an image file"),
    ],
)
def test_bad_files_are_named_or_skipped_and_listed(tmp_path, kind, reason):
  root = _bad_folder(tmp_path, kind)
  with pytest.raises(ValueError, match=f"ants/bad\\.(jpg|png|txt): {reason}.*skip_corrupt"):
    sources.build(f"folder:{root}", "train", holdout_per_class=1)
  source = sources.build(f"folder:{root}", "train", holdout_per_class=1, skip_corrupt=True)
  assert len(source) == 5 and len(source.skipped) == 1 and reason in source.skipped[0]
  test = sources.build(f"folder:{root}", "test", holdout_per_class=1, skip_corrupt=True)
  assert sources.write_skipped(str(tmp_path / "work" / "skipped_files.txt"), source, test) == 1
  assert "ants/bad." in (tmp_path / "work" / "skipped_files.txt").read_text()
  source.arrays()  # the remaining files decode


def test_folder_layout_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    sources.build(f"folder:{tmp_path / 'nowhere'}", "train")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty"):
    sources.build(f"folder:{tmp_path / 'empty'}", "train")
  _labelled(tmp_path / "noimg")
  (tmp_path / "noimg" / "cats").mkdir()
  with pytest.raises(ValueError, match="noimg/cats' has no usable JPEG/PNG images"):
    sources.build(f"folder:{tmp_path / 'noimg'}", "train")
  _labelled(tmp_path / "mixed")
  _save(str(tmp_path / "mixed" / "loose.png"), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match=r"mixes class folders.*\(loose.png\)"):
    sources.build(f"folder:{tmp_path / 'mixed'}", "train")
  _labelled(tmp_path / "three")
  _save(str(tmp_path / "three" / "cats" / "0.png"), np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(
      ValueError,
      match=r"3 classes \(ants, bees, cats\) but config.data.num_classes=2; "
      r"labels must lie in \[0, 2\)",
  ):
    sources.build(f"folder:{tmp_path / 'three'}", "train", holdout_per_class=0, num_classes=2)


def test_labels_outside_num_classes_in_arrays(tmp_path):
  np.savez(tmp_path / "d.npz", images=np.zeros((4, 2, 2, 1), np.uint8), labels=[0, 1, 5, -1])
  with pytest.raises(ValueError, match=r"label 5 at index 2 is outside \[0, 3\)"):
    sources.build(f"npz:{tmp_path / 'd.npz'}", "train", num_classes=3)
  assert len(sources.build(f"npz:{tmp_path / 'd.npz'}", "train", num_classes=6)) == 4


def test_subsets_are_deterministic_and_load_by_index_or_file_name(tmp_path):
  labels = np.repeat(np.arange(4), [10, 20, 30, 40])
  a, b = subsets.per_class(labels, 3, seed=1), subsets.per_class(labels, 3, seed=1)
  np.testing.assert_array_equal(a, b)
  assert np.bincount(labels[a]).tolist() == [3, 3, 3, 3]
  assert not np.array_equal(a, subsets.per_class(labels, 3, seed=2))
  assert np.bincount(labels[subsets.percent(labels, 10, seed=0)]).tolist() == [1, 2, 3, 4]
  with pytest.raises(ValueError, match="class 0 has 10 labelled examples; cannot draw 11"):
    subsets.per_class(labels, 11, seed=0)

  _labelled(tmp_path / "data", per_class=5)
  source = sources.build(f"folder:{tmp_path / 'data'}", "train", holdout_per_class=0, image_size=8)
  chosen = subsets.per_class(source.labels, 2, seed=0)
  by_index = subsets.write(str(tmp_path / "work" / "2_per_class.txt"), chosen, comment="seed 0")
  by_name = subsets.write(
      str(tmp_path / "work" / "names.txt"),
      chosen,
      names=[os.path.basename(n) if n.startswith("ants") else n for n in source.file_names()],
  )
  for path in (by_index, by_name):
    subset = sources.build(
        f"folder:{tmp_path / 'data'}", "train", holdout_per_class=0, image_size=8, subset=path
    )
    assert len(subset) == 4 and np.bincount(subset.labels).tolist() == [2, 2]
    np.testing.assert_array_equal(subset.arrays()[0], source.arrays()[0][chosen])
  (tmp_path / "bad.txt").write_text("ants/ants_0.png\nmoths/1.png\n")
  with pytest.raises(ValueError, match=r"bad.txt:2: file name 'moths/1.png' is not in"):
    subsets.load(str(tmp_path / "bad.txt"), source)
  (tmp_path / "big.txt").write_text("3\n99\n")
  with pytest.raises(ValueError, match=r"big.txt:2: index 99 is outside \[0, 10\)"):
    subsets.load(str(tmp_path / "big.txt"), source)
