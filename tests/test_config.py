"""Config loading, overrides and the refusal of unknown keys or wrong types."""

import json
import os

import ml_collections
import pytest

from ssl_jax import config as config_lib
from ssl_jax import experiment
from ssl_jax import main as main_lib
from ssl_jax import models
from ssl_jax.ablation import planning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_config_loads_and_is_known():
  config = config_lib.load(os.path.join(ROOT, "configs/default.py"))
  config_lib.check_known_keys(config)
  assert config.data.source == "mnist"


def test_every_config_file_validates():
  """Keys, task settings, evaluator settings and encoder settings of every config (and its :tiny)
  pass validation."""
  for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
    path = os.path.join(ROOT, "configs", name)
    text = open(path).read() if name.endswith(".py") else ""
    if "def get_config(" in text:  # not a helper such as configs/recipes.py
      # variants a config accepts: recipes.cifar10's tiny, or its own parse_arg keywords
      variants = [path] + [
          f"{path}:{v}"
          for v in ("tiny", "quick")
          if f"{v}=" in text or (v == "tiny" and "recipes.cifar10(" in text)
      ]
      variants += [f"{path}:tiny,vit", f"{path}:vit"] if "vit=False" in text else []
      for variant in variants:
        config = config_lib.load(variant)
        schema = planning.SCHEMA if "ablation" in config else config_lib.BASE
        config = config_lib.finalize(config, schema=schema)
        experiment.validate(config)
        assert not models.ignored_settings(config.model), variant  # no other encoder's settings
        if ":tiny" in variant and "recipes.cifar10(" in text:
          assert any(e["type"] == "collapse" for e in config.evals.values()), variant


def test_recipes_load_beside_their_configs_from_any_directory(tmp_path, monkeypatch):
  """configs/recipes.py is read by path, so the CIFAR-10 configs load the same from anywhere."""
  here = config_lib.load(os.path.join(ROOT, "configs/dino_cifar10.py:tiny,vit")).to_json()
  monkeypatch.chdir(tmp_path)
  assert config_lib.load(os.path.join(ROOT, "configs/dino_cifar10.py:tiny,vit")).to_json() == here
  recipes = config_lib.load_module("recipes.py", beside=os.path.join(ROOT, "configs", "x.py"))
  c, args = recipes.cifar10("tiny,bs=64", task="simclr", task_kwargs=dict(temperature=0.5))
  assert args == {"tiny": True, "epochs": 1000, "bs": 64}
  # the recipe's numbers, as they were when the recipe lived in ssl_jax/config.py
  assert (c.data.source, c.data.image_size, c.data.channels, c.global_batch_size) == (
      "tfds:cifar10",
      32,
      3,
      128,
  )
  assert (c.model.depth, c.model.width_multiplier, c.model.zero_init_residual) == (10, 0.25, False)
  assert (c.total_steps, c.total_epochs, c.optimizer.warmup_epochs) == (100, 1000.0, 0.05)
  assert c.evals.knn.to_dict() == dict(type="knn", every_steps=100, k=200, temperature=0.1)
  recipes.use_vit(c, tiny=True)
  assert (
      c.model.name,
      c.model.variant,
      c.optimizer.name,
      c.optimizer.base_learning_rate,
      c.optimizer.weight_decay,
  ) == ("vit", "mu", "adamw", 1e-3, 0.1)


def test_unknown_key_in_config_file_is_refused():
  config = config_lib.base_config()
  config.optimiser = ml_collections.ConfigDict(dict(name="sgd"))  # British spelling: a typo here
  with pytest.raises(KeyError, match="unknown config key 'optimiser'"):
    config_lib.check_known_keys(config)
  config = config_lib.base_config()
  config.model.widht = 2
  with pytest.raises(KeyError, match="'model.widht'"):
    config_lib.check_known_keys(config)
  config = config_lib.base_config()
  config.augment.flip_probability = 0.5
  with pytest.raises(KeyError, match="'augment.flip_probability'"):
    config_lib.check_known_keys(config)


