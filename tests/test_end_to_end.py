"""End to end on real MNIST digits: a short SimCLR pre-train beats a random encoder; the main job runs."""
import json
import os

import jax
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import experiment
from ssl_jax import label_efficiency
from ssl_jax import main as main_lib
from ssl_jax import train
from ssl_jax.evaluators import knn
from ssl_jax.evaluators import linear_probe


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("e2e"))
  config, _ = main_lib.parse(["--config=configs/default.py", f"--workdir={workdir}",
                              "--config.total_steps=60", "--config.global_batch_size=128",
                              "--config.mesh.data=1",  # 8 simulated devices on 2 cores are 4x slower
                              "--config.log_every_steps=20", "--config.checkpoint_every_steps=1000",
                              "--config.label_efficiency.labels_per_class=(1,10)",
                              "--config.label_efficiency.num_draws=2",
                              "--config.label_efficiency.scratch_steps=20"])
  return config, workdir, experiment.run(config, workdir)


def test_pretraining_beats_random_encoder(pretrained):
  config, _, run = pretrained
  comps = run.components
  random_state = comps.init_state(jax.random.PRNGKey(123))
  train_x, train_y = run.train_source.arrays()
  test_x, test_y = run.test_source.arrays()
  rng = np.random.default_rng(0)
  few = np.concatenate([rng.choice(np.flatnonzero(train_y == c), 10, replace=False) for c in range(10)])
  scores = {}
  for name, state in (("ssl", run.state), ("random", random_state)):
    feats_train = comps.features_of(state, train_x)
    feats_test = comps.features_of(state, test_x)
    predicted = knn.predict(feats_train, train_y, feats_test, num_classes=10, k=200, temperature=0.1)
    probe = linear_probe.fit(feats_train[few], train_y[few], 10)
    scores[name] = {"knn": float(np.mean(predicted == test_y)),
                    "probe_10_per_class": linear_probe.accuracy(probe, feats_test, test_y)}
  print(scores)
  assert scores["ssl"]["knn"] > scores["random"]["knn"] + 0.05, scores
  assert scores["ssl"]["probe_10_per_class"] > scores["random"]["probe_10_per_class"] + 0.05, scores


def test_main_job_writes_results_and_plot(pretrained):
  _, workdir, _ = pretrained
  results = json.load(open(os.path.join(workdir, "results.json")))
  rows = results["label_efficiency"]
  assert {(r["labels_per_class"], r["method"]) for r in rows} == {
      (lpc, m) for lpc in (1, 10) for m in label_efficiency.METHODS}
  for r in rows:
    assert r["n_draws"] == 2 and 0.0 <= r["accuracy_mean"] <= 1.0 and len(r["accuracies"]) == 2
  assert os.path.getsize(os.path.join(workdir, "label_efficiency.png")) > 1000
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [l["step"] for l in lines if "loss" in l] == [20, 40, 60]
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_finetune_starts_from_the_pretrained_encoder(pretrained):
  config, _, run = pretrained
  trainer = label_efficiency.ScratchTrainer(config, run.components.batch_sharding)
  encoder = label_efficiency.encoder_variables(run.state)
  tuned = trainer.initial_state((28, 28, 1), seed=0, encoder=encoder)
  scratch = trainer.initial_state((28, 28, 1), seed=0)
  same = jax.tree.map(np.array_equal, jax.device_get(tuned["params"]["encoder"]),
                      jax.device_get(run.state.params["encoder"]))
  assert all(jax.tree.leaves(same))
  stats = jax.tree.map(np.array_equal, jax.device_get(tuned["model_state"]["batch_stats"]["encoder"]),
                       jax.device_get(run.state.model_state["batch_stats"]["encoder"]))
  assert all(jax.tree.leaves(stats))
  differs = jax.tree.map(lambda a, b: not np.array_equal(a, b), jax.device_get(scratch["params"]["encoder"]),
                         jax.device_get(run.state.params["encoder"]))
  assert any(jax.tree.leaves(differs))
