"""What every modality returns to experiment.py."""

import dataclasses
from typing import Any


@dataclasses.dataclass
class Pretrained:
  run: Any  # train.Run of the pre-training
  extra: dict  # facts for results.json (the last logged metrics, timings, the data's sizes)
  more: Any = None  # what the modality's study needs beyond the run (text: tokenizer, TAPT)


@dataclasses.dataclass
class Study:
  built: dict  # {name: (method, train inputs, test inputs)}, study/loop.py's input
  train_labels: Any
  test_labels: Any
  title: str  # of the plot
  extra: dict = dataclasses.field(default_factory=dict)  # more facts for results.json
  classes: list = None  # class names, where the data has them (a kept classifier records them)


@dataclasses.dataclass
class Inputs:
  """New data for a trained encoder (inference.py): rows to slice (`rows[a:b]` -> raw inputs, a
  lazily decoded split decodes only those), one id per row, labels (-1: none)."""

  rows: Any
  ids: list
  labels: Any
  skipped: list = dataclasses.field(default_factory=list)  # unreadable files left out


def pad_to(study_config, num_classes, num_labelled):
  """The largest labelled set of the study's budgets (-1: every one of `num_labelled`), to which
  the linear probes pad so that one compiled fit serves every budget."""
  budgets = list(study_config.labels_per_class)
  most = max([b * num_classes for b in budgets if b > 0] + [0])
  return max(most, num_labelled if -1 in budgets else 0)
