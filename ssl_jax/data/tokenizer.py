"""Tokenizers for text runs: a checkpoint's own, or a WordPiece one trained on the unlabelled
corpus.

`for_run` decides, in this order: a tokenizer already saved in the run's directory (a resumed run
reads the very vocabulary it started with), the tokenizer of a transformers checkpoint directory
(continued pre-training keeps the model's vocabulary), else a new BERT-style WordPiece tokenizer
trained with HF `tokenizers` on the pre-training texts: BERT's normaliser (optionally lowercasing)
and pre-tokeniser, special tokens [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, continuation
pieces prefixed '##', the other ids in sorted order (`canonical_vocabulary`), learnt
deterministically (`train_wordpiece`: the same texts give the same vocabulary and ids in every
run), and the [CLS] A [SEP] (B [SEP]) template. Whatever it picked is saved
with `save_pretrained` into the run's directory, so `transformers.AutoTokenizer.from_pretrained`
loads it.
"""

import os

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece(texts, *, vocab_size, lowercase=True, min_frequency=2):
  """A transformers BertTokenizerFast whose WordPiece vocabulary is learnt from `texts`."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from tokenizers import (  # pylint: disable=g-import-not-at-top
      decoders,
      models,
      normalizers,
      pre_tokenizers,
      processors,
      trainers,
  )

  if vocab_size < len(SPECIAL_TOKENS) + 1:
    raise ValueError(f"config.text.vocab_size={vocab_size} is too small for a WordPiece vocabulary")
  normalizer = normalizers.BertNormalizer(
      clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
  )
  pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  # The trainer (BPE underneath) numbers the '##' pieces of single characters in hash-map order,
  # different in every process, and breaks ties between equally frequent merges by those numbers:
  # the same texts gave different vocabularies (tokenizers#1794). Given as special tokens, in
  # sorted order, they are numbered before training and every tie falls the same way; the final
  # tokenizer below is built afresh from the learnt pieces, without them as special tokens.
  continuing = set()
  for text in texts:
    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
      continuing.update(word[1:])
  trainer = trainers.WordPieceTrainer(
      vocab_size=vocab_size,
      min_frequency=min_frequency,
      special_tokens=list(SPECIAL_TOKENS) + ["##" + c for c in sorted(continuing)],
      continuing_subword_prefix="##",
      show_progress=False,
  )
  learner = tokenizers.Tokenizer(
      models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##")
  )
  learner.normalizer, learner.pre_tokenizer = normalizer, pre_tokenizer
  learner.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
  tok = tokenizers.Tokenizer(
      models.WordPiece(
          canonical_vocabulary(learner.get_vocab()),
          unk_token="[UNK]",
          continuing_subword_prefix="##",
      )
  )
  tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
  tok.add_special_tokens(list(SPECIAL_TOKENS))
  cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]",
      pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
  )
  tok.decoder = decoders.WordPiece(prefix="##")
  return transformers.BertTokenizerFast(
      tokenizer_object=tok,
      do_lower_case=lowercase,
      unk_token="[UNK]",
      sep_token="[SEP]",
      pad_token="[PAD]",
      cls_token="[CLS]",
      mask_token="[MASK]",
  )


def canonical_vocabulary(vocab):
  """{token: id} renumbered: the special tokens first, in SPECIAL_TOKENS' order, then the rest
  sorted. The trainer breaks frequency ties in a different order in every process (about 300 of
  8,000 BBC News pieces moved between runs), so the same texts gave different ids, a different
  random embedding per piece and different results; WordPiece reads only the set of pieces, so
  renumbering tokenizes every text exactly as before."""
  rest = sorted(t for t in vocab if t not in SPECIAL_TOKENS)
  return {t: i for i, t in enumerate([t for t in SPECIAL_TOKENS if t in vocab] + rest)}


def load(directory):
  import transformers  # pylint: disable=g-import-not-at-top

  try:
    return transformers.AutoTokenizer.from_pretrained(directory)
  except (OSError, ValueError) as e:
    raise ValueError(
        f"{directory}: no transformers tokenizer can be loaded from it ({e})"
    ) from None


def for_run(
    run_dir, texts, *, vocab_size, lowercase=True, min_frequency=2, checkpoint="", save=True
):
  """(tokenizer, its directory): see the module docstring. `run_dir/tokenizer` holds the copy."""
  directory = os.path.join(run_dir, "tokenizer")
  if os.path.isfile(os.path.join(directory, "tokenizer_config.json")):
    tokenizer = load(directory)
    if not checkpoint and len(tokenizer) > vocab_size:
      raise ValueError(
          f"{directory} holds a tokenizer of {len(tokenizer)} tokens but "
          f"config.text.vocab_size={vocab_size}; use a fresh workdir to train another"
      )
    return tokenizer, directory
  if checkpoint:
    tokenizer = load(checkpoint)
  else:
    tokenizer = train_wordpiece(
        texts, vocab_size=vocab_size, lowercase=lowercase, min_frequency=min_frequency
    )
  if save:
    tokenizer.save_pretrained(directory)
  return tokenizer, directory


def special_ids(tokenizer):
  return {
      "pad": tokenizer.pad_token_id,
      "cls": tokenizer.cls_token_id,
      "sep": tokenizer.sep_token_id,
      "mask": tokenizer.mask_token_id,
  }


def continuation_table(tokenizer):
  """bool (V,): which ids are word continuations ('##...' pieces), for whole-word masking."""
  table = np.zeros(len(tokenizer), bool)
  for token, index in tokenizer.get_vocab().items():
    if token.startswith("##") and len(token) > 2:
      table[index] = True
  return table
