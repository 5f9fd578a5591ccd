"""Fine-tuning: label smoothing, k-fold CV, layer units, LoRA, frozen parameters, 1 vs 8 devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_jax import sharding as sharding_lib

from ssl_jax import config as config_lib
from ssl_jax.modalities import image
from ssl_jax import models
from ssl_jax.finetune import inputs
from ssl_jax.finetune import fitting
from ssl_jax.finetune import kfold
from ssl_jax.finetune import layers
from ssl_jax.finetune import lora
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import objectives
from ssl_jax.finetune import protocol
from ssl_jax.finetune import step as step_lib

HP = dict(
    learning_rate=3e-3,
    weight_decay=1e-2,
    label_smoothing=0.1,
    steps=4,
    backbone_lr_multiplier=0.1,
    layer_decay=0.5,
    distill_temperature=1.0,
)


def _config(mesh_data=1):
  c = config_lib.base_config()
  c.model.depth = 10
  c.model.width_multiplier = 0.125
  c.model.stem = "small_stride2"
  c.mesh.data = mesh_data
  return c


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (n, 16, 16, 1), dtype=np.uint8), (np.arange(n) % 4).astype(np.int32)


_MODELS = {}


def _pretrained_like(variables):
  """Random variables with unit BatchNorm scales: ResNet blocks start with their last scale at 0,
  which would give a block's (frozen-scale) convolutions zero gradient."""
  flat = layers.flatten(variables["params"])
  flat = {p: np.ones_like(v) if p.endswith("/scale") else v for p, v in flat.items()}
  return {**variables, "params": layers.unflatten(flat)}


def _model(mesh_data=1):
  """A tiny ResNet-10 classifier on 16x16 grey images, one per mesh, shared by the tests."""
  if mesh_data not in _MODELS:
    c = _config(mesh_data)
    x, _ = _images(2)
    _MODELS[mesh_data] = model_lib.Model(
        models.build_encoder(c.model, image_size=16),
        num_classes=4,
        mesh=sharding_lib.make_mesh(c),
        inputs=inputs.Images(image_size=16, crop_scale=(0.5, 1.0)),
        example=x,
        eval_batch_size=16,
    )
  return _MODELS[mesh_data]


def _finetuner(mode, mesh_data=1, **kwargs):
  model = _model(mesh_data)
  key = (mode, tuple(sorted(kwargs.items())))
  if key not in model.finetuners:
    kwargs.setdefault("lora_regex", config_lib.base_config().finetune.lora_regex)
    # no augmentation: a smaller program to compile (the end-to-end test runs it)
    model.finetuners[key] = step_lib.Finetuner(model, mode, batch_size=16, augment=False, **kwargs)
  return model.finetuners[key]


def test_label_smoothing_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32)
  labels = rng.integers(0, 5, 6)
  for smoothing in (0.0, 0.1, 0.3):
    targets = np.full((6, 5), smoothing / 5) + (1 - smoothing) * np.eye(5)[labels]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -(targets * log_p).sum(-1).mean()
    got = objectives.smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_distillation_loss_matches_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(6, 5)).astype(np.float32)
  teacher = rng.dirichlet(np.ones(5), 6).astype(np.float32)
  for temperature in (1.0, 2.0):
    z = logits / temperature
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    want = -(teacher * log_p).sum(-1).mean()
    got = objectives.distillation_loss(jnp.asarray(logits), jnp.asarray(teacher), temperature)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_one_hot_soft_targets_train_exactly_like_their_labels():
  """The distillation path of the step (float (N, C) targets) at temperature 1 and one-hot
  targets is the label path without smoothing: same loss, same weights after two steps."""
  finetuner = _finetuner("full")
  model = finetuner.model
  x, y = _images(16, seed=3)
  variables = _pretrained_like(model.init(3))
  hp = {**HP, "label_smoothing": 0.0}
  hard = finetuner.fit(variables, x, y, hp=hp, seed=3, log_every=1)
  soft = finetuner.fit(variables, x, np.eye(4, dtype=np.float32)[y], hp=hp, seed=3, log_every=1)
  assert [h["loss"] for h in soft.history] == pytest.approx(
      [h["loss"] for h in hard.history], rel=1e-6
  )
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
      jax.device_get(soft.variables),
      jax.device_get(hard.variables),
  )


