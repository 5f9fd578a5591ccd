"""python -m ssl_jax.embed (a trained run's features of new data, for every modality; resumable)
and python -m ssl_jax.predict (a fitted classifier's predictions: standalone or kept by the study).
"""

import csv
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from ssl_jax import config as config_lib
from ssl_jax import embed as embed_main
from ssl_jax import export as export_main
from ssl_jax import experiment
from ssl_jax import exporting
from ssl_jax import inference
from ssl_jax import models
from ssl_jax import predict as predict_main
from ssl_jax import prediction
from ssl_jax import train
from ssl_jax.data import sources
from ssl_jax.data import text_tokens
from ssl_jax.finetune import standalone
from ssl_jax.modalities import text as text_modality
from test_text_run import text_config
from text_helpers import make_dir, sentences, write_jsonl
from ts2vec_helpers import tiny_config as tiny_series_config
from ts2vec_helpers import write_series_set


@pytest.fixture(scope="module")
def image_run(data_path, tmp_path_factory):
  """A 2-step SimCLR run on the tiny images, on the 8 simulated devices (config.json written)."""
  workdir = str(tmp_path_factory.mktemp("image_run"))
  c = config_lib.base_config()
  c.data.source = f"npz:{data_path}"
  c.data.image_size, c.data.channels, c.data.num_classes = 16, 3, 4
  c.global_batch_size = 16
  c.total_steps = 2
  c.model.depth, c.model.width_multiplier = 10, 0.125
  c.task_kwargs.projection_dims = (32, 16)
  c.optimizer.warmup_epochs = 1.0
  c = config_lib.finalize(c, workdir)
  return workdir, train.train(c, workdir)


def _outputs(out):
  base = out[: -len(".npy")]
  ids = open(base + ".ids.txt").read().split("\n")[:-1]
  return np.load(out), ids, np.load(base + ".labels.npy")


def test_image_features_equal_the_runs_own(image_run, data_path, tmp_path, capsys):
  workdir, run = image_run
  out = str(tmp_path / "test.npy")
  embed_main.main(
      [
          f"--workdir={workdir}",
          f"--input=npz:{data_path}",
          f"--out={out}",
          "--split=test",
          "--batch_size=12",
      ]
  )  # 12 -> 16 rows a batch on 8 devices
  features, ids, labels = _outputs(out)
  images, want_labels = sources.build(f"npz:{data_path}", "test").arrays()
  np.testing.assert_allclose(features, run.features_of(images), rtol=1e-5, atol=1e-5)
  assert ids == [str(i) for i in range(len(images))]
  np.testing.assert_array_equal(labels, want_labels)
  assert "embedded 32/32" in capsys.readouterr().out
  assert not os.path.exists(out + ".progress.json")
  inference.embed(workdir, f"npz:{data_path}", out, split="test")  # complete: left as it is
  assert "is complete (32 rows); nothing to do" in capsys.readouterr().out
  # python -m ssl_jax.export to torchvision's naming, and back through ssl_jax.models.load
  exported = str(tmp_path / "torchvision")
  export_main.main([f"--workdir={workdir}", "--format=torchvision", f"--out={exported}"])
  encoder, variables = models.load(exported)
  np.testing.assert_allclose(
      np.asarray(encoder.apply(variables, images.astype(np.float32) / 255)),
      features,
      rtol=1e-5,
      atol=1e-5,
  )


