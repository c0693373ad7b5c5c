"""FRL-DGT losses: class-weighted cross-entropy and the stage-2 total L_CE + lambda * L_DGM.

All losses are computed in float32 whatever the compute dtype. Batches may be padded: `mask`
[B] (True = real example) removes padded rows from every sum and count.
"""
import jax
import jax.numpy as jnp
import numpy as np


def class_weights(labels, num_classes: int = 3) -> np.ndarray:
  """Inverse-frequency class weights from the training labels of one fold, float32 [C].

  w_c = N / (C_present * n_c) for classes present (so the weighted sample mean is 1) and 0 for
  classes absent from `labels`. Labels must be integers in [0, num_classes).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f'class_weights needs a non-empty 1-D label array, got shape {labels.shape}')
  bad = labels[(labels < 0) | (labels >= num_classes)]
  if bad.size:
    raise ValueError(f'class_weights: labels outside [0, {num_classes}): {np.unique(bad)}')
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  present = counts > 0
  weights = np.zeros(num_classes)
  weights[present] = labels.size / (present.sum() * counts[present])
  return weights.astype(np.float32)


def weighted_cross_entropy(logits, labels, weights=None, mask=None):
  """Class-weighted softmax cross-entropy, reduced as sum_i w_{y_i} CE_i / sum_i w_{y_i}.

  (The reduction of torch.nn.CrossEntropyLoss(weight=w) and of sklearn's log_loss with
  sample_weight = w[y].) Returns (loss scalar, weight sum scalar); the weight sum lets callers
  combine batches exactly. logits [B,C], labels int [B], weights [C] or None (all ones),
  mask bool [B] or None.
  """
  logits = logits.astype(jnp.float32)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None].astype(jnp.int32),
                            axis=1)[:, 0]
  w = (jnp.ones_like(ce) if weights is None
       else jnp.asarray(weights, jnp.float32)[labels.astype(jnp.int32)])
  if mask is not None:
    w = w * jnp.asarray(mask, jnp.float32)
  total = jnp.sum(w)
  return jnp.sum(w * ce) / jnp.maximum(total, 1e-12), total


def total_loss(logits, labels, aux, dgm_weight: float, weights=None, mask=None):
  """Stage-2 loss L = L_CE + dgm_weight * L_DGM.

  L_DGM is the mean over (unmasked) examples of aux['dgm_loss'] (per example, from the model).
  Returns (loss, dict of scalars: 'loss', 'ce', 'dgm_loss', 'photometric', 'smoothness').
  """
  ce, _ = weighted_cross_entropy(logits, labels, weights, mask)
  m = (jnp.ones(logits.shape[:1], jnp.float32) if mask is None
       else jnp.asarray(mask, jnp.float32))
  count = jnp.maximum(jnp.sum(m), 1.0)
  means = {k: jnp.sum(aux[k].astype(jnp.float32) * m) / count
           for k in ('dgm_loss', 'photometric', 'smoothness')}
  loss = ce + dgm_weight * means['dgm_loss']
  return loss, dict(means, loss=loss, ce=ce)
