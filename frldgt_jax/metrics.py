"""MEGC2019 composite metrics over pooled predictions (docs/frldgt.md), exact in numpy.

Per class c (TP, FP, FN summed over all folds' pooled predictions):
    F1_c = 2 TP / (2 TP + FP + FN),   UF1 = mean_c F1_c,
    recall_c = TP_c / n_c,             UAR = mean_c recall_c.
Classes with an undefined ratio (no samples and no predictions for F1; no samples for recall)
score 0 and still count in the mean over all `num_classes` classes: scikit-learn's
f1_score / recall_score with labels=range(num_classes), average='macro', zero_division=0.
Per-database scores are slices of the same pooled predictions, never separate trainings.
"""
from typing import Mapping, Sequence

import numpy as np


def _check(name, values, num_classes):
  values = np.asarray(values)
  if values.ndim != 1:
    raise ValueError(f'{name} must be 1-D, got shape {values.shape}')
  if values.size and not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f'{name} must be integers, got dtype {values.dtype}')
  bad = np.flatnonzero((values < 0) | (values >= num_classes))
  if bad.size:
    raise ValueError(f'{name} has values outside [0, {num_classes}) at positions '
                     f'{bad[:10].tolist()}: {values[bad[:10]].tolist()}')
  return values.astype(np.int64)


def confusion_matrix(labels, predictions, num_classes: int = 3) -> np.ndarray:
  """int64 [C, C]: entry [t, p] counts examples of true class t predicted as p."""
  labels = _check('labels', labels, num_classes)
  predictions = _check('predictions', predictions, num_classes)
  if labels.shape != predictions.shape:
    raise ValueError(f'labels {labels.shape} and predictions {predictions.shape} differ in length')
  return np.bincount(labels * num_classes + predictions,
                     minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(numerator, denominator):
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  out = np.zeros_like(numerator)
  np.divide(numerator, denominator, out=out, where=denominator > 0)
  return out


def scores_from_confusion(cm) -> dict:
  """UF1, UAR, accuracy and per-class F1 / recall / support from a confusion matrix [C, C]."""
  cm = np.asarray(cm, np.int64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f'confusion matrix must be square, got shape {cm.shape}')
  tp = np.diag(cm)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  fp = predicted - tp
  fn = support - tp
  f1 = _safe_divide(2 * tp, 2 * tp + fp + fn)
  recall = _safe_divide(tp, support)
  total = int(cm.sum())
  return {
      'uf1': float(f1.mean()),
      'uar': float(recall.mean()),
      'accuracy': float(tp.sum() / total) if total else 0.0,
      'f1': f1,
      'recall': recall,
      'support': support,
      'count': total,
      'confusion': cm,
  }


def scores(labels, predictions, num_classes: int = 3) -> dict:
  """Pooled scores (see module docstring) of integer label / prediction arrays."""
  return scores_from_confusion(confusion_matrix(labels, predictions, num_classes))


def scores_by_database(labels, predictions, databases: Sequence[str],
                       num_classes: int = 3) -> Mapping[str, dict]:
  """{'composite': scores over all, <database>: scores of that database's slice, ...}."""
  databases = np.asarray(databases)
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  if not (databases.shape == labels.shape == predictions.shape):
    raise ValueError(f'labels {labels.shape}, predictions {predictions.shape} and databases '
                     f'{databases.shape} must have the same length')
  out = {'composite': scores(labels, predictions, num_classes)}
  for name in sorted(set(databases.tolist())):
    sel = databases == name
    out[name] = scores(labels[sel], predictions[sel], num_classes)
  return out
