"""Sources and grain pipelines: holdout, bad files, deterministic order, resume, padded eval."""

import numpy as np
import pytest

from ssl_jax.data import pipeline
from ssl_jax.data import sources


def test_mnist_holdout_is_disjoint_and_balanced():
  train = sources.mnist("train", holdout_per_class=100, seed=0)
  test = sources.mnist("test", holdout_per_class=100, seed=0)
  assert len(train) == 4000 and len(test) == 1000
  assert np.bincount(test.labels).tolist() == [100] * 10
  images, _ = train.arrays()
  assert images.shape == (4000, 28, 28, 1) and images.dtype == np.uint8
  train_set = {im.tobytes() for im in images[:500]}
  assert not any(im.tobytes() in train_set for im in test.arrays()[0])


def test_holdout_split_follows_holdout_seed_not_the_run_seed():
  from ssl_jax import config as config_lib
  from ssl_jax import train

  c0, c1 = config_lib.base_config(), config_lib.base_config()
  c1.seed = 1  # another training seed: the same test digits
  tests = [train.load_data(c)[1].arrays()[0] for c in (c0, c1)]
  np.testing.assert_array_equal(tests[0], tests[1])
  c1.data.holdout_seed = 1  # another held-out split on purpose
  other = train.load_data(c1)[1].arrays()[0]
  assert len(other) == len(tests[0]) and not np.array_equal(other, tests[0])


def test_npz_arrays_and_bad_files(tmp_path):
  path = tmp_path / "d.npz"
  np.savez(path, images=np.zeros((5, 4, 4, 3), np.uint8), labels=np.arange(5))
  source = sources.build(f"npz:{path}", "train")
  assert len(source) == 5 and source[3]["label"] == 3
  np.savez(tmp_path / "unlab.npz", images=np.zeros((5, 4, 4), np.uint8))
  assert sources.build(f"npz:{tmp_path / 'unlab.npz'}", "train")[0]["inputs"].shape == (4, 4, 1)
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    sources.build(f"npz:{tmp_path / 'missing.npz'}", "train")
  np.savez(tmp_path / "bad.npz", images=np.zeros((5, 4, 4, 3), np.uint8), labels=np.arange(4))
  with pytest.raises(ValueError, match="5 entries but 'labels' has 4"):
    sources.build(f"npz:{tmp_path / 'bad.npz'}", "train")
  np.savez(tmp_path / "float.npz", images=np.zeros((5, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match="must be uint8"):
    sources.build(f"npz:{tmp_path / 'float.npz'}", "train")
  np.savez(tmp_path / "rank.npz", images=np.zeros((5, 4), np.uint8))
  with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
    sources.build(f"npz:{tmp_path / 'rank.npz'}", "train")
  with pytest.raises(ValueError, match="accepted: 'mnist', 'npz:PATH'"):
    sources.build("imagenet", "train")


def test_jpeg_bundle(tmp_path):
  import io
  from PIL import Image

  blobs, images = [], np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
  for im in images:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
  np.savez(
      tmp_path / "b.npz",
      train_jpeg=np.concatenate(blobs),
      train_offsets=offsets,
      train_labels=np.array([0, 1, 2]),
  )
  source = sources.build(f"npz:{tmp_path / 'b.npz'}", "train")
  np.testing.assert_array_equal(source.arrays()[0], images)
  corrupt = np.concatenate(blobs).copy()
  corrupt[offsets[1] : offsets[1] + 20] = 0
  np.savez(
      tmp_path / "c.npz",
      train_jpeg=corrupt,
      train_offsets=offsets,
      train_labels=np.array([0, 1, 2]),
  )
  with pytest.raises(ValueError, match=r"c.npz:train\[1\]: cannot decode"):
    sources.build(f"npz:{tmp_path / 'c.npz'}", "train")[1]


def _source(n=20):
  images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
  return sources.ArraySource(images, np.arange(n, dtype=np.int32) % 3)


def test_epochs_cover_everything_and_reshuffle():
  it = pipeline.train_iterator(_source(), global_batch_size=5, seed=0)
  epochs = [np.concatenate([next(it)["index"] for _ in range(4)]) for _ in range(2)]
  assert sorted(epochs[0]) == list(range(20)) and sorted(epochs[1]) == list(range(20))
  assert not np.array_equal(epochs[0], epochs[1])


def test_iterator_state_resumes_exactly():
  it = pipeline.train_iterator(_source(), global_batch_size=4, seed=3)
  for _ in range(7):
    next(it)
  state = it.get_state()
  want = [next(it)["index"] for _ in range(5)]
  resumed = pipeline.train_iterator(_source(), global_batch_size=4, seed=3)
  resumed.set_state(state)
  got = [next(resumed)["index"] for _ in range(5)]
  np.testing.assert_array_equal(np.stack(got), np.stack(want))


def test_process_slices_assemble_the_single_process_batch():
  whole = pipeline.train_iterator(
      _source(24), global_batch_size=8, seed=1, process_index=0, process_count=1
  )
  parts = [
      pipeline.train_iterator(
          _source(24), global_batch_size=8, seed=1, process_index=p, process_count=2
      )
      for p in range(2)
  ]
  for _ in range(6):
    want = next(whole)
    got = [next(p) for p in parts]
    np.testing.assert_array_equal(np.concatenate([g["inputs"] for g in got]), want["inputs"])
    assert not set(got[0]["index"]) & set(got[1]["index"])
  with pytest.raises(ValueError, match="divide over 3 processes"):
    pipeline.train_dataset(_source(), global_batch_size=8, seed=1, process_index=0, process_count=3)


def test_padded_batches_count_every_example_once():
  images = np.arange(11, dtype=np.uint8).reshape(11, 1, 1, 1)
  batches = list(pipeline.padded_batches(images, np.arange(11), 4))
  assert [b["inputs"].shape[0] for b in batches] == [4, 4, 4]
  real = np.concatenate([b["inputs"][b["mask"]] for b in batches]).ravel()
  np.testing.assert_array_equal(real, np.arange(11))