def test_distillation_targets_are_the_teachers_probabilities_and_the_labels():
  model = _model()
  ft = ml_collections.ConfigDict(config_lib.base_config().finetune.to_dict())
  ft.update(augment=False, distill_steps=3, distill_batch_size=16, distill_temperature=2.0)
  pool, _ = _images(24, seed=4)
  teacher = step_lib.Fit(_pretrained_like(model.init(4)), {}, 0, 0, float("nan"), [])
  method = fitting.DistillMethod(fitting.EncoderMethod(model, "full", ft), "ssl_finetune", pool)
  subset, labels = np.array([2, 7]), np.array([3, 0])
  hp = method.hyperparameters({**protocol.defaults(ft), "stop_at": 2, "learning_rate": 1e-3})
  assert (hp["steps"], hp["batch_size"], hp["stop_at"], hp["learning_rate"]) == (3, 16, None, 1e-3)
  budget = ml_collections.ConfigDict({**ft.to_dict(), "distill_steps": 5})  # a budget's settings
  assert method.hyperparameters(protocol.defaults(ft), budget)["steps"] == 5
  targets = method.targets(teacher, subset, labels, 2.0)
  logits = (
      np.asarray(model.module.apply(teacher.variables, model.inputs.preprocess(pool)), np.float64)
      / 2.0
  )
  want = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want[subset] = np.eye(4)[labels]
  np.testing.assert_allclose(targets, want, rtol=1e-4, atol=1e-6)
  fitted = method.fit(hp, pool[subset], labels, seed=0, teacher_fit=teacher, subset=subset)
  assert fitted.steps_run == 3
  assert method.counts(hp)[0] == model.num_params()
  assert protocol.reported("distill", hp) == {
      "learning_rate": 1e-3,
      "weight_decay": ft.weight_decay,
      "distill_steps": 3,
      "distill_batch_size": 16,
      "distill_temperature": 2.0,
  }


def test_a_distilling_method_needs_its_teacher_in_the_study():
  c = config_lib.base_config()
  c.label_efficiency.methods = ("supervised_scratch", "ssl_distill")
  with pytest.raises(
      ValueError, match="ssl_distill, which distils ssl_finetune's fit .* add " "'ssl_finetune'"
  ):
    image.check(c)
  c.label_efficiency.methods = ("supervised_scratch", "scratch_distill")
  image.check(c)


def test_kfold_is_stratified_disjoint_and_deterministic():
  labels = np.repeat(np.arange(4), [5, 7, 3, 9])
  folds = kfold.stratified_folds(labels, 3, seed=1)
  assert len(folds) == 3
  val = np.concatenate([v for _, v in folds])
  assert sorted(val) == list(range(len(labels)))  # disjoint and covering
  for train_idx, val_idx in folds:
    assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == len(labels)
  for c, count in enumerate([5, 7, 3, 9]):
    per_fold = [np.sum(labels[v] == c) for _, v in folds]
    assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == count
  sizes = [len(v) for _, v in folds]
  assert max(sizes) - min(sizes) <= 1
  again = kfold.stratified_folds(labels, 3, seed=1)
  assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
  other = kfold.stratified_folds(labels, 3, seed=2)
  assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
  with pytest.raises(ValueError, match="finetune.kfold=4: class 2 has only 3"):
    kfold.stratified_folds(labels, 4, seed=0)
  assert not kfold.can_split(labels, 4) and kfold.can_split(labels, 3)


def test_selection_takes_the_best_cv_mean_and_reports_folds():
  labels = np.repeat(np.arange(2), 6)
  points = kfold.grid(
      {"learning_rate": 1.0, "weight_decay": 0.0},
      {"learning_rate": (1, 2, 3)},
      ("learning_rate", "weight_decay"),
  )
  assert [p["learning_rate"] for p in points] == [1, 2, 3]
  assert all(p["weight_decay"] == 0 for p in points)
  seen = []

  def fit_and_score(point, train_idx, val_idx, fold):
    seen.append(set(val_idx))
    return {1: 0.5, 2: 0.9, 3: 0.9}[point["learning_rate"]] + 0.01 * fold, 10 * (fold + 1)

  results, best = kfold.cross_validate(fit_and_score, labels, points, k=3, seed=0)
  assert best["hyperparameters"]["learning_rate"] == 2  # the first of equal means
  assert best["fold_best_steps"] == [10, 20, 30]
  np.testing.assert_allclose(best["mean"], 0.91)
  np.testing.assert_allclose(best["std"], np.std([0.9, 0.91, 0.92]))
  assert len(results) == 3 and len(seen) == 9


