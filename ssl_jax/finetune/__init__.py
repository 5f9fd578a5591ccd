"""Fine-tuning with few labels, for every encoder of the registry and the generic BERT checkpoints.

  linear   a head on the frozen encoder's features (linear.py)
  last_n   the last N layer units at lr * backbone_lr_multiplier, the rest frozen (step.py)
  full     everything, optionally with layer-wise learning-rate decay (step.py)
  lora     rank-r adapters on regex-selected Dense/Conv kernels, base frozen (lora.py, step.py)
with label smoothing, AdamW, a light per-modality augmentation (inputs.py), early stopping on a
validation fold, and k-fold CV that picks hyperparameters from a small grid (kfold.py,
protocol.py; the methods it fits: fitting.py). Train and eval steps are jitted and sharded over
the pre-training mesh (model.py, step.py; losses: objectives.py). The study (`ssl_jax/study/`)
and the standalone command (`python -m ssl_jax.finetune`, standalone.py) both go through
protocol.py.
"""
