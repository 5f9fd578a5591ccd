"""FixMatch: the pseudo-label loss against numpy, its threshold, FlexMatch's class-wise thresholds,
the strong view, the step on 1 vs 8 devices, and both study methods end to end."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import sharding as sharding_lib

from ssl_jax import config as config_lib
from ssl_jax.data import sources
from ssl_jax.finetune import fitting
from ssl_jax.finetune import fixmatch
from ssl_jax.finetune import inputs
from ssl_jax.modalities import image
from test_finetune import HP
from test_finetune import _images
from test_finetune import _model
from test_finetune import _pretrained_like


def _numpy_loss(weak, strong, threshold, prior_ratio=None):
  z = weak - weak.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  if prior_ratio is not None:
    p = p * prior_ratio
    p = p / p.sum(-1, keepdims=True)
  mask = p.max(-1) >= threshold
  s = strong - strong.max(-1, keepdims=True)
  log_q = s - np.log(np.exp(s).sum(-1, keepdims=True))
  ce = -log_q[np.arange(len(p)), p.argmax(-1)]
  return float(np.mean(mask * ce)), float(mask.mean())


@pytest.mark.parametrize("align", [False, True])
def test_pseudo_label_loss_matches_numpy(align):
  rng = np.random.default_rng(0)
  weak = (3 * rng.standard_normal((32, 5))).astype(np.float32)
  strong = rng.standard_normal((32, 5)).astype(np.float32)
  ratio = (0.2 / np.array([0.4, 0.1, 0.2, 0.2, 0.1])).astype(np.float32) if align else None
  loss, extra = fixmatch.pseudo_label_loss(
      jnp.asarray(weak), jnp.asarray(strong), 0.7, None if ratio is None else jnp.asarray(ratio)
  )
  want, rate = _numpy_loss(weak.astype(np.float64), strong.astype(np.float64), 0.7, ratio)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  assert float(extra["mask_rate"]) == pytest.approx(rate) and 0 < rate < 1
  # the pseudo-labels are targets: no gradient reaches the weak logits
  grad_weak = jax.grad(lambda w: fixmatch.pseudo_label_loss(w, jnp.asarray(strong), 0.7)[0])(
      jnp.asarray(weak)
  )
  assert not np.any(np.asarray(grad_weak))


def test_threshold_is_honoured():
  # weak confidences exactly 0.5, 0.8 and 0.95 (two classes); strong logits all zero: CE = log 2
  p = np.array([0.5, 0.8, 0.95])
  weak = jnp.asarray(np.stack([np.log(p), np.log(1 - p)], -1), jnp.float32)
  strong = jnp.zeros((3, 2))
  for threshold, kept in ((0.95, 1), (0.8, 2), (0.5, 3), (0.96, 0)):
    loss, extra = fixmatch.pseudo_label_loss(weak, strong, threshold - 1e-6)
    assert float(extra["mask_rate"]) == pytest.approx(kept / 3), threshold
    np.testing.assert_allclose(float(loss), kept / 3 * np.log(2), rtol=1e-6)


def _numpy_flex(pool_labels, threshold, num_classes, previous):
  """FlexMatch's class-wise thresholds as the authors' code computes them (a Counter over the
  records, threshold warm-up: the unused count in the denominator)."""
  counter = collections.Counter(pool_labels.tolist())
  beta = np.array(previous, np.float64)
  if max(counter.values()) < len(pool_labels):
    beta = np.array([counter[c] / max(counter.values()) for c in range(num_classes)])
  return beta, threshold * beta / (2 - beta)


@pytest.mark.parametrize(
    "records",
    [
        [-1] * 10,  # the start: every record unused, beta stays as it was
        [0] * 10,  # one class holds every record: beta stays as it was
        [-1, -1, -1, -1, -1, -1, 0, 0, 1, 2],  # warm-up: the unused count is the largest
        [0, 0, 0, 0, 1, 1, 2, -1, -1, 0],  # class 0 the largest, class 3 never
    ],
)
def test_flex_thresholds_match_the_authors_rule(records):
  records = np.array(records, np.int32)
  previous = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
  beta, thresholds = fixmatch.flex_thresholds(jnp.asarray(records), 0.9, 4, jnp.asarray(previous))
  want_beta, want = _numpy_flex(records, 0.9, 4, previous)
  np.testing.assert_allclose(np.asarray(beta), want_beta, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(thresholds), want, rtol=1e-6)


def test_class_thresholds_apply_by_pseudo_label():
  # class-0 pseudo-labels at confidence 0.6 and 0.9, class-1 ones at 0.6 and 0.9
  p = np.array([[0.6, 0.4], [0.9, 0.1], [0.4, 0.6], [0.1, 0.9]])
  weak, strong = jnp.asarray(np.log(p), jnp.float32), jnp.zeros((4, 2))
  thresholds = jnp.asarray([0.5, 0.8])  # class 1's is stricter: its 0.6 is dropped
  loss, extra = fixmatch.pseudo_label_loss(weak, strong, thresholds)
  assert float(extra["mask_rate"]) == pytest.approx(3 / 4)
  np.testing.assert_allclose(float(loss), 3 / 4 * np.log(2), rtol=1e-6)
  want, _ = _numpy_loss(np.log(p), np.zeros((4, 2)), 0.0)  # all kept at threshold 0
  loss_all, _ = fixmatch.pseudo_label_loss(weak, strong, jnp.zeros(2))
  np.testing.assert_allclose(float(loss_all), want, rtol=1e-6)


def test_strong_view_erases_a_square_and_keeps_shape():
  x = np.full((4, 16, 16, 1), 255, np.uint8)
  erased = np.asarray(inputs.erase(jax.random.PRNGKey(0), jnp.ones((4, 16, 16, 1)), size=0.4))
  assert erased.shape == (4, 16, 16, 1)
  zeros = (erased == 0).sum(axis=(1, 2, 3))
  assert np.all(zeros > 0) and np.all(zeros <= 7 * 7)  # one square of side round(6.4), clipped
  strong = inputs.Images(image_size=16).strong(jax.random.PRNGKey(1), jnp.asarray(x))
  assert strong.shape == (4, 16, 16, 1) and float(strong.min()) == 0.0
  # finetune.strong sets its strength: no erasing, no crop, no affine change leaves white images
  c = config_lib.base_config()
  c.finetune.strong.erase, c.finetune.strong.crop_scale = 0.0, (1.0, 1.0)
  c.finetune.strong.rotate_degrees = c.finetune.strong.shear_degrees = 0.0
  c.finetune.strong.translate = 0.0
  plain = inputs.Images(image_size=16, strong=c.finetune.strong)
  np.testing.assert_allclose(np.asarray(plain.strong(jax.random.PRNGKey(1), jnp.asarray(x))), 1.0)
  with pytest.raises(ValueError, match="finetune.strong has \\['eras'\\]; accepted keys"):
    inputs.Images(strong={"eras": 0.1})


def _finetuner(mesh_data, flex_pool=0, ema=0.0):
  model = _model(mesh_data)
  key = ("fixmatch-test", flex_pool, ema)
  if key not in model.finetuners:
    model.finetuners[key] = fixmatch.FixMatchFinetuner(
        model, batch_size=8, unlabeled_ratio=2, align=True, flex_pool=flex_pool, ema=ema
    )
  return model.finetuners[key]


def test_ema_update_matches_numpy_with_its_warm_up():
  rng = np.random.default_rng(8)
  weights = [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(4)]
  average, want = {"w": jnp.asarray(weights[0])}, weights[0].astype(np.float64)
  for t, w in enumerate(weights[1:], start=1):
    average = fixmatch.ema_update(average, {"w": jnp.asarray(w)}, 0.999, t)
    d = min(0.999, (1 + t) / (10 + t))  # 2/11, 3/12, 4/13: the warm-up, below the decay
    want = d * want + (1 - d) * w
  np.testing.assert_allclose(np.asarray(average["w"]), want, rtol=1e-6)
  late = fixmatch.ema_update({"w": jnp.zeros(())}, {"w": jnp.ones(())}, 0.9, 10_000)
  assert float(late["w"]) == pytest.approx(0.1)  # the decay itself once the warm-up passes it
  with pytest.raises(ValueError, match="fixmatch_ema=1.0; accepted: 0 \\(off\\) or a decay"):
    fixmatch.FixMatchFinetuner(_model(1), batch_size=8, ema=1.0)


def test_fixmatch_with_ema_returns_the_average_of_its_weights():
  finetuner = _finetuner(1, ema=0.9)
  x, y = _images(8, seed=3)
  pool, _ = _images(16, seed=4)
  state = finetuner.init_state(_pretrained_like(_model(1).init(2)), seed=2)
  hp_values = {**HP, "fixmatch_threshold": 0.3, "fixmatch_weight": 1.0}
  hp = jax.device_put({k: np.float32(hp_values[k]) for k in fixmatch.TRACED})
  want = jax.device_get(state["trainable"])
  for step in range(1, 3):
    batch = {"x": x, "y": y, "u": pool}
    state, _ = finetuner._step(state, batch, hp)  # pylint: disable=protected-access
    d = min(0.9, (1 + step) / (10 + step))
    weights = jax.device_get(state["trainable"])
    want = jax.tree.map(lambda a, w: d * a + (1 - d) * w, want, weights)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      jax.device_get(state["ema"]),
      want,
  )
  exported = finetuner._export(state)  # pylint: disable=protected-access
  kernel = [p for p in want if p.endswith("kernel")][-1]
  flat = {
      "/".join(k.key for k in path): v
      for path, v in jax.tree_util.tree_leaves_with_path(exported["params"])
  }
  np.testing.assert_allclose(np.asarray(flat[kernel]), want[kernel], rtol=1e-5, atol=1e-7)
  assert not np.allclose(want[kernel], weights[kernel])  # the average, not the last weights


@pytest.mark.parametrize("flex", [False, True])
def test_fixmatch_step_on_8_devices_equals_one_device(flex):
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  x, y = _images(8, seed=3)
  pool, _ = _images(24, seed=4)
  hp_values = {**HP, "fixmatch_threshold": 0.3, "fixmatch_weight": 1.0}
  index = [np.arange(16, dtype=np.int32), np.arange(8, 24, dtype=np.int32)[::-1]]
  results = []
  for mesh_data in (1, 8):
    finetuner = _finetuner(mesh_data, flex_pool=len(pool) if flex else 0, ema=0.999 * flex)
    model = finetuner.model
    state = finetuner.init_state(_pretrained_like(_model(1).init(2)), seed=2)
    hp = jax.device_put({k: np.float32(hp_values[k]) for k in fixmatch.TRACED}, model.replicated)
    for step in range(2):
      batch = {"x": x, "y": y, "u": pool[index[step]]}
      if flex:
        batch["u_index"] = index[step]
      batch = jax.device_put(batch, model.batch_sharding)
      state, metrics = finetuner._step(state, batch, hp)  # pylint: disable=protected-access
    results.append(
        (
            jax.device_get(state["trainable"]),
            jax.device_get(state["weak_mean"]),
            {k: float(v) for k, v in metrics.items()},
            jax.device_get(state.get("pool_labels")),
            jax.device_get(state.get("ema")),
        )
    )
  (p1, w1, m1, r1, e1), (p8, w8, m8, r8, e8) = results
  assert 0 < m1["mask_rate"] <= 1  # the unlabelled term took part
  for k in ("loss", "mask_rate"):
    np.testing.assert_allclose(m8[k], m1[k], rtol=1e-5)
  np.testing.assert_allclose(w8, w1, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4), p8, p1)
  if flex:  # the records: the drawn rows confident above 0.3 hold a class, the others none
    np.testing.assert_array_equal(r8, r1)
    assert np.all(r1 >= 0) and 0 < m1["class_beta_min"] <= 1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4), e8, e1)


def test_both_fixmatch_methods_run_in_the_study():
  x, y = _images(48, seed=5)
  train_source = sources.ArraySource(x[:32], y[:32])
  test_source = sources.ArraySource(x[32:], y[32:])
  c = config_lib.base_config()
  c.model.depth, c.model.width_multiplier, c.model.stem = 10, 0.125, "small_stride2"
  c.data.num_classes, c.data.image_size = 4, 16
  c.mesh.data = 1
  c.label_efficiency.methods = ("ssl_fixmatch", "scratch_fixmatch", "ssl_labelprop")
  c.label_efficiency.labels_per_class = (1,)
  c.label_efficiency.num_draws = 1
  c.finetune.fixmatch_steps = 3
  c.finetune.fixmatch_batch_size = 4
  c.finetune.fixmatch_unlabeled_ratio = 2
  c.finetune.fixmatch_labelprop = 2  # label propagation's 2 surest (1 at this budget, below)
  # the control without the start, with FlexMatch's thresholds (each method its own settings)
  c.finetune.per_method = dict(scratch_fixmatch=dict(fixmatch_labelprop=0, fixmatch_flex=True))
  # the budget's own schedule and weight average (finetune.per_budget), under the method's settings
  c.finetune.per_budget = {"1": dict(fixmatch_steps=4, fixmatch_ema=0.99, fixmatch_labelprop=1)}
  c.finetune.labelprop_neighbors = 4  # FixMatch's start; ssl_labelprop takes its grid's
  c.finetune.grid.labelprop = dict(labelprop_neighbors=(6,), labelprop_alpha=())
  encoder = _pretrained_like(_model(1).init(0))
  pretrained = {k: v["encoder"] for k, v in encoder.items()}
  sharding = jax.sharding.NamedSharding(sharding_lib.make_mesh(c), jax.sharding.PartitionSpec())
  features_of = lambda images: _model(1).features(pretrained, images)
  rows = image.study_rows(
      c, features_of, train_source, test_source, sharding.mesh, pretrained_encoder=pretrained
  )
  by_method = {r["method"]: r for r in rows}
  assert set(by_method) == {"ssl_fixmatch", "scratch_fixmatch", "ssl_labelprop"}
  for name, start, flex in (("ssl_fixmatch", 1, False), ("scratch_fixmatch", 0, True)):
    row = by_method[name]
    assert row["mode"] == "fixmatch" and 0 <= row["accuracy_mean"] <= 1
    assert row["hyperparameters"]["steps"] == 4 and row["hyperparameters"]["fixmatch_ema"] == 0.99
    assert row["hyperparameters"]["fixmatch_threshold"] == 0.95
    assert row["hyperparameters"]["fixmatch_labelprop"] == start
    assert row["hyperparameters"]["fixmatch_flex"] == flex
    assert row["trainable_params"] == row["total_params"]
  row = by_method["ssl_labelprop"]
  assert row["mode"] == "labelprop" and 0 <= row["accuracy_mean"] <= 1
  assert row["trainable_params"] == 0 and row["total_params"] > 0
  assert row["hyperparameters"] == {"labelprop_neighbors": 6, "labelprop_alpha": 0.7}


def test_labelprop_start_adds_the_surest_pool_rows():
  x, y = _images(4, seed=6)
  pool, _ = _images(24, seed=7)
  c = config_lib.base_config()
  encoder = _pretrained_like(_model(1).init(0))
  method = fitting.FixMatchMethod(
      _model(1), c.finetune, pool, init={k: v["encoder"] for k, v in encoder.items()}
  )
  hp = {**method.defaults(c.finetune), "fixmatch_labelprop": 3, "labelprop_neighbors": 5}
  px, py = method.propagated(hp, x, y, seed=0)
  assert np.array_equal(px[:4], x) and np.array_equal(py[:4], y)
  assert 4 < len(px) <= 4 + 3 * 4 and len(px) == len(py)
  added = {bytes(row) for row in px[4:]}
  assert added <= {bytes(row) for row in pool}  # pool images, each once
  assert len(added) == len(px) - 4
