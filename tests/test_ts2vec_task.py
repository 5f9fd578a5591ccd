"""The TS2Vec task through the one loop: reference crops, exact static-shape loss, weight averaging,
exact resume, and pre-train -> SVM protocol -> study end to end (the tiny runs share one compiled
step: same config and shapes, and tests/conftest.py keeps a compilation cache). The loss's
1-vs-8-device equality is in test_ts2vec_loss.py; these runs use the 8 simulated devices."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import experiment
from ssl_jax import train
from ssl_jax.losses.ts2vec import hierarchical_contrastive
from ssl_jax.models.ts_dilated_conv import TSEncoder
from ssl_jax.tasks import ts2vec
from ts2vec_helpers import tiny_config, write_series_set


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
  return write_series_set(tmp_path_factory.mktemp("series") / "tiny.npz")


def test_crops_follow_the_reference():
  """The reference's draws: 2 <= l <= T, the overlap inside both views, views inside the series."""
  task, b, t = ts2vec.Task(), 4, 20
  c = jax.device_get(
      jax.jit(jax.vmap(lambda k: task.crops(k, b, t)))(jax.random.split(jax.random.PRNGKey(0), 300))
  )
  right = c["left"] + c["crop"]
  assert c["crop"].min() == 2 and c["crop"].max() >= t - 1
  assert np.all(
      (0 <= c["eleft"]) & (c["eleft"] <= c["left"]) & (right <= c["eright"]) & (c["eright"] <= t)
  )
  starts, ends = c["offset"] + c["eleft"][:, None], c["offset"] + c["eright"][:, None]
  assert starts.min() >= 0 and ends.max() <= t
  assert len(np.unique(c["offset"][0])) > 1  # one offset per series
  with pytest.raises(ValueError, match="shorter than the shortest crop 4"):
    ts2vec.Task(temporal_unit=1).crops(jax.random.PRNGKey(0), 2, 3)


def test_static_shape_loss_equals_the_reference_computation():
  """Without masking and dropout, the bucketed, masked step gives the loss and gradients of the
  reference's recipe: cut each view out of each series, encode it alone, compare the overlaps."""
  task = ts2vec.Task(mask_prob=0.0, length_buckets=2)
  model = task.model(TSEncoder(hidden_dims=4, repr_dims=6, depth=2, dropout=0.0))
  x = np.random.default_rng(0).normal(size=(3, 13, 2)).astype(np.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.asarray(x))
  ours = jax.jit(
      jax.value_and_grad(lambda v, rng: task.loss(model, v, {}, {"inputs": x}, rng, 0)[0])
  )

  def reference(v, c):
    o = c["offset"]
    right = int(c["left"] + c["crop"])
    view1 = np.stack([x[i, o[i] + c["eleft"] : o[i] + right] for i in range(3)])  # take_per_row
    view2 = np.stack([x[i, o[i] + c["left"] : o[i] + c["eright"]] for i in range(3)])
    out1 = model.apply(v, view1, per_timestep=True)[:, -int(c["crop"]) :]
    out2 = model.apply(v, view2, per_timestep=True)[:, : int(c["crop"])]
    return hierarchical_contrastive(out1, out2)[0]

  for seed, width in ((6, 7),):  # a 6-step overlap in the narrower buffer (the full one: e2e)
    rng = jax.random.PRNGKey(seed)
    c = jax.device_get(task.crops(jax.random.split(rng, 3)[0], 3, 13))
    assert max(c["left"] + c["crop"] - c["eleft"], c["eright"] - c["left"]) <= width
    want, want_grads = jax.jit(jax.value_and_grad(lambda v: reference(v, c)))(variables)
    loss, grads = ours(variables, rng)
    np.testing.assert_allclose(loss, want, rtol=2e-5, atol=1e-5)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5), grads, want_grads
    )


