"""BERT checkpoints in the Hugging Face layout, read and written without torch or transformers'
models.

A checkpoint directory holds config.json, the weights and the tokenizer's files. The weights are
`model.safetensors` (or shards listed in `model.safetensors.index.json`) with PyTorch names
(`bert.encoder.layer.0.attention.self.query.weight`, or without the `bert.` prefix for a bare
BertModel such as all-MiniLM-L6-v2), else a Flax `flax_model.msgpack` (what transformers 4's Flax
models and earlier ssl_jax runs wrote). A PyTorch `pytorch_model.bin` is a pickle that only torch
reads: convert it once with torch
(`safetensors.torch.save_file(torch.load(f), 'model.safetensors')`).

The conversion is a rename: dots become tree levels; a Linear's `weight` (out, in) is our Dense
`kernel` (in, out) transposed, an Embedding's `weight` our `embedding`, a LayerNorm's
`weight`/`bias` (`gamma`/`beta` in old checkpoints) our `scale`/`bias`. The MLM decoder is tied to
the word embeddings, so its `cls.predictions.decoder.*` entries are not read, and written as the
tied values. `save` writes what transformers 5's `BertForMaskedLM` / `BertForPreTraining` /
`BertModel.from_pretrained` load with equal outputs (tests/data/bert_goldens.npz, from torch).
"""

import json
import os
import shutil
import tempfile

import numpy as np

SKIPPED = ("embeddings.position_ids", "cls.predictions.decoder.")
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def resolve(name_or_path):
  """A local checkpoint directory for a directory or a Hugging Face Hub name (downloaded once into
  the hub cache: config, safetensors weights, tokenizer)."""
  if os.path.isdir(name_or_path):
    return name_or_path
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top

    return huggingface_hub.snapshot_download(
        name_or_path,
        allow_patterns=[
            "config.json",
            "*.safetensors",
            "*.safetensors.index.json",
            *TOKENIZER_FILES,
        ],
    )
  except Exception as e:  # pylint: disable=broad-except  (offline, unknown name, ...)
    raise ValueError(
        f"{name_or_path!r} is neither a local directory nor a Hugging Face Hub model "
        f"that could be downloaded ({type(e).__name__}: {e})"
    ) from None


def _flax_path(key):
  """'bert.encoder.layer.0.output.dense.weight' -> (('bert', ..., 'dense', 'kernel'), transpose)."""
  parts = key.split(".")
  if parts[0] not in ("bert", "cls"):
    parts = ["bert"] + parts
  *scope, leaf = parts
  if scope[-1] == "LayerNorm":
    leaf = {"weight": "scale", "gamma": "scale", "beta": "bias"}.get(leaf, leaf)
    return tuple(scope) + (leaf,), False
  if scope[-1].endswith("_embeddings"):
    return tuple(scope) + ("embedding",), False
  if leaf == "weight":
    return tuple(scope) + ("kernel",), True
  return tuple(scope) + (leaf,), False


def _torch_key(path):
  """The inverse of `_flax_path`: (PyTorch name, transpose)."""
  *scope, leaf = path
  if leaf in ("scale", "embedding"):
    return ".".join(scope + ["weight"]), False
  if leaf == "kernel":
    return ".".join(scope + ["weight"]), True
  return ".".join(scope + [leaf]), False


def to_flax(state):
  """{PyTorch name: array} -> {'bert': tree, 'cls': tree (when present)} of float32 arrays."""
  tree = {}
  for key, value in state.items():
    if any(key.startswith(s) or key.endswith(s) for s in SKIPPED):
      continue
    path, transpose = _flax_path(key)
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    value = np.asarray(value, np.float32)
    node[path[-1]] = value.T if transpose else value
  return tree


def to_torch(params):
  """{'bert': tree, 'cls': tree} -> {PyTorch name: float32 array}, plus the tied decoder entries
  that transformers writes beside the MLM head."""
  state = {}

  def walk(node, path):
    for name, child in node.items():
      if isinstance(child, dict):
        walk(child, path + (name,))
      else:
        key, transpose = _torch_key(path + (name,))
        value = np.asarray(child, np.float32)
        state[key] = np.ascontiguousarray(value.T if transpose else value)

  walk(params, ())
  if "cls.predictions.bias" in state:
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"].copy()
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].copy()
  return state


def read_state(directory):
  """The raw weights of a checkpoint directory: ('torch', {name: array}) or ('flax', tree)."""
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top

  single = os.path.join(directory, "model.safetensors")
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.isfile(single):
    return "torch", safetensors_numpy.load_file(single)
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    state = {}
    for shard in shards:
      state.update(safetensors_numpy.load_file(os.path.join(directory, shard)))
    return "torch", state
  msgpack = os.path.join(directory, "flax_model.msgpack")
  if os.path.isfile(msgpack):
    from flax import serialization  # pylint: disable=g-import-not-at-top

    with open(msgpack, "rb") as f:
      return "flax", serialization.msgpack_restore(f.read())
  if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
    raise ValueError(
        f"{directory}: only pytorch_model.bin, a pickle that needs torch to read; "
        "convert it once where torch is installed: "
        "safetensors.torch.save_file(torch.load('pytorch_model.bin'), "
        "'model.safetensors')"
    )
  raise ValueError(
      f"{directory}: no weights; accepted: model.safetensors (or shards with "
      "model.safetensors.index.json) or flax_model.msgpack"
  )


def load(directory):
  """The weights of a BERT checkpoint directory as {'bert': tree, 'cls': tree if present}."""
  kind, state = read_state(directory)
  if kind == "torch":
    return to_flax(state)
  tree = dict(state)
  if "bert" not in tree:  # a bare FlaxBertModel's msgpack: the encoder's tree at the top
    tree = {"bert": tree}
  return _as_float32(tree)


def _as_float32(tree):
  return {
      k: _as_float32(v) if isinstance(v, dict) else np.asarray(v, np.float32)
      for k, v in tree.items()
  }


def save(directory, config, params, architecture, tokenizer=None):
  """Writes config.json, model.safetensors (PyTorch names) and the tokenizer into `directory`,
  atomically: a failed write leaves the previous export in place."""
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top

  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    config.to_json(os.path.join(staging, "config.json"), architecture)
    safetensors_numpy.save_file(
        to_torch(params), os.path.join(staging, "model.safetensors"), metadata={"format": "pt"}
    )
    if tokenizer is not None:
      tokenizer.save_pretrained(staging)
      _write_vocab(os.path.join(staging, "vocab.txt"), tokenizer)
    if os.path.isdir(directory):
      old = directory + ".old"
      shutil.rmtree(old, ignore_errors=True)
      os.replace(directory, old)
      os.replace(staging, directory)
      shutil.rmtree(old)
    else:
      os.replace(staging, directory)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def _write_vocab(path, tokenizer):
  """BERT's vocab.txt (one piece per line, by id) beside tokenizer.json, for tools that read only
  that (transformers' BertTokenizer, the original BERT code); transformers 5 no longer writes it."""
  if os.path.exists(path):
    return
  vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
  if [i for _, i in vocab] != list(range(len(vocab))):
    return  # ids with gaps: no line-per-id file can say it
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(token + "\n" for token, _ in vocab)
