"""End to end on real MNIST digits: a short SimCLR pre-train beats a random encoder; the main job
runs with every fine-tuning method; the standalone fine-tuning command works on its checkpoint."""

import json
import os

import jax
import numpy as np
import pytest

from ssl_jax import checkpoint
from ssl_jax import config as config_lib
from ssl_jax import experiment
from ssl_jax import main as main_lib
from ssl_jax import models
from ssl_jax.data import subsets
from ssl_jax.evaluators import knn
from ssl_jax.finetune import linear
from ssl_jax.finetune import inputs
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import standalone

STUDIED = (
    "ssl_linear_probe",
    "ssl_finetune",
    "ssl_finetune_last",
    "ssl_lora",
    "supervised_scratch",
    "pixels_logreg",
    "ssl_distill",
)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("e2e"))
  config, _ = main_lib.parse(
      [
          "--config=configs/default.py",
          f"--workdir={workdir}",
          "--config.total_steps=60",
          "--config.global_batch_size=128",
          "--config.mesh.data=1",  # 8 simulated devices on 2 cores are 4x slower
          "--config.log_every_steps=20",
          "--config.checkpoint_every_steps=1000",
          "--config.label_efficiency.labels_per_class=(1,10)",
          "--config.label_efficiency.num_draws=2",
          f"--config.label_efficiency.methods={STUDIED}",
          "--config.finetune.steps=20",
          "--config.finetune.eval_every=10",
          "--config.finetune.distill_steps=10",
          "--config.finetune.distill_batch_size=32",
          "--config.finetune.kfold=2",
          "--config.finetune.cv_single_point=True",
          "--config.finetune.grid.full.learning_rate=(0.003,)",
          "--config.finetune.grid.full.weight_decay=(0.0,)",
      ]
  )
  return config, workdir, experiment.run(config, workdir)


def test_pretraining_beats_random_encoder(pretrained):
  config, _, run = pretrained
  comps = run.components
  random_state = comps.init_state(jax.random.PRNGKey(123))
  train_x, train_y = run.train_source.arrays()
  test_x, test_y = run.test_source.arrays()
  rng = np.random.default_rng(0)
  few = np.concatenate(
      [rng.choice(np.flatnonzero(train_y == c), 10, replace=False) for c in range(10)]
  )
  scores = {}
  for name, state in (("ssl", run.state), ("random", random_state)):
    feats_train = comps.features_of(state, train_x)
    feats_test = comps.features_of(state, test_x)
    predicted = knn.predict(
        feats_train, train_y, feats_test, num_classes=10, k=200, temperature=0.1
    )
    probe = linear.fit(
        feats_train[few],
        train_y[few],
        num_classes=10,
        mesh=None,
        steps=500,
        learning_rate=0.05,
        weight_decay=1e-4,
    )
    scores[name] = {
        "knn": float(np.mean(predicted == test_y)),
        "probe_10_per_class": linear.accuracy(probe, feats_test, test_y),
    }
  print(scores)
  assert scores["ssl"]["knn"] > scores["random"]["knn"] + 0.05, scores
  assert scores["ssl"]["probe_10_per_class"] > scores["random"]["probe_10_per_class"] + 0.05, scores