def test_killed_embedding_resumes_without_duplicates(
    image_run, data_path, tmp_path, monkeypatch, capsys
):
  workdir, _ = image_run
  whole = str(tmp_path / "whole.npy")
  inference.embed(workdir, f"npz:{data_path}", whole, split="train", batch_size=16)
  load = inference.Trained.load

  def killed_after_two_batches(directory):
    trained = load(directory)
    calls, features = [], trained.features

    def dies(variables, batch):
      if not isinstance(batch, jax.core.Tracer):  # not the shape inference before the first batch
        calls.append(1)
      if len(calls) > 2:
        raise KeyboardInterrupt("killed")
      return features(variables, batch)

    trained.features = dies
    return trained

  out = str(tmp_path / "resumed.npy")
  monkeypatch.setattr(inference.Trained, "load", staticmethod(killed_after_two_batches))
  with pytest.raises(KeyboardInterrupt):
    inference.embed(workdir, f"npz:{data_path}", out, split="train", batch_size=16)
  with open(out + ".progress.json") as f:
    assert json.load(f)["done"] == 32  # two batches of 16 written, the third never
  monkeypatch.setattr(inference.Trained, "load", staticmethod(load))
  inference.embed(workdir, f"npz:{data_path}", out, split="train", batch_size=16)
  assert "resuming" in capsys.readouterr().out
  np.testing.assert_array_equal(np.load(out), np.load(whole))
  with pytest.raises(ValueError, match="was started for"):  # another input into the same file
    open(out + ".progress.json", "w").write(json.dumps({"input": "other", "done": 0}))
    inference.embed(workdir, f"npz:{data_path}", out, split="train", batch_size=16)


def test_bad_workdir_and_out_name_the_problem(image_run, data_path, tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no config.json"):
    inference.embed(str(tmp_path), f"npz:{data_path}", str(tmp_path / "x.npy"))
  with pytest.raises(ValueError, match="expected a .npy path"):
    inference.embed(image_run[0], f"npz:{data_path}", str(tmp_path / "x.csv"))


@pytest.mark.slow  # the image tests cover embed's machinery; these, each modality's reader
def test_series_features_equal_the_runs_own(tmp_path):
  path = write_series_set(str(tmp_path / "series.npz"))
  workdir = str(tmp_path / "run")
  c = config_lib.finalize(tiny_series_config(path, total_steps=2), workdir)
  run = train.train(c, workdir)
  out = str(tmp_path / "series_test.npy")
  inference.embed(workdir, f"npz:{path}", out, split="test", batch_size=8)
  features, ids, labels = _outputs(out)
  series, want_labels = train.load_data(c)[1].arrays()
  np.testing.assert_allclose(features, run.features_of(series), rtol=1e-5, atol=1e-5)
  assert ids[0].endswith(":test[0]") and len(ids) == len(series)
  np.testing.assert_array_equal(labels, want_labels)


@pytest.mark.slow  # the image tests cover embed's machinery; these, each modality's reader
def test_text_features_of_a_jsonl_file(tmp_path):
  corpus_dir = make_dir(str(tmp_path / "corpus"), n_train=24, n_test=6, n_unlabeled=6)
  workdir = str(tmp_path / "run")
  c = config_lib.finalize(text_config(corpus_dir, total_steps=2), workdir)
  trained = text_modality.pretrain_encoder(c, workdir, text_modality.load_corpus(c))
  texts, labels = sentences(5, seed=3)
  write_jsonl(str(tmp_path / "new.jsonl"), [{"text": t} for t in texts])
  out = str(tmp_path / "new.npy")
  inference.embed(workdir, f"jsonl:{tmp_path / 'new.jsonl'}", out)
  features, ids, got_labels = _outputs(out)
  ids_array = text_tokens.encode(trained.tokenizer, texts, max_len=c.text.max_len)
  want = trained.run.features_of(ids_array)
  np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5)
  assert ids == [f"{tmp_path / 'new.jsonl'}[{i}]" for i in range(5)]
  assert np.all(got_labels == -1) and features.shape[0] == 5
  # python -m ssl_jax.export: the text encoder goes to transformers through the same command
  exported = exporting.export(workdir, "transformers", str(tmp_path / "hf"))
  with open(os.path.join(exported, "config.json")) as f:
    assert json.load(f)["architectures"] == ["BertForMaskedLM"]
  assert os.path.isfile(os.path.join(exported, "tokenizer.json"))
  encoder, variables = models.load(exported)  # and back, with the run's features
  np.testing.assert_allclose(
      np.asarray(encoder.apply(variables, ids_array)), want, rtol=1e-5, atol=1e-5
  )


def _csv(path):
  with open(path) as f:
    rows = list(csv.DictReader(f))
  probs = np.array([[float(r[k]) for k in r if k.startswith("p_")] for r in rows])
  return rows, probs