def test_layer_units_follow_the_forward_order():
  c = _config()
  c.model.depth = 34  # 16 blocks: sorted keys would put BasicBlock_10 before BasicBlock_2
  encoder = models.build_encoder(c.model, image_size=16)
  x = jnp.zeros((2, 16, 16, 1))
  paths = layers.flatten(jax.eval_shape(encoder.init, jax.random.PRNGKey(0), x)["params"])
  units = layers.units(list(paths), layers.call_order(encoder, x))
  assert [n for n, _ in units] == ["stem", "BatchNorm_0"] + [f"BasicBlock_{i}" for i in range(16)]
  assert sorted(p for _, ps in units for p in ps) == sorted(paths)
  by_stage = layers.units(list(paths), layers.call_order(encoder, x), layer_regex=r"BasicBlock_1\d")
  assert by_stage[0][0] == "stem" and by_stage[1][0] == "BasicBlock_10"
  with pytest.raises(ValueError, match="layer_regex='nothing'"):
    layers.units(list(paths), layers.call_order(encoder, x), layer_regex="nothing")


def test_time_series_and_token_inputs():
  c = _config()
  c.model.name, c.model.depth, c.model.hidden_dims, c.model.repr_dims = "ts_dilated_conv", 2, 8, 16
  series = np.random.default_rng(0).normal(size=(4, 24, 1)).astype(np.float32)
  kind = inputs.for_arrays(series)
  model = model_lib.Model(
      models.build_encoder(c.model),
      num_classes=2,
      mesh=sharding_lib.make_mesh(c),
      inputs=kind,
      example=series,
  )
  assert [n for n, _ in model.units] == [
      "encoder/input_fc",
      "encoder/block0",
      "encoder/block1",
      "encoder/block2",
  ]
  augmented = np.asarray(kind.augment(jax.random.PRNGKey(0), jnp.asarray(series)))
  assert augmented.shape == series.shape and not np.allclose(augmented, series)
  tokens = np.array([[101, 7, 8, 9, 102, 0]] * 64, np.int32)
  dropped = np.asarray(
      inputs.for_arrays(tokens).augment(jax.random.PRNGKey(0), jnp.asarray(tokens))
  )
  assert np.all(dropped[:, 0] == 101) and np.all((dropped == tokens) | (dropped == 0))
  assert 0.02 < np.mean(dropped[:, 1:5] == 0) < 0.25  # about 10 % of the tokens dropped
  with pytest.raises(ValueError, match="are none of: uint8 images"):
    inputs.for_arrays(np.zeros((2, 3, 4, 5, 6), np.float32))


def test_lora_at_init_equals_the_base_model_and_merges_exactly():
  model = _model()
  finetuner = _finetuner("lora", lora_rank=2, lora_alpha=4.0)
  variables = _pretrained_like(model.init(0))
  x, y = _images(16)
  base = model.module.apply(variables, model.inputs.preprocess(x))
  state = finetuner.init_state(variables, seed=0)
  adapted = model.module.apply(jax.device_get(finetuner._export(state)), model.inputs.preprocess(x))
  np.testing.assert_array_equal(np.asarray(adapted), np.asarray(base))
  # after training, evaluating the merged weights equals running base + adapters
  fitted = finetuner.fit(variables, x, y, hp=HP, seed=0)
  assert len(fitted.adapters) == 2 * len(finetuner.lora_targets) == 16
  assert all(np.any(v != 0) for k, v in fitted.adapters.items() if k.endswith("lora_b"))
  flat = layers.flatten(variables["params"])
  assert set(lora.targets({p: v.shape for p, v in flat.items()}, finetuner_regex())) == {
      k[: -len("/lora_a")] for k in fitted.adapters if k.endswith("/lora_a")
  }
  direct = {}
  for path, kernel in flat.items():
    a, b = fitted.adapters.get(f"{path}/lora_a"), fitted.adapters.get(f"{path}/lora_b")
    delta = 0 if a is None else (4.0 / 2) * (a @ b).reshape(kernel.shape)
    direct[path] = (
        kernel + delta
        if path.startswith("encoder/")
        else jax.device_get(layers.flatten(fitted.variables["params"]))[path]
    )
  by_hand = model.module.apply(
      {"params": layers.unflatten(direct), "batch_stats": variables["batch_stats"]},
      model.inputs.preprocess(x),
  )
  merged = model.module.apply(jax.device_get(fitted.variables), model.inputs.preprocess(x))
  np.testing.assert_allclose(np.asarray(merged), np.asarray(by_hand), rtol=1e-4, atol=1e-5)
  assert model.accuracy(fitted.variables, x, y) == np.mean(np.argmax(merged, -1) == y)


