"""Texts as token ids for the loop: `encode` (a corpus as one padded (N, L) int32 array) and
`TokenSource`.

A `TokenSource` has the loop's source contract (`len`, `source[i] -> {"inputs": int32 (L,) token
ids, "label": int}`, `labels`, `arrays()`); token ids travel under the loop's input key "inputs",
as images and series do, so the pipeline and the jitted step need no second code path.
"""

import numpy as np


def pad_length(lengths, max_len, multiple=8):
  """The batch length: the longest (truncated) example, rounded up to a multiple of `multiple`."""
  longest = min(int(max(lengths, default=1)), max_len)
  return -(-longest // multiple) * multiple


def encode(tokenizer, texts, *, max_len, multiple=8, batch=2048):
  """int32 ids (N, L): each text as [CLS] ... [SEP] truncated to `max_len` tokens, padded with the
  tokenizer's pad id to L = `pad_length` (one shape for the whole corpus, so one compile)."""
  rows = []
  for start in range(0, len(texts), batch):
    out = tokenizer(list(texts[start : start + batch]), truncation=True, max_length=max_len)
    rows += out["input_ids"]
  length = pad_length([len(r) for r in rows], max_len, multiple)
  ids = np.full((len(rows), length), tokenizer.pad_token_id, np.int32)
  for i, row in enumerate(rows):
    ids[i, : len(row)] = row
  return ids


class TokenSource:
  """Token ids (N, L) int32 with labels (N,) (-1: unlabelled): the loop's source contract."""

  modality = "text"

  def __init__(self, ids, labels, name="tokens"):
    self.ids, self.labels, self.name = np.asarray(ids, np.int32), np.asarray(labels, np.int32), name
    if self.ids.ndim != 2 or len(self.ids) != len(self.labels):
      raise ValueError(
          f"{name}: ids must be (N, L) with N labels; got ids {self.ids.shape}, "
          f"{len(self.labels)} labels"
      )

  def __len__(self):
    return len(self.ids)

  def __getitem__(self, index):
    return {"inputs": self.ids[index], "label": self.labels[index]}

  read = __getitem__

  def arrays(self):
    return self.ids, self.labels

  def file_names(self):
    return [str(i) for i in range(len(self))]