@pytest.mark.parametrize("mode", ["linear", "contrastive"])
def test_predict_of_a_finetuned_classifier_matches_its_test_accuracy(
    image_run, data_path, tmp_path, mode
):
  pretrained, _ = image_run
  workdir = str(tmp_path / "ft")
  standalone.main(
      [
          "--config=configs/default.py",
          f"--workdir={workdir}",
          f"--config.data.source=npz:{data_path}",
          "--config.data.image_size=16",
          "--config.data.channels=3",
          "--config.data.num_classes=4",
          "--config.model.depth=10",
          "--config.model.width_multiplier=0.125",
          "--config.task_kwargs.projection_dims=(32,16)",
          f"--config.finetune.init_from={pretrained}",
          f"--config.finetune.mode={mode}",
          "--config.finetune.kfold=0",
          "--config.finetune.contrastive_steps=3",
          "--config.finetune.probe_steps=20",
      ]
  )
  out = str(tmp_path / "pred.csv")
  predict_main.main(
      [f"--workdir={workdir}", f"--input=npz:{data_path}", f"--out={out}", "--split=test"]
  )
  rows, probs = _csv(out)
  results = json.load(open(os.path.join(workdir, "results.json")))
  accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
  assert len(rows) == 32 and accuracy == pytest.approx(results["test_accuracy"], abs=1e-9)
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
  assert [int(r["predicted"]) for r in rows] == list(np.argmax(probs, 1))
  assert rows[0]["predicted_name"] == rows[0]["predicted"]  # npz arrays carry no class names
  if mode == "contrastive":
    assert results["mode"] == "contrastive" and results["hyperparameters"]["steps"] == 3
    return
  with pytest.raises(ValueError, match="holds no classifier"):  # a pre-training run
    prediction.predict(pretrained, f"npz:{data_path}", str(tmp_path / "x.csv"))
  # a folder with one unreadable file: refused naming it, or left out and counted
  folder = tmp_path / "new_images"
  for name in ("a", "b"):
    (folder / name).mkdir(parents=True)
    for i in range(3):
      pixels = np.full((16, 16, 3), 60 * i + (0 if name == "a" else 120), np.uint8)
      Image.fromarray(pixels).save(folder / name / f"{i}.png")
  (folder / "a" / "broken.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="broken.png"):
    prediction.predict(workdir, f"folder:{folder}", str(tmp_path / "f.csv"))
  prediction.predict(workdir, f"folder:{folder}", str(tmp_path / "f.csv"), skip_corrupt=True)
  rows, _ = _csv(str(tmp_path / "f.csv"))
  assert len(rows) == 6 and all(r["id"].endswith(".png") for r in rows)


def test_a_kept_study_fit_predicts_as_it_scored(tmp_path):
  path = write_series_set(str(tmp_path / "series.npz"))
  workdir = str(tmp_path / "run")
  c = tiny_series_config(path, total_steps=2)
  c.label_efficiency.methods = ("ssl_finetune",)
  c.label_efficiency.keep = "ssl_finetune@1"
  experiment.run(config_lib.finalize(c, workdir), workdir)
  kept = os.path.join(workdir, "kept", "ssl_finetune-1")
  info = json.load(open(os.path.join(kept, "classifier.json")))
  assert info["classes"] == ["3", "7", "11"] and info["draw"] == 0
  out = str(tmp_path / "pred.csv")
  prediction.predict(kept, f"npz:{path}", out, split="test")
  rows, _ = _csv(out)
  accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
  assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-9)
  assert {r["predicted_name"] for r in rows} <= {"3", "7", "11"}
  c.label_efficiency.keep = "ssl_svm@1"  # not one network
  with pytest.raises(ValueError, match="label_efficiency.keep='ssl_svm@1'"):
    prediction.parse_keep(c)
  c.label_efficiency.keep = "ssl_finetune@7"  # not a budget of the study
  with pytest.raises(ValueError, match="BUDGET one of"):
    prediction.parse_keep(c)
