"""python -m ssl_jax.export: ViT -> transformers' ViTModel (checked against that model's
computation, written out in numpy), ResNet -> torchvision's naming, any encoder -> safetensors.
The PyTorch side (transformers' and torchvision's own models on these files) is checked in a
separate venv: experiments/export_check.py, experiments/export.md."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import export_formats
from ssl_jax import exporting
from ssl_jax import export as export_main
from ssl_jax import models
from ssl_jax import train
from ssl_jax.models import resnet
from ssl_jax.models import vit
from ts2vec_helpers import tiny_config as tiny_series_config
from ts2vec_helpers import write_series_set


def _layer_norm(x, weight, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def transformers_vit_features(config, t, images):
  """transformers' ViTModel forward (modeling_vit.py) in numpy: last_hidden_state[:, 0]."""
  x = np.asarray(images, np.float64).transpose(0, 3, 1, 2)  # NCHW
  b, c, h, w = x.shape
  p, d, heads = config["patch_size"], config["hidden_size"], config["num_attention_heads"]
  patches = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
  patches = patches.reshape(b, (h // p) * (w // p), c * p * p)
  weight = t["embeddings.patch_embeddings.projection.weight"].reshape(d, -1)
  tokens = patches @ weight.T + t["embeddings.patch_embeddings.projection.bias"]
  cls = np.broadcast_to(t["embeddings.cls_token"], (b, 1, d))
  x = np.concatenate([cls, tokens], 1) + t["embeddings.position_embeddings"]
  eps = config["layer_norm_eps"]
  for i in range(config["num_hidden_layers"]):
    layer = lambda name: (
        t[f"encoder.layer.{i}.{name}.weight"],
        t[f"encoder.layer.{i}.{name}.bias"],
    )
    hidden = _layer_norm(x, *layer("layernorm_before"), eps)
    split = lambda y: y.reshape(b, -1, heads, d // heads).transpose(0, 2, 1, 3)
    q, k, v = (
        split(hidden @ wt.T + bias)
        for wt, bias in (layer(f"attention.attention.{n}") for n in ("query", "key", "value"))
    )
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    context = (scores / scores.sum(-1, keepdims=True)) @ v
    context = context.transpose(0, 2, 1, 3).reshape(b, -1, d)
    wt, bias = layer("attention.output.dense")
    x = x + context @ wt.T + bias
    hidden = _layer_norm(x, *layer("layernorm_after"), eps)
    wt, bias = layer("intermediate.dense")
    hidden = _gelu_tanh(hidden @ wt.T + bias)
    wt, bias = layer("output.dense")
    x = x + hidden @ wt.T + bias
  return _layer_norm(x, t["layernorm.weight"], t["layernorm.bias"], eps)[:, 0]


@pytest.mark.parametrize("posemb", ["sincos2d", "learn"])
def test_vit_goes_to_transformers_exactly(posemb, tmp_path):
  model_config = ml_collections.ConfigDict(
      dict(name="vit", variant="mu", patch_size=4, posemb=posemb, pool="cls", dtype="float32")
  )
  encoder = vit.ViT(variant="mu", patch_size=4, image_size=16, posemb=posemb, pool="cls")
  images = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  variables = encoder.init(jax.random.PRNGKey(1), jnp.asarray(images))
  # a non-zero class token and biases, so that their mapping is exercised
  variables = jax.tree.map(
      lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(2), x.shape), variables
  )
  config, tensors = export_formats.vit_to_transformers(model_config, 16, jax.device_get(variables))
  want = np.asarray(encoder.apply(variables, jnp.asarray(images)))
  got = transformers_vit_features(config, tensors, images)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert config["hidden_act"] == "gelu_pytorch_tanh" and config["layer_norm_eps"] == 1e-6
  # and back: ssl_jax.models.load reads the export into our ViT with the same features
  exporting.save_safetensors(str(tmp_path / "model.safetensors"), tensors)
  (tmp_path / "config.json").write_text(json.dumps(config))
  loaded, loaded_variables = models.load(str(tmp_path))
  np.testing.assert_allclose(
      np.asarray(loaded.apply(loaded_variables, jnp.asarray(images))), want, rtol=1e-5, atol=1e-5
  )
  with pytest.raises(ValueError, match="always prepends a class token"):
    export_formats.vit_to_transformers(
        ml_collections.ConfigDict({**model_config.to_dict(), "pool": "gap"}), 16, variables
    )


@pytest.mark.parametrize(
    "depth,stem", [(18, "small"), pytest.param(50, "imagenet", marks=pytest.mark.slow)]
)
def test_resnet_goes_to_torchvision_names_and_back(depth, stem, tmp_path):
  encoder = resnet.ResNet(depth=depth, stem=stem, zero_init_residual=False)
  images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  variables = jax.device_get(encoder.init(jax.random.PRNGKey(0), jnp.asarray(images)))
  variables["batch_stats"] = jax.tree.map(lambda x: x + 0.1, variables["batch_stats"])
  model_config = ml_collections.ConfigDict(dict(depth=depth, stem=stem, norm="batch"))
  tensors = export_formats.resnet_to_torchvision(model_config, variables)
  # torchvision's resnet18 / resnet50 state dicts, without fc: 120 / 318 entries
  assert len(tensors) == {18: 120, 50: 318}[depth]
  blocks = 8 if depth == 18 else 16
  assert sum(k.endswith("conv1.weight") and k.startswith("layer") for k in tensors) == blocks
  assert tensors["conv1.weight"].shape == ((64, 3, 3, 3) if stem == "small" else (64, 3, 7, 7))
  last = "layer4.1.conv2.weight" if depth == 18 else "layer4.2.conv3.weight"
  assert tensors[last].shape == ((512, 512, 3, 3) if depth == 18 else (2048, 512, 1, 1))
  assert tensors["layer2.0.downsample.1.running_var"].shape == ((128,) if depth == 18 else (512,))
  exporting.save_safetensors(str(tmp_path / "model.safetensors"), tensors)
  info = {"depth": depth, "stem": stem, "width_multiplier": 1.0}
  (tmp_path / "export.json").write_text(json.dumps(info))
  loaded, loaded_variables = models.load(str(tmp_path))
  np.testing.assert_array_equal(
      np.asarray(loaded.apply(loaded_variables, jnp.asarray(images))),
      np.asarray(encoder.apply(variables, jnp.asarray(images))),
  )


def test_export_command_round_trips_a_series_encoder(tmp_path):
  path = write_series_set(str(tmp_path / "series.npz"))
  workdir = str(tmp_path / "run")
  c = config_lib.finalize(tiny_series_config(path, total_steps=2), workdir)
  run = train.train(c, workdir)
  out = str(tmp_path / "export")
  export_main.main([f"--workdir={workdir}", "--format=safetensors", f"--out={out}"])
  encoder, variables = models.load(out)
  series, _ = run.train_source.arrays()
  np.testing.assert_allclose(
      np.asarray(encoder.apply(variables, jnp.asarray(series))),
      run.features_of(series),
      rtol=1e-5,
      atol=1e-6,
  )
  assert json.load(open(os.path.join(out, "export.json")))["model"]["name"] == "ts_dilated_conv"
  with pytest.raises(ValueError, match="does not take a 'ts_dilated_conv' encoder"):
    exporting.export(workdir, "torchvision", str(tmp_path / "nope"))
