"""A trained encoder in the formats other ecosystems load (python -m ssl_jax.export).

transformers   ViT encoders -> transformers' `ViTModel` (config.json, model.safetensors,
               preprocessor_config.json): the features are `last_hidden_state[:, 0]`. Exact
               for our class-token ViTs: the class token gets a zero position embedding (ours
               has none), LayerNorm eps 1e-6 and the tanh GELU (flax's defaults) are set in the
               config, inputs are [0, 1] pixels (no mean/std). An average-pooled ViT (pool='gap')
               is refused: `ViTModel` always prepends a class token that every token attends
               to. BERT encoders (text runs) -> `BertForMaskedLM` with the run's tokenizer.
torchvision    ResNets (batch norm) -> model.safetensors in torchvision's `resnet` naming
               (conv1, bn1, layerN.M.*, downsample.0/1; no `fc`: use `fc = nn.Identity()` for
               the features). Our small-image stems are torchvision's usual two-line change:
               `model.conv1 = nn.Conv2d(3, 64, 3, stride, 1, bias=False)` (stride 1, or 2 for
               'small_stride2') and `model.maxpool = nn.Identity()`. export.json records depth,
               stem and width. Inputs are [0, 1] pixels.
safetensors    any encoder: its variables as safetensors (keys `collection/path/to/leaf`) and
               export.json (config.model and the image size). The time-series encoders have no
               standard format elsewhere; this is theirs.
`load(directory)` (also `ssl_jax.models.load`) reads any of them back: (encoder, variables). The
tensor mappings of the first two, both ways, are in export_formats.py.
"""

import json
import os

import jax
import numpy as np
from flax import traverse_util

from ssl_jax import checkpoint as checkpoint_lib
from ssl_jax import export_formats
from ssl_jax import modalities
from ssl_jax import models

FORMATS = ("transformers", "torchvision", "safetensors")


def save_safetensors(path, tensors):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  save_file(
      {
          k: np.ascontiguousarray(v, np.float32) if v.dtype.kind == "f" else v
          for k, v in tensors.items()
      },
      path,
  )


def export(workdir, fmt, out):
  """Writes the encoder of the run in `workdir` in format `fmt` into the directory `out`."""
  from ssl_jax import inference  # pylint: disable=g-import-not-at-top

  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r}; accepted: {list(FORMATS)}")
  saved = inference.saved_config(workdir)
  name = saved.model.name
  takes = {"vit": "transformers", "bert": "transformers", "resnet": "torchvision"}
  if fmt != "safetensors" and takes.get(name) != fmt:
    raise ValueError(
        f"--format={fmt!r} does not take a {name!r} encoder: {name} goes to "
        f"{takes.get(name, 'safetensors')!r} (or 'safetensors', which takes every encoder)"
    )
  os.makedirs(out, exist_ok=True)
  if name == "bert" and fmt == "transformers":  # the MLM model and tokenizer, from the checkpoint
    modality = modalities.of(saved)
    return modality.export_transformers(modality.trained_config(saved, workdir), workdir, out)
  trained = inference.Trained.load(workdir)
  config = trained.config
  variables = jax.device_get(trained.variables)  # {collection: encoder tree}, numpy
  if fmt == "safetensors":
    flat = traverse_util.flatten_dict(variables, sep="/")
    save_safetensors(
        os.path.join(out, "model.safetensors"), {k: np.asarray(v) for k, v in flat.items()}
    )
    info = {
        "model": config.model.to_dict(),
        "image_size": config.data.image_size,
        "source": os.path.abspath(workdir),
        "step": trained.step,
    }
  elif fmt == "transformers" and name == "vit":
    hf_config, tensors = export_formats.vit_to_transformers(
        config.model, config.data.image_size, variables, channels=config.data.channels
    )
    save_safetensors(os.path.join(out, "model.safetensors"), tensors)
    checkpoint_lib.write_atomically(
        os.path.join(out, "config.json"), json.dumps(hf_config, indent=2)
    )
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": config.data.image_size, "width": config.data.image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": False,
    }
    checkpoint_lib.write_atomically(
        os.path.join(out, "preprocessor_config.json"), json.dumps(processor, indent=2)
    )
    info = {"features": "last_hidden_state[:, 0]"}
  else:  # torchvision: a ResNet
    save_safetensors(
        os.path.join(out, "model.safetensors"),
        export_formats.resnet_to_torchvision(config.model, variables),
    )
    info = {
        "depth": config.model.depth,
        "stem": config.model.stem,
        "width_multiplier": config.model.width_multiplier,
        "features": "torchvision resnet with fc = nn.Identity(), inputs in [0, 1]",
    }
  checkpoint_lib.write_atomically(os.path.join(out, "export.json"), json.dumps(info, indent=2))
  print(f"wrote {out} ({fmt}) from {workdir} step {trained.step}", flush=True)
  return out


def load(directory):
  """(encoder module, variables) from any of our exports in `directory`: what
  `encoder.apply(variables, inputs)` turns into the run's features (`ssl_jax.models.load`)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  read = lambda name: json.load(open(os.path.join(directory, name)))
  has = lambda name: os.path.isfile(os.path.join(directory, name))
  info = read("export.json") if has("export.json") else {}
  config = read("config.json") if has("config.json") else {}
  if config.get("model_type") == "bert":  # BertForMaskedLM and its tokenizer
    from ssl_jax import generic_models  # pylint: disable=g-import-not-at-top

    generic = generic_models.load(directory)
    return generic.encoder, generic.variables
  if not has("model.safetensors"):
    raise FileNotFoundError(f"{directory} holds no model.safetensors: not one of our exports")
  tensors = load_file(os.path.join(directory, "model.safetensors"))
  if "model" in info:  # --format=safetensors
    encoder = models.build_encoder(
        ml_collections.ConfigDict(info["model"]), image_size=info["image_size"]
    )
    return encoder, traverse_util.unflatten_dict(tensors, sep="/")
  if config.get("model_type") == "vit":
    return export_formats.vit_from_transformers(config, tensors)
  if "depth" in info:
    return export_formats.resnet_from_torchvision(info, tensors)
  raise ValueError(f"{directory}: not one of our exports (no export.json or a ViT/BERT config)")
