"""Contrastive few-label fine-tuning (SetFit's recipe): the pair loss against numpy, the step on 1
vs 8 devices, the stage pulling a class together, and the mode on image and series encoders."""

import jax
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import models
from ssl_jax import sharding as sharding_lib
from ssl_jax.data import sources
from ssl_jax.finetune import contrastive
from ssl_jax.finetune import inputs
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import step as step_lib
from ssl_jax.modalities import image
from test_finetune import HP
from test_finetune import _images
from test_finetune import _model
from test_finetune import _pretrained_like


def _numpy_pair_loss(features, labels):
  """SetFit's CosineSimilarityLoss, (cos - target)^2, averaged over the positive and the negative
  pairs separately, then over the kinds of pair present."""
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  positive, negative = [], []
  for i in range(len(z)):
    for j in range(len(z)):
      if i == j:
        continue
      cos = float(z[i] @ z[j])
      (positive if labels[i] == labels[j] else negative).append(cos)
  terms = [np.mean((np.asarray(p) - 1.0) ** 2) for p in (positive,) if p]
  terms += [np.mean(np.asarray(n) ** 2) for n in (negative,) if n]
  return float(np.mean(terms))


@pytest.mark.parametrize(
    "labels",
    [[0, 1, 2, 0, 1, 2, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7], [3, 3, 3, 3, 3, 3, 3, 3]],
    ids=["mixed", "no_positive_pair", "one_class"],
)
def test_pair_loss_matches_numpy(labels):
  rng = np.random.default_rng(0)
  features = rng.standard_normal((8, 6)).astype(np.float32) + np.float32(0.5)
  loss, extra = jax.jit(contrastive.pair_loss)(features, np.asarray(labels, np.int32))
  np.testing.assert_allclose(float(loss), _numpy_pair_loss(features, labels), rtol=1e-5)
  assert -1 <= float(extra["positive_cosine"]) <= 1 and -1 <= float(extra["negative_cosine"]) <= 1


def _finetuner(mesh_data):
  model = _model(mesh_data)
  key = ("contrastive-test",)
  if key not in model.finetuners:
    model.finetuners[key] = contrastive.ContrastiveFinetuner(model, batch_size=16, augment=False)
  return model.finetuners[key]


def test_contrastive_step_on_8_devices_equals_one_device():
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  x, y = _images(16, seed=8)
  results = []
  for mesh_data in (1, 8):
    finetuner = _finetuner(mesh_data)
    model = finetuner.model
    state = finetuner.init_state(_pretrained_like(_model(1).init(2)), seed=2)
    hp = jax.device_put({k: np.float32(HP[k]) for k in step_lib.TRACED}, model.replicated)
    losses = []
    for step in range(2):
      batch = jax.device_put({"x": x[::-1] if step else x, "y": y}, model.batch_sharding)
      state, metrics = finetuner._step(state, batch, hp)  # pylint: disable=protected-access
      losses.append(float(metrics["loss"]))
    results.append((jax.device_get(state["trainable"]), losses))
  (p1, l1), (p8, l8) = results
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4), p8, p1)
  # the head is not in the loss: it keeps its initial weights up to the decoupled weight decay
  head = _pretrained_like(_model(1).init(2))["params"]["head"]["kernel"]
  decayed = head * (1 - HP["learning_rate"] * HP["weight_decay"]) ** 2
  np.testing.assert_allclose(p1["head/kernel"], decayed, rtol=1e-3, atol=1e-6)


def test_contrastive_stage_pulls_each_class_together_on_series():
  """A tiny dilated-conv series encoder: the pair loss falls over the contrastive stage, and the
  method's fit (stage + head) scores its training labels above chance."""
  rng = np.random.default_rng(0)
  t = np.linspace(0, 4 * np.pi, 24, dtype=np.float32)
  y = np.arange(24) % 3
  x = np.stack([np.sin((c + 1) * t) + 0.2 * rng.standard_normal(24) for c in y])[..., None]
  c = config_lib.base_config()
  c.model.name, c.model.depth, c.model.hidden_dims, c.model.repr_dims = "ts_dilated_conv", 2, 8, 8
  c.mesh.data = 1
  model = model_lib.Model(
      models.build_encoder(c.model),
      num_classes=3,
      mesh=sharding_lib.make_mesh(c),
      inputs=inputs.Series(),
      example=x.astype(np.float32),
      eval_batch_size=24,
  )
  ft = c.finetune
  ft.contrastive_steps, ft.contrastive_batch_size, ft.contrastive_learning_rate = 40, 8, 3e-3
  method = contrastive.ContrastiveMethod(model, ft)
  hp = method.defaults(ft)
  fitted = method.fit(hp, x, y.astype(np.int32), seed=0, val=(x, y), log_every=1)
  losses = [h["loss"] for h in fitted.history]
  assert len(losses) == 40 and np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
  assert fitted.val_accuracy > 0.6
  assert method.score(fitted, x, y) == fitted.val_accuracy
  assert method.counts(hp)[0] == model.num_params()


def test_contrastive_methods_run_in_the_image_study():
  x, y = _images(40, seed=9)
  train_source = sources.ArraySource(x[:24], y[:24])
  test_source = sources.ArraySource(x[24:], y[24:])
  c = config_lib.base_config()
  c.model.depth, c.model.width_multiplier, c.model.stem = 10, 0.125, "small_stride2"
  c.data.num_classes, c.data.image_size = 4, 16
  c.mesh.data = 1
  c.label_efficiency.methods = ("ssl_contrastive",)
  c.label_efficiency.labels_per_class = (2,)
  c.label_efficiency.num_draws = 1
  c.finetune.per_method = {"ssl_contrastive": {"contrastive_steps": 2, "contrastive_epochs": 8.0}}
  c.finetune.contrastive_batch_size = 16
  c.finetune.probe_steps = 10
  encoder = _pretrained_like(_model(1).init(0))
  pretrained = {k: v["encoder"] for k, v in encoder.items()}
  mesh = sharding_lib.make_mesh(c)
  rows = image.study_rows(
      c,
      lambda images: _model(1).features(pretrained, images),
      train_source,
      test_source,
      mesh,
      pretrained_encoder=pretrained,
  )
  (row,) = rows
  assert row["method"] == "ssl_contrastive" and row["mode"] == "contrastive"
  assert 0 <= row["accuracy_mean"] <= 1 and row["trainable_params"] == row["total_params"]
  # 8 passes over 8 labels at 16 a step: the schedule grows from 2 to 4 steps
  assert row["hyperparameters"]["steps"] == 4 and row["hyperparameters"]["learning_rate"] == 2e-5
