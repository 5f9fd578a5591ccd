"""grain pipeline options: host-side multi-crop views, worker processes, JSON state and exact
resume."""

import json

import numpy as np
import pytest
from PIL import Image

from ssl_jax.data import pipeline
from ssl_jax.data import sources

RNG = np.random.default_rng(0)


def _source(n=24, size=16):
  return sources.ArraySource(
      RNG.integers(0, 255, (n, size, size, 3), dtype=np.uint8), np.arange(n, dtype=np.int32) % 4
  )


def test_simclr_and_swav_crops_have_documented_shapes_and_split_over_processes():
  source = _source()
  two = next(
      pipeline.train_iterator(source, global_batch_size=8, seed=0, crops=pipeline.SIMCLR_CROPS)
  )
  assert sorted(two) == ["index", "label", "view0", "view1"]
  assert two["view0"].shape == (8, 16, 16, 3) and two["view0"].dtype == np.uint8
  assert not np.array_equal(two["view0"], two["view1"])
  swav = ((2, 16, 0.14, 1.0), (4, 8, 0.05, 0.14))
  whole = pipeline.train_iterator(
      source, global_batch_size=8, seed=1, crops=swav, process_index=0, process_count=1
  )
  parts = [
      pipeline.train_iterator(
          source, global_batch_size=8, seed=1, crops=swav, process_index=p, process_count=2
      )
      for p in range(2)
  ]
  for _ in range(4):  # crops depend on the stream position, not on which process cut them
    want, got = next(whole), [next(p) for p in parts]
    assert [want[f"view{v}"].shape[1] for v in range(6)] == [16, 16, 8, 8, 8, 8]
    for key in want:
      np.testing.assert_array_equal(np.concatenate([g[key] for g in got]), want[key])
  with pytest.raises(ValueError, match=r"crop spec \(2, 16, 0.5, 0.1\)"):
    pipeline.train_dataset(source, global_batch_size=8, seed=0, crops=((2, 16, 0.5, 0.1),))


def test_folder_images_of_different_sizes_need_image_size(tmp_path):
  for i, shape in enumerate([(8, 8, 3), (9, 8, 3)]):
    Image.fromarray(np.zeros(shape, np.uint8)).save(tmp_path / f"{i}.png")
  source = sources.build(f"folder:{tmp_path}", "train")
  with pytest.raises(ValueError, match="have image shapes .* set config.data.image_size"):
    next(pipeline.train_iterator(source, global_batch_size=2, seed=0))
  resized = sources.build(f"folder:{tmp_path}", "train", image_size=4)
  assert next(pipeline.train_iterator(resized, global_batch_size=2, seed=0))["inputs"].shape == (
      2,
      4,
      4,
      3,
  )


def test_mid_epoch_resume_from_json_state_equals_uninterrupted_order():
  source = _source(20)
  kwargs = dict(global_batch_size=4, seed=3, crops=((2, 12, 0.2, 1.0),))
  uninterrupted = pipeline.train_iterator(source, **kwargs)
  want = [next(uninterrupted) for _ in range(12)]  # 3 epochs of 5 batches
  stopped = pipeline.train_iterator(source, **kwargs)
  for _ in range(7):  # mid-epoch 2
    next(stopped)
  state = json.loads(json.dumps(stopped.get_state()))  # as the orbax JsonSave checkpoint stores it
  resumed = pipeline.train_iterator(source, **kwargs)
  resumed.set_state(state)
  for step in range(7, 12):
    got = next(resumed)
    for key in got:
      np.testing.assert_array_equal(got[key], want[step][key])


def test_worker_processes_give_the_same_batches_and_resume_with_another_worker_count():
  source = _source(20)
  reference = pipeline.train_iterator(source, global_batch_size=4, seed=2)
  want = [next(reference)["index"] for _ in range(9)]
  it = pipeline.train_iterator(source, global_batch_size=4, seed=2, num_workers=2)
  np.testing.assert_array_equal(np.stack([next(it)["index"] for _ in range(5)]), np.stack(want[:5]))
  state = json.loads(json.dumps(it.get_state()))
  assert state == {"next_batch": 5}
  resumed = pipeline.train_iterator(source, global_batch_size=4, seed=2, num_workers=1)
  resumed.set_state(state)
  np.testing.assert_array_equal(
      np.stack([next(resumed)["index"] for _ in range(4)]), np.stack(want[5:])
  )
  with pytest.raises(ValueError, match="expected {'next_batch': int >= 0}"):
    resumed.set_state({"workers_state": {}})


def test_padded_eval_batches_over_a_decoded_source_count_every_example_once(tmp_path):
  for i in range(7):
    Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
  images, labels = sources.build(f"folder:{tmp_path}", "train", image_size=4).arrays()
  batches = list(pipeline.padded_batches(images, labels, 3))
  assert len(batches) == 3 and int(sum(b["mask"].sum() for b in batches)) == 7
  seen = np.concatenate([b["inputs"][b["mask"]][:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(np.sort(seen), np.arange(7))