def test_lora_adapts_our_vit_attention_query_and_value():
  c = _config()
  c.model.name, c.model.variant, c.model.patch_size = "vit", "mu", 8
  x, _ = _images(4)
  model = model_lib.Model(
      models.build_encoder(c.model, image_size=16),
      num_classes=4,
      mesh=sharding_lib.make_mesh(c),
      inputs=inputs.Images(image_size=16),
      example=x,
  )
  assert [n for n, _ in model.units] == ["encoder/embedding", "encoder/block0", "encoder/block1"]
  finetuner = step_lib.Finetuner(
      model, "lora", batch_size=4, lora_rank=2, lora_alpha=4.0, lora_regex=finetuner_regex()
  )
  kinds = sorted(p.split("/")[-2] for p in finetuner.lora_targets)
  assert kinds == ["query", "query", "value", "value"]
  variables = model.init(0)
  state = finetuner.init_state(variables, seed=0)
  shapes = {k: v.shape for k, v in state["trainable"].items() if "lora" in k}
  assert set(shapes.values()) == {(64, 2), (2, 64)}  # (in, heads * head_dim) seen as a matrix
  base = model.module.apply(variables, model.inputs.preprocess(x))
  adapted = model.module.apply(jax.device_get(finetuner._export(state)), model.inputs.preprocess(x))
  np.testing.assert_array_equal(np.asarray(adapted), np.asarray(base))


def finetuner_regex():
  return config_lib.base_config().finetune.lora_regex


@pytest.mark.parametrize(
    "mode, kwargs", [("lora", dict(lora_rank=2, lora_alpha=4.0)), ("last_n", dict(last_n=2))]
)
def test_frozen_parameters_are_bit_identical_after_training(mode, kwargs):
  model = _model()
  finetuner = _finetuner(mode, **kwargs)
  variables = _pretrained_like(model.init(1))
  x, y = _images(16, seed=1)
  fitted = finetuner.fit(variables, x, y, hp=HP, seed=1)
  before = layers.flatten(variables["params"])
  after = layers.flatten(jax.device_get(fitted.variables["params"]))
  changed = {p for p in before if not np.array_equal(before[p], after[p])}
  if mode == "lora":
    targets = set(finetuner.lora_targets)
    assert changed - targets == {"head/kernel", "head/bias"}  # kernels change only by the merge
    assert targets and all(before[p].shape == after[p].shape for p in targets)
    frozen_stats = jax.device_get(fitted.variables["batch_stats"])
    assert all(
        jax.tree.leaves(jax.tree.map(np.array_equal, frozen_stats, variables["batch_stats"]))
    )
  else:
    trained = {p for _, ps in model.units[-2:] for p in ps} | {"head/kernel", "head/bias"}
    assert changed and changed <= trained
    assert all(np.array_equal(before[p], after[p]) for p in before if p not in trained)


