"""Small labelled text corpora for the text tests (jsonl:DIR layout)."""

import gzip
import json
import os

import numpy as np

WORDS = {
    0: "goal match team coach league score player season",
    1: "market shares profit bank economy growth price company",
    2: "film actor music award album star movie director",
}


def sentences(n, seed=0):
  """Short texts whose words come mostly from their class's list (class i of n % 3)."""
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for i in range(n):
    words = WORDS[i % 3].split()
    texts.append(" ".join(rng.choice(words, rng.integers(4, 12))) + ".")
    labels.append(i % 3)
  return texts, labels


def write_jsonl(path, rows, gz=False):
  lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
  with (gzip.open if gz else open)(path, "wb") as f:
    f.write(lines)


def make_dir(root, n_train=30, n_test=12, n_unlabeled=9):
  os.makedirs(root, exist_ok=True)
  texts, labels = sentences(n_train + n_test + n_unlabeled)
  rows = [{"text": t, "label": y} for t, y in zip(texts, labels)]
  write_jsonl(os.path.join(root, "train.jsonl"), rows[:n_train])
  write_jsonl(os.path.join(root, "test.jsonl"), rows[n_train : n_train + n_test])
  write_jsonl(
      os.path.join(root, "unlabeled.jsonl"), [{"text": r["text"]} for r in rows[n_train + n_test :]]
  )
  return root
