"""The text study at full length on BBC News: a longer TAPT, contrastive few-label fine-tuning
(SetFit's recipe) of the generic and the TAPT encoder, the from-scratch models' rates by CV.

  python -m ssl_jax.main --config=configs/text_full.py --workdir=/tmp/ssl_text_full
  python -m ssl_jax.main --config=configs/text_full.py:tapt_steps=3000 --workdir=DIR

configs/text_default.py (the 10-minute main job) plus:
  - generic_contrastive / tapt_contrastive: all-MiniLM-L6-v2 as it ships / after TAPT, tuned on
    pairs of the labelled articles and given SetFit's logistic-regression head
    (finetune/contrastive.py): at least 40 passes over the labels in batches of 16 (at least 20
    steps), at SetFit's body rate 2e-5, no augmentation (SetFit has none);
  - supervised_scratch / ssl_finetune choose their rate among 1e-3, 3e-4 and 3e-3 by 3-fold CV
    where every class has 3 labels (configs/text_default.py:cv=True);
  - TAPT for `tapt_steps` steps (default 1,000: on the curve of experiments/tapt_curve.py, TAPT
    pays from there; 200 steps did not) with 6 % warm-up.
Its measured table and time: experiments/text.md.

Published figures for orientation (Tunstall et al. 2022 and Hugging Face's SetFit announcement;
the RAFT benchmark's 11 tasks with 50 labels each, not our data): SetFit on MPNet (110M
parameters) 66.9, SetFit on RoBERTa-large 71.3, GPT-3 in context 62.7, humans 73.5. Side by side
on our draws, same model (all-MiniLM-L6-v2) and test set, with the `setfit` library:
experiments/text.md.
"""

from ssl_jax import config as config_lib

_default = config_lib.load_module("text_default.py", beside=__file__)

CONTRASTIVE = dict(contrastive_steps=20, contrastive_epochs=40.0, augment=False)


def get_config(arg=None):
  args = config_lib.parse_arg(arg, tapt_steps=1000)
  c = _default.get_config("cv=True")
  c.label_efficiency.methods = _default.METHODS + ("generic_contrastive", "tapt_contrastive")
  c.finetune.per_method.generic_contrastive = dict(CONTRASTIVE)
  c.finetune.per_method.tapt_contrastive = dict(CONTRASTIVE)
  c.text.tapt.steps = int(args["tapt_steps"])
  c.text.tapt.warmup_steps = max(6, round(0.06 * c.text.tapt.steps))
  return c