def test_main_job_writes_results_and_plot(pretrained):
  _, workdir, _ = pretrained
  results = json.load(open(os.path.join(workdir, "results.json")))
  rows = results["label_efficiency"]
  cells = {(r["labels_per_class"], r["method"]) for r in rows}
  assert cells == {(b, m) for b in (1, 10) for m in STUDIED}
  assert set(config_lib.base_config().label_efficiency.methods) < set(STUDIED)
  for r in rows:
    assert r["n_draws"] == 2 and 0.0 <= r["accuracy_mean"] <= 1.0 and len(r["accuracies"]) == 2
    assert 0 < r["trainable_params"] <= r["total_params"] and r["hyperparameters"]
    if r["mode"] != "distill":  # 2 folds need 2 per class
      assert ("cv_accuracy_mean" in r) == (r["labels_per_class"] == 10)
  cell = {(r["labels_per_class"], r["method"]): r for r in rows}
  full, last, lora = (
      cell[10, m]["trainable_params"] for m in ("ssl_finetune", "ssl_finetune_last", "ssl_lora")
  )
  assert lora < 0.1 * full and last < full
  assert cell[10, "ssl_finetune"]["total_params"] == full
  assert cell[10, "ssl_lora"]["hyperparameters"]["learning_rate"] == 1e-2  # the per-mode grid
  assert 1 <= cell[10, "ssl_finetune"]["hyperparameters"]["stop_at"] <= 20  # from early stopping
  distilled = cell[10, "ssl_distill"]  # the teacher's learning rate, its own steps, no CV
  assert (
      distilled["hyperparameters"]["learning_rate"] == 3e-3 and "cv_accuracy_mean" not in distilled
  )
  assert distilled["hyperparameters"]["distill_steps"] == 10 and distilled["mode"] == "distill"
  assert os.path.getsize(os.path.join(workdir, "label_efficiency.png")) > 1000
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["step"] for l in lines if "loss" in l] == [20, 40, 60]
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_finetune_starts_from_the_pretrained_encoder(pretrained):
  config, _, run = pretrained
  train_x, _ = run.train_source.arrays()
  model = model_lib.Model(
      models.build_encoder(config.model, image_size=28),
      num_classes=10,
      mesh=run.components.mesh,
      inputs=inputs.for_arrays(train_x),
      example=train_x,
  )
  encoder = run.components.encoder_variables(run.state)
  tuned, scratch = model.init(0, encoder), model.init(0)
  for collection in ("params", "batch_stats"):
    same = jax.tree.map(
        np.array_equal, tuned[collection]["encoder"], jax.device_get(encoder[collection])
    )
    assert all(jax.tree.leaves(same))
  differs = jax.tree.map(
      lambda a, b: not np.array_equal(a, b),
      scratch["params"]["encoder"],
      jax.device_get(encoder["params"]),
  )
  assert any(jax.tree.leaves(differs))
  assert all(
      jax.tree.leaves(
          jax.tree.map(np.array_equal, tuned["params"]["head"], scratch["params"]["head"])
      )
  )


def test_standalone_finetune_of_the_checkpoint(pretrained, tmp_path):
  config, workdir, run = pretrained
  _, labels = run.train_source.arrays()
  subset = subsets.write(str(tmp_path / "subset.txt"), subsets.per_class(labels, 4, seed=0))
  out = str(tmp_path / "lora")
  results = standalone.main(
      [
          "--config=configs/default.py",
          f"--workdir={out}",
          "--config.mesh.data=1",
          f"--config.finetune.init_from={workdir}/checkpoints",
          f"--config.data.train_subset={subset}",
          "--config.finetune.mode=lora",
          "--config.finetune.steps=12",
          "--config.finetune.eval_every=6",
          "--config.finetune.kfold=2",
          "--config.log_every_steps=6",
      ]
  )
  saved = json.load(open(os.path.join(out, "results.json")))
  assert saved["labelled_examples"] == 40 and saved["cv_folds"] == 2
  assert saved["test_accuracy"] == results["test_accuracy"] and 0 <= saved["test_accuracy"] <= 1
  assert saved["hyperparameters"]["lora_rank"] == 4 and "cv_accuracy_std" in saved
  assert saved["trainable_params"] < 0.1 * saved["total_params"]
  curve = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
  stop = saved["hyperparameters"]["stop_at"]  # the median of the folds' best steps
  assert [l["step"] for l in curve if "loss" in l] == sorted({*range(6, stop + 1, 6), stop})
  assert curve[-1]["test_accuracy"] == saved["test_accuracy"]
  # the exported classifier (adapters merged) scores what the run reported
  restored = checkpoint.restore_params(os.path.join(out, "checkpoints"))
  test_x, test_y = run.test_source.arrays()
  model = model_lib.Model(
      models.build_encoder(config.model, image_size=28),
      num_classes=10,
      mesh=run.components.mesh,
      inputs=inputs.for_arrays(test_x),
      example=test_x,
  )
  variables = {"params": restored["params"], **restored["model_state"]}
  assert model.accuracy(variables, test_x, test_y) == saved["test_accuracy"]
