"""tfds:NAME text datasets: prepare's jsonl:DIR -> ArrayRecord round trip, TFDS layouts (GLUE, IMDB)
and their errors, and the text job reading one through config.data.data_dir."""

import json
import os

import numpy as np
import pytest

from ssl_jax.modalities import text as text_modality
from ssl_jax.data import prepare
from ssl_jax.data import text
from text_helpers import make_dir
from text_helpers import write_jsonl

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(jsonl dir, tfds data_dir) of one tiny corpus: 3 classes, unlabelled and empty train rows,
  non-ASCII texts, written in shards of 7 so every split spans several."""
  root = make_dir(str(tmp_path_factory.mktemp("corpus")), n_train=30, n_test=12, n_unlabeled=9)
  with open(os.path.join(root, "train.jsonl"), "a") as f:
    for row in (
        {"text": "", "label": 1},
        {"text": "no label here", "label": None},
        {"text": "café crème — 東京 🎬", "label": 2},
        {"text": "minus one", "label": -1},
    ):
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  prepare.main(
      [
          f"--input=jsonl:{root}",
          "--name=tiny_text",
          f"--data_dir={data_dir}",
          "--examples_per_shard=7",
      ]
  )
  return root, data_dir


def _same_corpus(got, want):
  assert got.train_texts == want.train_texts and got.test_texts == want.test_texts
  assert got.unlabeled_texts == want.unlabeled_texts and got.num_classes == want.num_classes
  np.testing.assert_array_equal(got.train_labels, want.train_labels)
  np.testing.assert_array_equal(got.test_labels, want.test_labels)


def test_prepared_jsonl_corpus_reads_back_as_jsonl_reads_it(prepared):
  root, data_dir = prepared
  got, want = text.load("tfds:tiny_text", data_dir=data_dir), text.load(f"jsonl:{root}")
  _same_corpus(got, want)
  assert (len(got.train_texts), len(got.test_texts), len(got.unlabeled_texts)) == (33, 12, 9)
  assert list(got.train_labels[-3:]) == [-1, 2, -1] and "café crème — 東京 🎬" in got.train_texts
  assert got.name == "tfds:tiny_text" and got.classes == ["0", "1", "2"]
  assert want.skipped_empty and not got.skipped_empty  # prepare skipped (and printed) the empty one
  assert (
      text.load("tfds:tiny_text:1.0.0", data_dir=data_dir, num_classes=3).train_texts
      == got.train_texts
  )
  builder = tfds.builder("tiny_text", data_dir=data_dir)
  assert sorted(builder.info.splits.keys()) == ["test", "train", "unlabeled"]
  assert builder.info.splits["train"].num_shards == 5  # 33 examples, 7 a shard
  assert text.is_text_spec("tfds:tiny_text") and not text.is_text_spec("folder:x")


def test_text_job_reads_tfds_through_config_data_dir(prepared):
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  root, data_dir = prepared
  c = config_lib.base_config()
  c.data.source, c.data.data_dir, c.data.num_classes = "tfds:tiny_text", data_dir, 3
  _same_corpus(text_modality.load_corpus(c), text.load(f"jsonl:{root}"))
  c.data.num_classes = 4
  with pytest.raises(
      ValueError, match=r"tfds:tiny_text has 3 classes but config.data.num_classes=4"
  ):
    text_modality.load_corpus(c)


def test_prepare_refuses_what_jsonl_refuses_and_leaves_nothing(prepared, tmp_path):
  root, data_dir = prepared
  bad = make_dir(str(tmp_path / "bad"))
  with open(os.path.join(bad, "train.jsonl"), "ab") as f:
    f.write(b'{"text": "caf\xe9", "label": 1}\n')
  with pytest.raises(ValueError, match=r"train.jsonl:31: byte 0xe9 at column \d+ is not UTF-8"):
    prepare.prepare(f"jsonl:{bad}", name="bad_text", data_dir=str(tmp_path / "tfds"))
  assert not os.path.exists(tmp_path / "tfds" / "bad_text" / "1.0.0")
  write_jsonl(
      os.path.join(bad, "train.jsonl"), [{"text": "a", "label": 0}, {"text": "b", "label": 3}]
  )
  with pytest.raises(ValueError, match=r"train.jsonl:2: label 3 is outside \[0, 3\)"):
    prepare.prepare(f"jsonl:{bad}", name="bad_text", data_dir=str(tmp_path / "tfds"), num_classes=3)
  with pytest.raises(FileExistsError, match="--overwrite"):
    prepare.prepare(f"jsonl:{root}", name="tiny_text", data_dir=data_dir)
  with pytest.raises(
      ValueError, match="--holdout_per_class, --skip_corrupt and --channels are for images"
  ):
    prepare.prepare(f"jsonl:{root}", name="other", data_dir=data_dir, holdout_per_class=5)
  prepare.prepare(f"jsonl:{root}", name="four", data_dir=str(tmp_path / "tfds"), num_classes=4)
  assert text.load("tfds:four", data_dir=str(tmp_path / "tfds")).num_classes == 4


def _write(data_dir, name, features, splits):
  """A TFDS ArrayRecord dataset of {split: [example dicts]} in DATA_DIR/NAME/1.0.0, laid out as
  prepare or `tfds build` writes one (NAME may be dataset/config)."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top

  out = os.path.join(data_dir, name, "1.0.0")
  os.makedirs(out)
  features = tfds.features.FeaturesDict(features)
  infos = []
  for split, examples in splits.items():
    writer = array_record_module.ArrayRecordWriter(
        os.path.join(out, f"{name.split('/')[0]}-{split}.array_record-00000-of-00001"),
        "group_size:1",
    )
    for example in examples:
      writer.write(features.serialize_example(example))
    writer.close()
    infos.append(
        tfds.core.SplitInfo(
            name=split, shard_lengths=[len(examples)], num_bytes=0, filename_template=None
        )
    )
  tfds.folder_dataset.write_metadata(
      data_dir=out, features=features, split_infos=infos, check_data=False
  )


