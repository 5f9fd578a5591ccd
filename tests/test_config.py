"""Config loading, overrides and the refusal of unknown keys or wrong types."""
import json
import os

import ml_collections
import pytest

from ssl_jax import config as config_lib
from ssl_jax import experiment
from ssl_jax import main as main_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_config_loads_and_is_known():
  config = config_lib.load(os.path.join(ROOT, "configs/default.py"))
  config_lib.check_known_keys(config)
  assert config.data.source == "mnist"


def test_every_config_file_validates():
  """Keys, task settings and evaluator settings of every config (and its :tiny) pass validation."""
  for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
    if name.endswith(".py"):
      path = os.path.join(ROOT, "configs", name)
      text = open(path).read()
      # variants a config accepts: config_lib.cifar10's tiny, or its own parse_arg keywords
      variants = [path] + [f"{path}:{v}" for v in ("tiny", "quick")
                           if f"{v}=" in text or (v == "tiny" and "config_lib.cifar10(" in text)]
      variants += [f"{path}:tiny,vit", f"{path}:vit"] if "vit=False" in text else []
      for variant in variants:
        config = config_lib.finalize(config_lib.load(variant))
        experiment.validate(config)
        if ":tiny" in variant and "config_lib.cifar10(" in text:
          assert any(e["type"] == "collapse" for e in config.evals.values()), variant


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
  config_lib.override(config, ["global_batch_size=64", "task_kwargs.projection_dims=(32,16)",
                               "optimizer.name=sgd", "online_probe=true", "evals.knn.k=20"])
  assert config.global_batch_size == 64 and config.task_kwargs.projection_dims == (32, 16)
  assert config.evals.knn.k == 20  # new settings of a task or evaluator are checked by their reader
  assert config.optimizer.name == "sgd" and config.online_probe is True
  with pytest.raises(KeyError, match="model.nope"):
    config_lib.override(config, ["model.nope=1"])
  with pytest.raises(TypeError, match="global_batch_size"):
    config_lib.override(config, ["global_batch_size=lots"])
  # a tuple key takes "a,b", "a," or "a": names or numbers, one or several
  for raw, want in (("ssl_labelprop", ("ssl_labelprop",)), ("ssl_labelprop,", ("ssl_labelprop",)),
                    ("ssl_finetune,pixels_logreg", ("ssl_finetune", "pixels_logreg")),
                    ("('ssl_finetune',)", ("ssl_finetune",)), ("", ())):
    config_lib.override(config, [f"label_efficiency.methods={raw}"])
    assert config.label_efficiency.methods == want, raw
  for raw, want in (("1", (1,)), ("1,5", (1, 5)), ("1, 5, 10", (1, 5, 10))):
    config_lib.override(config, [f"label_efficiency.labels_per_class={raw}"])
    assert config.label_efficiency.labels_per_class == want, raw


def test_main_writes_config_json_and_refuses_bad_flags(tmp_path):
  config, workdir = main_lib.parse(["--config=configs/default.py", f"--workdir={tmp_path}",
                                    "--config.total_epochs=2"])
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["total_epochs"] == 2.0 and workdir == str(tmp_path)
  with pytest.raises(AttributeError):  # locked: nothing can add keys later
    config.new_key = 1
  with pytest.raises(KeyError, match="unknown config key 'data.sauce'"):
    main_lib.parse(["--config=configs/default.py", f"--workdir={tmp_path}", "--config.data.sauce=x"])
  with pytest.raises(FileNotFoundError, match="nope.py"):
    main_lib.parse(["--config=configs/nope.py", f"--workdir={tmp_path}"])


def test_batch_below_two_is_refused():
  config = config_lib.base_config()
  config.global_batch_size = 1
  with pytest.raises(ValueError, match="global_batch_size=1"):
    config_lib.finalize(config)
