"""One command per study: pre-train, then (if configured) the label-efficiency study."""
import os

import jax

from ssl_jax import evaluators
from ssl_jax import label_efficiency
from ssl_jax import timeseries_eval
from ssl_jax import train


def validate(config):
  """Fails on unknown task or evaluator settings before any data is read."""
  train.build_task(config)
  evaluators.build_all(config.evals, data=None)


def run(config, workdir):
  validate(config)
  modality = getattr(train.build_task(config), "modality", "image")
  if modality == "timeseries":
    return timeseries_eval.run(config, workdir)[0]  # the UCR SVM protocol and a few-label study
  if modality == "text":
    from ssl_jax import text_eval  # pylint: disable=g-import-not-at-top
    return text_eval.run(config, workdir)[0]  # tokenizer, MLM pre-training(s), the text study
  result = train.train(config, workdir)
  extra = {"pretraining": result.history[-1] if result.history else {}}
  if config.label_efficiency.enabled:
    rows = label_efficiency.run(config, result.features_of, result.train_source, result.test_source,
                                result.components.batch_sharding,
                                pretrained_encoder=result.components.encoder_variables(result.state))
    if jax.process_index() == 0:
      label_efficiency.write(workdir, rows, extra, title=label_efficiency.title_of(config))
      print(f"wrote {os.path.join(workdir, 'results.json')} and label_efficiency.png", flush=True)
  return result