def _rows(key, n, labels=(0, 1), prefix="s"):
  return [{key: f"{prefix} {i}", "label": labels[i % len(labels)]} for i in range(n)]


def test_glue_and_imdb_layouts(tmp_path, capsys):
  d = str(tmp_path)
  glue = {
      "sentence": tfds.features.Text(),
      "idx": np.int32,
      "label": tfds.features.ClassLabel(names=["negative", "positive"]),
  }
  _write(
      d,
      "glue_like/sst2",
      glue,
      {  # GLUE's layout: a config, test labels hidden (-1)
          "train": [dict(r, idx=i) for i, r in enumerate(_rows("sentence", 8))],
          "validation": [dict(r, idx=i) for i, r in enumerate(_rows("sentence", 4, prefix="v"))],
          "test": [dict(r, idx=i) for i, r in enumerate(_rows("sentence", 5, labels=(-1,)))],
      },
  )
  corpus = text.load("tfds:glue_like/sst2:1.0.0", data_dir=d)
  assert corpus.test_texts == ["v 0", "v 1", "v 2", "v 3"] and corpus.test_labels.tolist() == [
      0,
      1,
      0,
      1,
  ]
  assert corpus.classes == ["negative", "positive"] and corpus.unlabeled_texts == []
  assert (
      "tfds:glue_like/sst2:1.0.0: no labelled 'test' split; testing on 'validation'"
      in capsys.readouterr().out
  )
  # without its config: past our missing-dataset check, tfds itself names the configs there
  with pytest.raises(Exception, match="Possible configs are:\n\t- sst2"):
    text.load("tfds:glue_like", data_dir=d)
  imdb = {"content": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}
  _write(
      d,
      "imdb_like",
      imdb,
      {
          "train": _rows("content", 6) + [{"content": " ", "label": 0}],
          "test": _rows("content", 4, prefix="t"),
          "unsupervised": _rows("content", 3, labels=(-1,), prefix="u"),
      },
  )
  corpus = text.load("tfds:imdb_like", data_dir=d)
  assert corpus.unlabeled_texts == ["u 0", "u 1", "u 2"] and len(corpus.train_texts) == 6
  assert corpus.skipped_empty == {"tfds:imdb_like:train": 1}


