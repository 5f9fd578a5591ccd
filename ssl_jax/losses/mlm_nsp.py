"""BERT's pre-training loss (Devlin et al. 2019): masked LM plus next-sentence prediction.

loss = masked_lm (losses/mlm.py) + the mean cross-entropy of the 2-way NSP logits over the global
batch (label 0: B follows A, 1: B is random, transformers' convention), as BERT's
`run_pretraining.py` sums the two.
"""

import jax
import jax.numpy as jnp
import optax

from ssl_jax.losses.mlm import masked_lm


def mlm_nsp(mlm_logits, targets, weights, nsp_logits, nsp_labels, *, axis_name=None):
  """Returns (loss, metrics); the MLM arguments as in `masked_lm`, nsp_logits (B, 2),
  nsp_labels (B,)."""
  if nsp_logits.shape != nsp_labels.shape + (2,):
    raise ValueError(
        f"nsp_logits must be (B, 2) for nsp_labels (B,); got {nsp_logits.shape} and "
        f"{nsp_labels.shape}"
    )
  mlm, metrics = masked_lm(mlm_logits, targets, weights, axis_name=axis_name)
  nsp_logits = nsp_logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, nsp_labels)
  correct = (jnp.argmax(nsp_logits, -1) == nsp_labels).astype(jnp.float32)
  sums = (jnp.sum(ce), jnp.sum(correct), jnp.asarray(ce.shape[0], jnp.float32))
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  nsp, accuracy = sums[0] / sums[2], sums[1] / sums[2]
  return mlm + nsp, {**metrics, "mlm_loss": mlm, "nsp_loss": nsp, "nsp_accuracy": accuracy}