def test_parameter_counts_and_learning_rate_groups():
  model = _model()
  full, last, adapters = (
      _finetuner("full"),
      _finetuner("last_n", last_n=2),
      _finetuner("lora", lora_rank=2, lora_alpha=4.0),
  )
  total = model.num_params()
  assert full.trainable_params() == total
  assert last.trainable_params() < total
  assert adapters.trainable_params() < 0.1 * total
  rank_2 = sum(
      2 * (np.prod(model.param_shapes[p][:-1]) + model.param_shapes[p][-1])
      for p in adapters.lora_targets
  )
  assert adapters.num_adapter_params() == rank_2
  assert adapters.trainable_params() == rank_2 + model.num_params("head/")
  top, bottom = model.units[-1][1][0], model.units[0][1][0]
  assert full._multiplier(top, HP) == 1.0 and full._multiplier("head/kernel", HP) == 1.0
  assert full._multiplier(bottom, HP) == HP["layer_decay"] ** (len(model.units) - 1)
  assert last._multiplier(top, HP) == HP["backbone_lr_multiplier"]
  with pytest.raises(ValueError, match=r"finetune.last_n=99; the encoder has 6 layer units"):
    step_lib.Finetuner(model, "last_n", batch_size=16, last_n=99)
  with pytest.raises(ValueError, match="lora_regex='nothing' selects no"):
    step_lib.Finetuner(model, "lora", batch_size=16, lora_regex="nothing")


def test_sharded_finetune_step_equals_single_device():
  assert jax.device_count() == 8, "conftest sets 8 simulated devices"
  x, y = _images(16, seed=2)
  results = []
  for mesh_data in (1, 8):
    finetuner = _finetuner("full", mesh_data)  # BatchNorm over the global batch, layer decay
    model = finetuner.model
    state = finetuner.init_state(_pretrained_like(_model(1).init(2)), seed=2)
    hp = jax.device_put({k: np.float32(HP[k]) for k in step_lib.TRACED}, model.replicated)
    for step in range(2):
      batch = jax.device_put({"x": x[::-1] if step else x, "y": y}, model.batch_sharding)
      state, metrics = finetuner._step(state, batch, hp)
    results.append(
        (
            jax.device_get(state["trainable"]),
            jax.device_get(state["model_state"]),
            float(metrics["loss"]),
            model.accuracy(finetuner._export(state), x, y),
        )
    )
  (p1, s1, l1, a1), (p8, s8, l8, a8) = results
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  # Adam's m / sqrt(v) magnifies reduction-order noise in near-zero gradients: a tolerance well
  # under one step (lr 3e-3), where a sharding bug moves every weight by about a step
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4), p8, p1)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), s8, s1)
  assert a1 == a8


def test_select_uses_the_grid_for_the_mode_and_skips_cv_without_enough_labels():
  ft = ml_collections.ConfigDict(config_lib.base_config().finetune.to_dict())
  ft.grid.linear.probe_weight_decay = (1e-4, 1e-2)
  ft.grid.linear.label_smoothing = ()
  ft.kfold = 2
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 4)
  x = rng.normal(size=(12, 5)).astype(np.float32) + 3 * np.eye(5)[y]
  method = fitting.LinearMethod(3, _model().mesh, ft, pad_to=16)
  hp, best, results = protocol.select(method, x, y, finetune_config=ft, seed=0, log=lambda _: None)
  assert [r["hyperparameters"]["probe_weight_decay"] for r in results] == [1e-4, 1e-2]
  assert hp["probe_weight_decay"] in (1e-4, 1e-2) and len(best["fold_accuracies"]) == 2
  hp, best, _ = protocol.select(method, x[::4], y[::4], finetune_config=ft, seed=0)
  assert best is None and hp["probe_weight_decay"] == 1e-4  # one label per class: no CV
  ft.grid.linear.probe_weight_decay = (1e-3,)  # one point: nothing to choose, no CV ...
  hp, best, _ = protocol.select(method, x, y, finetune_config=ft, seed=0)
  assert best is None and hp["probe_weight_decay"] == 1e-3
  ft.cv_single_point = True  # ... unless asked for
  hp, best, _ = protocol.select(method, x, y, finetune_config=ft, seed=0, log=lambda _: None)
  assert best is not None and hp["probe_weight_decay"] == 1e-3
  assert protocol.reported("linear", hp) == {
      "probe_learning_rate": 0.05,
      "probe_weight_decay": 1e-3,
      "probe_steps": 300,
      "label_smoothing": 0.1,
  }