def test_bad_tfds_text_datasets_name_what_is_wrong(tmp_path):
  d = str(tmp_path)
  label = tfds.features.ClassLabel(num_classes=2)
  _write(
      d, "no_text", {"title": tfds.features.Text(), "label": label}, {"train": _rows("title", 4)}
  )
  with pytest.raises(
      FileNotFoundError, match=r"tfds:nothing: no prepared dataset .*there: \['no_text'\]"
  ):
    text.load("tfds:nothing", data_dir=d)
  with pytest.raises(
      KeyError,
      match=r"has features \['label', 'title'\]; a text dataset needs a text "
      r"feature named one of \['text', 'sentence', 'content'\]",
  ):
    text.load("tfds:no_text", data_dir=d)
  _write(d, "no_label", {"text": tfds.features.Text()}, {"train": [{"text": "a"}]})
  with pytest.raises(
      ValueError,
      match=r"has no 'label' feature \(features \['text'\]\); text "
      "classification needs a ClassLabel",
  ):
    text.load("tfds:no_label", data_dir=d)
  rows = _rows("text", 6)
  rows[3]["text"] = b"caf\xe9"
  _write(
      d,
      "bad_bytes",
      {"text": tfds.features.Text(), "label": label},
      {"train": rows, "test": rows[:3]},
  )
  with pytest.raises(
      ValueError, match=r"tfds:bad_bytes:train\[3\] 'text': byte 0xe9 at position 3 is " "not UTF-8"
  ):
    text.load("tfds:bad_bytes", data_dir=d)
  test = _rows("text", 4, prefix="t")
  test[2]["label"] = -1
  _write(
      d,
      "half_test",
      {"text": tfds.features.Text(), "label": label},
      {"train": _rows("text", 4), "test": test},
  )
  with pytest.raises(
      ValueError, match=r"tfds:half_test:test\[2\] is unlabelled \(-1\), as are 0 more"
  ):
    text.load("tfds:half_test", data_dir=d)
  _write(
      d, "train_only", {"text": tfds.features.Text(), "label": label}, {"train": _rows("text", 4)}
  )
  with pytest.raises(
      ValueError, match=r"neither a 'test' nor a 'validation' split; splits: \['train'\]"
  ):
    text.load("tfds:train_only", data_dir=d)
  _write(
      d,
      "hidden_test",
      {"text": tfds.features.Text(), "label": label},
      {"train": _rows("text", 4), "test": _rows("text", 2, labels=(-1,))},
  )
  with pytest.raises(
      ValueError,
      match=r"every 'test' label is -1 \(unlabelled\) and there is no " "'validation' split",
  ):
    text.load("tfds:hidden_test", data_dir=d)
  with pytest.raises(ValueError, match="accepted: 'bbc_news', 'jsonl:DIR', 'tfds:NAME'"):
    text.load("txt:foo")


def test_text_main_job_runs_on_a_tfds_corpus(prepared, tmp_path):
  """The text job end to end (experiment.run: corpus, tokenizer, MLM steps, export, the study with
  its compile-free method) on tfds:NAME."""
  from ssl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from ssl_jax import experiment  # pylint: disable=g-import-not-at-top
  from test_text_run import text_config  # pylint: disable=g-import-not-at-top

  _, data_dir = prepared
  c = text_config(
      "unused", **{"data.source": "tfds:tiny_text", "data.data_dir": data_dir, "total_steps": 2}
  )
  c.label_efficiency.enabled = True
  c.label_efficiency.labels_per_class = (2,)
  c.label_efficiency.num_draws = 1
  c.label_efficiency.methods = ("tfidf_logreg",)
  workdir = str(tmp_path / "run")
  config_lib.finalize(c, workdir)
  run = experiment.run(c, workdir)
  assert run.history and np.isfinite(run.history[-1]["loss"])
  assert os.path.isfile(os.path.join(workdir, "hf_model", "config.json"))
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["dataset"] == "tfds:tiny_text" and results["num_test"] == 12
  assert results["num_pretraining_texts"] == 33 + 9
  assert 0 <= results["label_efficiency"][0]["accuracy_mean"] <= 1
