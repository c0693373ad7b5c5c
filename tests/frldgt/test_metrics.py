"""MEGC2019 composite metrics: UF1 / UAR against scikit-learn and hand computations."""
import csv

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score, recall_score

from frldgt_jax import metrics
from frldgt_jax.data import builders

COMPOSITE_CSV = builders.default_composite_csv()  # the package's copy of the 442-clip list


def _sklearn(labels, predictions):
  kw = dict(labels=[0, 1, 2], average='macro', zero_division=0)
  return f1_score(labels, predictions, **kw), recall_score(labels, predictions, **kw)


def test_uf1_uar_equal_sklearn_macro_on_random_sets_with_missing_classes():
  rng = np.random.default_rng(0)
  for trial in range(400):
    n = int(rng.integers(1, 40))
    true_classes = rng.choice(3, size=int(rng.integers(1, 4)), replace=False)
    pred_classes = rng.choice(3, size=int(rng.integers(1, 4)), replace=False)
    labels = rng.choice(true_classes, n)
    predictions = rng.choice(pred_classes, n)
    if trial % 4 == 0:  # mostly-correct predictors too
      keep = rng.random(n) < 0.8
      predictions = np.where(keep, labels, predictions)
    s = metrics.scores(labels, predictions)
    f1, rec = _sklearn(labels, predictions)
    assert s['uf1'] == pytest.approx(f1, abs=1e-12), (labels, predictions)
    assert s['uar'] == pytest.approx(rec, abs=1e-12), (labels, predictions)
    np.testing.assert_array_equal(s['confusion'],
                                  sk_confusion_matrix(labels, predictions, labels=[0, 1, 2]))
    np.testing.assert_allclose(
        s['f1'], f1_score(labels, predictions, labels=[0, 1, 2], average=None, zero_division=0))


def test_hand_computed_case():
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
  preds = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 0])
  s = metrics.scores(labels, preds)
  # class 0: TP 2, FP 2, FN 2 -> F1 4/8; class 1: TP 1, FP 1, FN 1 -> 2/4;
  # class 2: TP 3, FP 1, FN 1 -> 6/8. Recalls 2/4, 1/2, 3/4.
  np.testing.assert_allclose(s['f1'], [0.5, 0.5, 0.75])
  assert s['uf1'] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
  assert s['uar'] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
  assert s['accuracy'] == pytest.approx(0.6)
  np.testing.assert_array_equal(s['support'], [4, 2, 4])
  # A class never present and never predicted scores 0 and still counts (zero_division=0).
  s = metrics.scores(np.array([0, 0, 1]), np.array([0, 1, 1]))
  np.testing.assert_allclose(s['f1'], [2 / 3, 2 / 3, 0.0])
  assert s['uf1'] == pytest.approx(4 / 9)
  assert s['uar'] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def _composite_labels():
  with open(COMPOSITE_CSV, newline='') as f:
    rows = list(csv.DictReader(f))
  return (np.array([int(r['label']) for r in rows]), np.array([r['dataset'] for r in rows]))


def test_all_negative_classifier_on_the_composite_list():
  labels, databases = _composite_labels()
  np.testing.assert_array_equal(np.bincount(labels), [250, 109, 83])  # frldgt.md
  s = metrics.scores(labels, np.zeros_like(labels))
  assert s['accuracy'] == pytest.approx(250 / 442)
  assert s['accuracy'] == pytest.approx(0.565, abs=1e-3)  # frldgt.md: 0.565 (250/442 = 0.5656)
  assert s['uf1'] == pytest.approx((2 * 250 / (2 * 250 + 192)) / 3)
  assert s['uar'] == pytest.approx(1 / 3)
  f1, rec = _sklearn(labels, np.zeros_like(labels))
  assert (s['uf1'], s['uar']) == (pytest.approx(f1), pytest.approx(rec))
  by_db = metrics.scores_by_database(labels, np.zeros_like(labels), databases)
  assert set(by_db) == {'composite', 'casme2', 'samm', 'smic'}
  assert {k: v['count'] for k, v in by_db.items()} == {
      'composite': 442, 'casme2': 145, 'samm': 133, 'smic': 164}


def test_per_database_scores_are_slices_of_pooled_predictions():
  rng = np.random.default_rng(1)
  n = 200
  labels = rng.integers(0, 3, n)
  preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, 3, n))
  dbs = rng.choice(['casme2', 'samm', 'smic'], n)
  out = metrics.scores_by_database(labels, preds, dbs)
  for db in ('casme2', 'samm', 'smic'):
    sel = dbs == db
    f1, rec = _sklearn(labels[sel], preds[sel])
    assert out[db]['uf1'] == pytest.approx(f1) and out[db]['uar'] == pytest.approx(rec)
  f1, rec = _sklearn(labels, preds)
  assert out['composite']['uf1'] == pytest.approx(f1)
  assert out['composite']['uar'] == pytest.approx(rec)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match=r'labels has values outside \[0, 3\) at positions \[1\]'):
    metrics.confusion_matrix([0, 3, 1], [0, 1, 1])
  with pytest.raises(ValueError, match='predictions must be integers'):
    metrics.confusion_matrix([0, 1], [0.0, 1.0])
  with pytest.raises(ValueError, match='differ in length'):
    metrics.confusion_matrix([0, 1], [0])
