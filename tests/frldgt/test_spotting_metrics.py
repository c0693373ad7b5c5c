"""The MEGC spotting metric and STRS (frldgt_jax/spotting/metrics.py) against the STRS reference
evaluator's own output on the committed fixture (tests/fixtures/strs/, made by
`.ci/strs_reference/run`), and on cases worked out by hand."""
import csv
import json
import math
import pathlib

import pytest

from frldgt_jax.spotting import metrics
from frldgt_jax.spotting.intervals import Interval

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "strs"


def _fixture():
  """{dataset: (truths, predictions)}, each {(subject, video): [Interval]} in file order."""
  out = {}
  with open(FIXTURE / "intervals.csv", newline="") as f:
    for row in csv.DictReader(f):
      truths, preds = out.setdefault(row["dataset"], ({}, {}))
      table = truths if row["source"] == "truth" else preds
      emotion = row["emotion"]
      label = metrics.CLASS_NAMES.index(emotion) if emotion in metrics.CLASS_NAMES else -1
      table.setdefault((row["subject"], row["video"]), []).append(
          Interval(int(row["onset"]), int(row["offset"]), row["kind"], label=label,
                   emotion=emotion))
  return out


def _reference():
  return json.loads((FIXTURE / "reference.json").read_text())


def _same(ours: dict, theirs: dict):
  assert set(ours) == set(theirs)
  for key, value in theirs.items():
    if math.isnan(value):
      assert math.isnan(ours[key]), key
    else:
      assert ours[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("run", range(12))
def test_strs_matches_the_reference_evaluator(run):
  """Every run of the evaluator (dataset x expression types x analysis classes), number for
  number, with the reference's quirks reproduced."""
  ref = _reference()["runs"][run]
  truths, preds = _fixture()[ref["dataset"]]
  ours = metrics.strs(truths, preds, kinds=ref["kinds"], classes=ref["classes"],
                      reference_quirks=True)
  _same(ours.as_dict(), ref["output"])


def test_per_type_spotting_matches_the_reference_run_on_that_type():
  """Per-type spotting counts are the evaluator's counts on that type's intervals alone."""
  fixture = _fixture()
  for ref in _reference()["runs"]:
    if len(ref["kinds"]) != 1:
      continue
    truths, preds = fixture[ref["dataset"]]
    counts = metrics.spotting(truths, preds, reference_quirks=True).per_kind[ref["kinds"][0]]
    out = ref["output"]
    assert (counts.tp, counts.fp, counts.fn) == (out["TP spotting"], out["FP spotting"],
                                                 out["FN spotting"])
    assert counts.f1 == pytest.approx(out["F1-score spotting"], rel=1e-12)


def test_main_py_output_matches_to_its_four_digits():
  """The checkout's own main.py, run unmodified, prints the same numbers rounded."""
  fixture = _fixture()
  for ref in _reference()["main_py"]:
    truths, preds = fixture[ref["dataset"]]
    ours = metrics.strs(truths, preds, kinds=ref["kinds"], reference_quirks=True).as_dict()
    for line in ref["stdout"].strip().splitlines():
      key, value = line.rsplit(" : ", 1)
      assert round(ours[key], 4) == pytest.approx(float(value), abs=1e-12), key


def test_protocol_mode_counts_what_the_reference_skips():
  """Without the quirks, a subject with no prediction (s16) adds its 2 annotations as false
  negatives and a prediction on a video without annotation (s19/0101) is a false positive."""
  truths, preds = _fixture()["casme2_lv"]
  quirks = metrics.spotting(truths, preds, reference_quirks=True)
  strict = metrics.spotting(truths, preds)
  assert strict.per_kind["micro"] == quirks.per_kind["micro"] + metrics.Counts(0, 1, 1)
  assert strict.per_kind["macro"] == quirks.per_kind["macro"] + metrics.Counts(0, 0, 1)
  assert strict.overall == metrics.Counts(5, 4, 5)
  assert strict.per_video["micro"][("s19", "0101")] == metrics.Counts(0, 1, 0)
  assert ("s19", "0101") not in quirks.per_video["micro"]


def test_matching_rule_closed_form():
  """IoU on inclusive frames; one prediction takes every annotation it covers at >= 0.5; a
  second prediction on a taken annotation is a false positive."""
  a = Interval(100, 109, "micro")
  assert metrics.iou(a, Interval(100, 104, "micro")) == 0.5
  assert metrics.iou(a, Interval(110, 120, "micro")) == 0.0
  assert metrics.iou(a, Interval(109, 109, "micro")) == 0.1
  two = [Interval(50, 59, "micro"), Interval(60, 69, "micro")]
  assert metrics.match([Interval(50, 69, "micro")], two) == ([(0, 0), (0, 1)], [], [])
  assert metrics.match([Interval(50, 68, "micro")], two) == ([(0, 0)], [], [1])
  assert metrics.match([a, a], [a]) == ([(0, 0)], [1], [])
  assert metrics.match([], [a]) == ([], [], [0])


def test_a_macro_predicted_as_micro_is_a_miss_per_type_and_a_hit_pooled():
  truths = {("s", "v"): [Interval(300, 339, "macro", label=0)]}
  preds = {("s", "v"): [Interval(300, 339, "micro", label=0)]}
  spot = metrics.spotting(truths, preds)
  assert spot.per_kind == {"micro": metrics.Counts(0, 1, 0), "macro": metrics.Counts(0, 0, 1)}
  assert spot.as_dict()["overall"]["f1"] == 0.0
  pooled = metrics.strs(truths, preds, kinds=("micro", "macro"))
  assert pooled.spotting == metrics.Counts(1, 0, 0) and pooled.strs == 1.0


def test_strs_closed_form_protocol_mode():
  """Two pairs, negative->negative and surprise->negative, over classes {negative, surprise}:
  negative P=1/2 R=1, surprise P=0 R=0; means P=1/4 R=1/2, F1=1/3; spotting 2 TP 1 FN."""
  truths = {("s", "v"): [Interval(0, 9, "micro", label=0), Interval(20, 29, "micro", label=2),
                         Interval(40, 49, "micro", label=1)]}
  preds = {("s", "v"): [Interval(0, 9, "micro", label=0), Interval(20, 29, "micro", label=0)]}
  res = metrics.strs(truths, preds, classes=("negative", "surprise"))
  assert res.spotting == metrics.Counts(2, 0, 1)
  assert (res.precision, res.recall, res.uar) == (0.25, 0.5, 0.5)
  assert res.f1 == pytest.approx(1 / 3) and res.uf1 == pytest.approx(1 / 3)
  assert res.analysis == metrics.Counts(1, 1, 1)
  assert res.strs == pytest.approx(0.8 / 3)
  empty = metrics.strs({("s", "v"): [Interval(0, 9, "micro", label=0)]}, {})
  assert (empty.spotting, empty.f1, empty.strs) == (metrics.Counts(0, 0, 1), 0.0, 0.0)