def test_evaluated_encoder_is_the_running_mean_of_the_weights():
  """Evaluators read the mean of the weights after each step (the reference's AveragedModel)."""
  task = ts2vec.Task()
  params = [{"encoder": {"w": np.full(3, v, np.float32)}} for v in (4.0, 1.0, 7.0)]
  state = task.init_state({"params": {"encoder": {"w": np.zeros(3, np.float32)}}}, None)
  for p in params:
    state = task.update_state(state, params=p, model_state={}, outputs={}, step=0)
  assert int(state["count"]) == 3
  np.testing.assert_allclose(task.encoder_variables(params[-1], {}, state)["params"]["w"], 4.0)
  plain = ts2vec.Task(average_weights=False)
  assert plain.init_state({"params": {"encoder": {}}}, None) == {}
  assert plain.encoder_variables({"encoder": {"w": 1}}, {}, {})["params"]["w"] == 1


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


EVALS = dict(
    knn=dict(type="knn", every_steps=6, k=5),
    svm=dict(type="svm", every_steps=6),
    linear_probe=dict(type="linear_probe", every_steps=6, steps=20),
    collapse=dict(type="collapse", every_steps=6, num_images=16),
)


def _evaluated(workdir, step):
  """{metric: value} the evaluators wrote at `step`; every evaluator runs on every modality."""
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  found = {k: v for row in rows if row["step"] == step for k, v in row.items()}
  for key in (
      "knn/accuracy",
      "svm/accuracy",
      "linear_probe/accuracy",
      "collapse/alignment",
      "collapse/effective_rank",
      "collapse/uniformity",
  ):
    assert np.isfinite(found[key]), key
  assert 0 < found["collapse/alignment"]  # the two views differ
  return found


def test_resume_equals_uninterrupted_run(data_path, tmp_path):
  """... and the evaluators (kNN, SVM, probe, collapse with the series' own views) run on series."""
  c = tiny_config(data_path)
  for name, spec in EVALS.items():
    c.evals[name] = spec
  whole = train.train(c, str(tmp_path / "whole"))
  _evaluated(str(tmp_path / "whole"), 6)
  interrupted = str(tmp_path / "interrupted")
  train.train(c, interrupted)
  shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
  with open(os.path.join(interrupted, "metrics.jsonl")) as f:
    kept = [line for line in f if json.loads(line)["step"] <= 4]
  with open(os.path.join(interrupted, "metrics.jsonl"), "w") as f:
    f.writelines(kept)
  resumed = train.train(c, interrupted)
  want, got = _losses(str(tmp_path / "whole")), _losses(interrupted)
  assert sorted(got) == list(range(1, 7))
  for step in range(1, 7):
    assert got[step] == want[step], f"step {step}: resumed {got[step]} != {want[step]}"
  same = jax.tree.map(
      np.array_equal,
      jax.device_get(resumed.state.task_state),
      jax.device_get(whole.state.task_state),
  )
  assert all(jax.tree.leaves(same))


def test_end_to_end_beats_the_majority_class(data_path, tmp_path):
  """configs/ts2vec_ucr.py (tiny): pre-train, SVM protocol, study; results.json in the schema."""
  c = tiny_config(data_path, total_steps=20)
  experiment.run(c, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    results = json.load(f)
  majority = 1 / 3
  assert results["test_accuracy"] >= majority + 0.25, results["test_accuracy"]
  assert results["svm_C"] == np.inf and results["iterations"] == 20  # 24 series: no search
  assert results["num_classes"] == 3 and results["features"] == 2 and results["length"] == 16
  assert results["train_seconds"] > 0 and results["study_seconds"] > 0
  rows = results["label_efficiency"]
  assert [r["method"] for r in rows if r["labels_per_class"] == 1] == list(
      c.label_efficiency.methods
  )
  assert sorted({r["labels_per_class"] for r in rows}) == [1, 8]  # 1 and all (8 per class)
  assert all(r["all_labels"] for r in rows if r["labels_per_class"] == 8)
  assert all(0 <= r["accuracy_mean"] <= 1 for r in rows)
  # the deterministic methods fit "every label" once; the trained ones once per draw
  assert {r["method"]: r["n_draws"] for r in rows if r["labels_per_class"] == 8} == {
      "ssl_svm": 1,
      "supervised_scratch": 2,
      "nn1_euclidean": 1,
      "raw_logreg": 1,
  }
  assert all(r["trainable_params"] <= r["total_params"] for r in rows)
  assert os.path.isfile(tmp_path / "label_efficiency.png")
