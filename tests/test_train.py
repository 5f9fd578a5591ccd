"""The training loop: sharded step == single-device step, exact resume, bad input, end to end."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from ssl_jax import sharding as sharding_lib

from ssl_jax import config as config_lib
from ssl_jax import train
from ssl_jax.data import sources


def tiny_config(data_path, **overrides):
  c = config_lib.base_config()
  c.data.source = f"npz:{data_path}"
  c.data.image_size = 16
  c.data.channels = 3
  c.data.num_classes = 4
  c.data.eval_batch_size = 64
  c.global_batch_size = 16
  c.total_steps = 6
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.model.depth = 10
  c.model.width_multiplier = 0.125
  c.task_kwargs.projection_dims = (32, 16)
  c.optimizer.warmup_epochs = 1.0
  for key, value in overrides.items():
    config_lib.override(c, [f"{key}={value}"])
  config_lib.check_known_keys(c)
  return c


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_sharded_step_equals_single_device(data_path):
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  batch = {
      "inputs": np.random.default_rng(1).integers(0, 255, (16, 16, 16, 3), dtype=np.uint8),
      "label": np.zeros(16, np.int32),
  }
  results = []
  for mesh_data, fsdp, probe in ((1, 1, False), (8, 1, False), (8, 1, True)):
    c = tiny_config(data_path, **{"mesh.data": mesh_data, "mesh.fsdp": fsdp, "online_probe": probe})
    comps = train.build(c, input_shape=(16, 16, 3), steps_per_epoch=4, total_steps=6)
    state = comps.init_state(jax.random.PRNGKey(0))
    state, metrics = comps.train_step(state, jax.device_put(batch, comps.batch_sharding))
    results.append((jax.device_get(state), jax.device_get(metrics)))
  (want_state, want_metrics), others = results[0], results[1:2]
  # the online probe is a field of the state beside the params, trained on stop-gradient
  # features: the encoder's update is the same with it as without it
  probed, probed_metrics = results[2]
  assert want_state.probe is None and set(probed.params) == set(want_state.params)
  assert probed.probe["kernel"].shape == (64, 4) and "online_probe/accuracy" in probed_metrics
  assert probed_metrics["ssl_loss"] < probed_metrics["loss"]
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      probed.params,
      results[1][0].params,
  )
  for got_state, got_metrics in others:
    np.testing.assert_allclose(got_metrics["loss"], want_metrics["loss"], rtol=1e-5)
    np.testing.assert_allclose(got_metrics["grad_norm"], want_metrics["grad_norm"], rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        got_state.params,
        want_state.params,
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        got_state.model_state,
        want_state.model_state,
    )


def test_fsdp_shards_large_parameters_only():
  mesh = jax.make_mesh(
      (4, 2), sharding_lib.BATCH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2
  )
  big = jax.ShapeDtypeStruct((3, 3, 128, 256), np.float32)
  assert sharding_lib.param_sharding(mesh, big).spec == jax.sharding.PartitionSpec(
      None, None, None, "fsdp"
  )
  assert (
      sharding_lib.param_sharding(mesh, jax.ShapeDtypeStruct((256,), np.float32)).spec
      == jax.sharding.PartitionSpec()
  )


def test_batch_must_divide_over_devices(data_path):
  c = tiny_config(data_path, global_batch_size=12)
  with pytest.raises(ValueError, match="global_batch_size=12 does not divide over 8 devices"):
    train.build(c, input_shape=(16, 16, 3), steps_per_epoch=4, total_steps=6)


def test_resume_equals_uninterrupted_run(data_path, tmp_path):
  c = tiny_config(data_path)
  train.train(c, str(tmp_path / "whole"))
  interrupted = str(tmp_path / "interrupted")
  train.train(c, interrupted)
  # Simulate a crash after step 4: drop the later checkpoint and metrics, then run again.
  shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
  with open(os.path.join(interrupted, "metrics.jsonl")) as f:
    kept = [line for line in f if json.loads(line)["step"] <= 4]
  with open(os.path.join(interrupted, "metrics.jsonl"), "w") as f:
    f.writelines(kept)
  run = train.train(c, interrupted)
  assert int(run.state.step) == 6
  want, got = _losses(str(tmp_path / "whole")), _losses(interrupted)
  assert sorted(got) == list(range(1, 7))
  for step in range(1, 7):
    assert (
        got[step] == want[step]
    ), f"step {step}: resumed {got[step]} != uninterrupted {want[step]}"


def test_resume_and_init_from_another_run(data_path, tmp_path):
  source = str(tmp_path / "source")
  train.train(tiny_config(data_path), source)
  shutil.copytree(os.path.join(source, "checkpoints"), tmp_path / "copy")
  shutil.rmtree(tmp_path / "copy" / "6")  # latest is now step 4
  run = train.train(
      tiny_config(data_path, resume=str(tmp_path / "copy")), str(tmp_path / "resumed")
  )
  want, got = _losses(source), _losses(str(tmp_path / "resumed"))
  assert sorted(got) == [5, 6] and all(got[s] == want[s] for s in (5, 6))

  c = tiny_config(data_path, init_from=os.path.join(source, "checkpoints"))
  comps = train.build(c, input_shape=(16, 16, 3), steps_per_epoch=4, total_steps=6)
  fresh = train.checkpoint_lib.Checkpointer(str(tmp_path / "empty"), keep=1)
  state, data_state = train._restore_or_init(c, comps, fresh)
  assert int(state.step) == 0 and data_state is None
  same = jax.tree.map(
      np.array_equal, jax.device_get(state.params), jax.device_get(run.state.params)
  )
  assert all(jax.tree.leaves(same))
  with pytest.raises(FileNotFoundError, match="nowhere"):
    train.checkpoint_lib.restore_params(str(tmp_path / "nowhere"))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_path, tmp_path):
  c = tiny_config(
      data_path,
      **{
          "optimizer.name": "sgd",
          "optimizer.base_learning_rate": 1e30,
          "optimizer.warmup_epochs": 0.0,
          "checkpoint_every_steps": 1,
          "total_steps": 8,
      },
  )
  with pytest.raises(FloatingPointError, match="non-finite loss") as error:
    train.train(c, str(tmp_path))
  bad_step = int(str(error.value).split("at step ")[1].split(";")[0])
  saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert saved and max(saved) < bad_step
  comps_state = train.checkpoint_lib.restore_params(str(tmp_path / "checkpoints"))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(comps_state["params"]))


def test_missing_dataset_path(tmp_path):
  c = tiny_config(tmp_path / "nowhere.npz")
  with pytest.raises(FileNotFoundError, match="nowhere.npz"):
    train.train(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_wrong_image_rank_or_dtype(tmp_path):
  np.savez(tmp_path / "f.npz", images=np.zeros((8, 4, 4, 3), np.float64))
  with pytest.raises(ValueError, match="must be uint8"):
    sources.build(f"npz:{tmp_path / 'f.npz'}", "train")
  from ssl_jax.data import image_ops

  with pytest.raises(ValueError):
    image_ops.augment_views(jax.random.PRNGKey(0), np.zeros((4, 4, 3), np.float32))


def test_temperature_must_be_positive(data_path):
  c = tiny_config(data_path, **{"task_kwargs.temperature": 0.0})
  with pytest.raises(ValueError, match="temperature must be > 0"):
    train.build(c, input_shape=(16, 16, 3), steps_per_epoch=4, total_steps=6)