def test_override_types_and_unknown_keys():
  config = config_lib.base_config()
  config.evals.knn = dict(type="knn", every_steps=10)
  config_lib.override(
      config,
      [
          "global_batch_size=64",
          "task_kwargs.projection_dims=(32,16)",
          "optimizer.name=sgd",
          "online_probe=true",
          "evals.knn.k=20",
      ],
  )
  assert config.global_batch_size == 64 and config.task_kwargs.projection_dims == (32, 16)
  assert config.evals.knn.k == 20  # new settings of a task or evaluator are checked by their reader
  assert config.optimizer.name == "sgd" and config.online_probe is True
  with pytest.raises(KeyError, match="model.nope"):
    config_lib.override(config, ["model.nope=1"])
  with pytest.raises(TypeError, match="global_batch_size"):
    config_lib.override(config, ["global_batch_size=lots"])
  # a tuple key takes "a,b", "a," or "a": names or numbers, one or several
  for raw, want in (
      ("ssl_labelprop", ("ssl_labelprop",)),
      ("ssl_labelprop,", ("ssl_labelprop",)),
      ("ssl_finetune,pixels_logreg", ("ssl_finetune", "pixels_logreg")),
      ("('ssl_finetune',)", ("ssl_finetune",)),
      ("", ()),
  ):
    config_lib.override(config, [f"label_efficiency.methods={raw}"])
    assert config.label_efficiency.methods == want, raw
  for raw, want in (("1", (1,)), ("1,5", (1, 5)), ("1, 5, 10", (1, 5, 10))):
    config_lib.override(config, [f"label_efficiency.labels_per_class={raw}"])
    assert config.label_efficiency.labels_per_class == want, raw


def test_main_writes_config_json_and_refuses_bad_flags(tmp_path):
  config, workdir = main_lib.parse(
      ["--config=configs/default.py", f"--workdir={tmp_path}", "--config.total_epochs=2"]
  )
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["total_epochs"] == 2.0 and workdir == str(tmp_path)
  with pytest.raises(AttributeError):  # locked: nothing can add keys later
    config.new_key = 1
  with pytest.raises(KeyError, match="unknown config key 'data.sauce'"):
    main_lib.parse(
        ["--config=configs/default.py", f"--workdir={tmp_path}", "--config.data.sauce=x"]
    )
  with pytest.raises(FileNotFoundError, match="nope.py"):
    main_lib.parse(["--config=configs/nope.py", f"--workdir={tmp_path}"])


def test_unknown_keys_name_the_closest_valid_key(tmp_path):
  config = config_lib.base_config()
  config.optimiser = ml_collections.ConfigDict(dict(name="sgd"))
  with pytest.raises(KeyError, match="'optimiser'; closest valid key: 'optimizer'"):
    config_lib.check_known_keys(config)
  config = config_lib.base_config()
  with pytest.raises(KeyError, match="'model.depht'; closest valid key: 'model.depth'"):
    config_lib.override(config, ["model.depht=10"])
  with pytest.raises(KeyError, match="'modle'; closest valid key: 'model'"):
    config_lib.override(config, ["modle.depth=10"])
  with pytest.raises(KeyError, match="'data.sauce'; closest valid key: 'data.source'"):
    main_lib.parse(
        ["--config=configs/default.py", f"--workdir={tmp_path}", "--config.data.sauce=x"]
    )
  with pytest.raises(KeyError, match="'finetune.gird'; closest valid key: 'finetune.grid'"):
    config_lib.get(config, "finetune.gird.full")


def test_one_dotted_key_walker():
  config = config_lib.finalize(config_lib.base_config())
  assert config_lib.get(config, "model.bert.size") == "mini"
  assert config_lib.get(config, "finetune.grid.full.learning_rate") == ()
  derived = config_lib.derive(config, {"model.depth": 10, "task_kwargs.tokenizer": "/tok"})
  assert derived.model.depth == 10 and derived.task_kwargs.tokenizer == "/tok"  # a new key
  assert config.model.depth == 18 and "tokenizer" not in config.task_kwargs  # the original
  with pytest.raises(AttributeError):  # still locked
    derived.new_key = 1
  with pytest.raises(KeyError, match="'global_batch_size' is a value"):
    config_lib.get(config, "global_batch_size.x")


def test_batch_below_two_is_refused():
  config = config_lib.base_config()
  config.global_batch_size = 1
  with pytest.raises(ValueError, match="global_batch_size=1"):
    config_lib.finalize(config)
