"""The MEGC spotting metric (IoU >= 0.5, F1 per expression type and overall) and STRS.

Plain Python on `Interval` lists, keyed per video by (subject, video).
The matching rule is the one of the STRS reference evaluator (genbing99/STRS-Metric,
strs_metric.py, `Evaluator.evaluate_spotting`), read from its code:

* IoU counts frames with both ends inclusive: |a & b| / |a | b| over the frame sets.
* Predictions are visited in the order given; each one is compared with every annotated
  interval of its video, in order, and takes EVERY one it overlaps at IoU >= threshold that no
  earlier prediction took: one prediction over two annotations is two true positives. A
  prediction that takes none is a false positive (also when the annotation it overlaps was
  taken already: two predictions on one annotation are one TP and one FP). Annotations nobody
  took are false negatives.

Spotting is scored per expression type, as the MEGC 2020 protocol does (He et al., FG 2020;
HeyingGithub/Baseline-project-for-MEGC2020_spotting, MDMD_results/evaluation_all_p.py scores
'micro' and 'macro' separately, and its README's "overall" column sums their TP/FP/FN): the
predicted micro intervals against the annotated micro intervals, the macro against the macro,
and overall F1 from the summed counts. A macro-expression predicted as 'micro' is thus a micro
false positive and a macro false negative.

STRS (spot-then-recognise score, Liong et al. 2023; MEGC 2023-2025) = spotting F1 x analysis F1,
where the analysis F1 is computed on the true-positive pairs alone: per class c (the classes of
the annotations, 'others' included, unless `classes` names them), precision and recall of "is c"
over those pairs; the analysis precision and recall are the means over the classes and its F1
is 2PR/(P+R) of those means (UF1, the mean of the per-class F1, is reported beside). Pairs whose
annotated class is not among `classes` are dropped first. The reference evaluator knows no
expression type, so STRS matches predictions and annotations of the chosen `kinds` together.

`reference_quirks=True` reproduces the reference evaluator's behaviour where it departs from
the protocol as written (docs/spotting_metric.md lists them): subjects without any prediction
and videos without any annotation are skipped; a class whose binary labels over the pairs hold a
single value scores 0 (sklearn's 1x1 confusion matrix fails to unpack); "FN analysis" repeats the
FP count; UAR is the mean precision; 0/0 in the analysis F1 is NaN. The committed fixture
(tests/fixtures/strs/) checks both modes against the evaluator's own output.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

from frldgt_jax.spotting.intervals import KINDS, Interval

VideoKey = tuple[str, str]                     # (subject, video)
Annotation = Mapping[VideoKey, Sequence[Interval]]

CLASS_NAMES = ("negative", "positive", "surprise")
OTHERS = "others"


def class_name(interval: Interval) -> str:
  """The MEGC class an interval carries: CLASS_NAMES[label], or 'others' for label -1."""
  return CLASS_NAMES[interval.label] if interval.label >= 0 else OTHERS


def iou(a: Interval, b: Interval) -> float:
  """Intersection over union of two intervals' frame sets, both ends inclusive."""
  inter = max(0, min(a.offset, b.offset) - max(a.onset, b.onset) + 1)
  return inter / (a.length + b.length - inter)


@dataclasses.dataclass(frozen=True)
class Counts:
  """True positives, false positives and false negatives, with precision, recall and F1."""
  tp: int = 0
  fp: int = 0
  fn: int = 0

  def __add__(self, other: "Counts") -> "Counts":
    return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

  @property
  def precision(self) -> float:
    return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

  @property
  def recall(self) -> float:
    return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

  @property
  def f1(self) -> float:
    p, r = self.precision, self.recall
    return 2 * p * r / (p + r) if p + r else 0.0


def match(predictions: Sequence[Interval], truths: Sequence[Interval], threshold: float = 0.5
          ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
  """One video's matching (module docstring): (pairs (prediction, truth), unmatched predictions,
  unmatched truths), as indices into the two sequences."""
  taken: set[int] = set()
  pairs, lone = [], []
  for i, pred in enumerate(predictions):
    found = False
    for j, truth in enumerate(truths):
      if j not in taken and iou(pred, truth) >= threshold:
        pairs.append((i, j))
        taken.add(j)
        found = True
    if not found:
      lone.append(i)
  return pairs, lone, [j for j in range(len(truths)) if j not in taken]


def _videos(truths: Annotation, predictions: Annotation, kinds: Iterable[str],
            reference_quirks: bool):
  """(key, predictions, truths) of every video scored, both restricted to `kinds`."""
  kinds = tuple(kinds)
  def pick(table, key):
    return [iv for iv in table.get(key, ()) if iv.kind in kinds]
  keys = list(dict.fromkeys(list(truths) + list(predictions)))
  if reference_quirks:
    subjects = {key[0] for key in keys if pick(predictions, key)}
    keys = [key for key in keys if key[0] in subjects and pick(truths, key)]
  for key in keys:
    yield key, pick(predictions, key), pick(truths, key)


def video_counts(truths: Annotation, predictions: Annotation, kind: str, threshold: float = 0.5,
                 reference_quirks: bool = False) -> dict[VideoKey, Counts]:
  """TP/FP/FN of each video for one expression type."""
  if kind not in KINDS:
    raise ValueError(f"kind {kind!r} is not one of {KINDS}")
  out = {}
  for key, preds, gts in _videos(truths, predictions, (kind,), reference_quirks):
    pairs, lone, missed = match(preds, gts, threshold)
    out[key] = Counts(len(pairs), len(lone), len(missed))
  return out


@dataclasses.dataclass(frozen=True)
class SpottingResult:
  """A dataset's spotting score: counts per type ('micro', 'macro'), per video, and overall."""
  per_kind: dict[str, Counts]
  per_video: dict[str, dict[VideoKey, Counts]]

  @property
  def overall(self) -> Counts:
    total = Counts()
    for counts in self.per_kind.values():
      total = total + counts
    return total

  def as_dict(self) -> dict:
    """Plain numbers per type and overall (tp, fp, fn, precision, recall, f1)."""
    rows = dict(self.per_kind, overall=self.overall)
    return {name: dict(dataclasses.asdict(c), precision=c.precision, recall=c.recall, f1=c.f1)
            for name, c in rows.items()}


def spotting(truths: Annotation, predictions: Annotation, threshold: float = 0.5,
             reference_quirks: bool = False) -> SpottingResult:
  """The MEGC spotting score of one dataset: micro and macro separately, overall summed."""
  per_video = {kind: video_counts(truths, predictions, kind, threshold, reference_quirks)
               for kind in KINDS}
  per_kind = {}
  for kind, videos in per_video.items():
    total = Counts()
    for counts in videos.values():
      total = total + counts
    per_kind[kind] = total
  return SpottingResult(per_kind, per_video)


def loso_report(truths: Annotation, predictions: Annotation) -> dict:
  """A LOSO run's scores: 'pooled' over every held-out video, and 'per_fold' (each held-out
  subject's videos), as SpottingResult.as_dict gives them. Keys of both maps: (subject, video)."""
  subjects = sorted({subject for subject, _ in truths})
  per_fold = {}
  for subject in subjects:
    keep = lambda table, s=subject: {k: v for k, v in table.items() if k[0] == s}
    per_fold[subject] = spotting(keep(truths), keep(predictions)).as_dict()
  return {"pooled": spotting(truths, predictions).as_dict(), "per_fold": per_fold}


def summary_lines(pooled: dict) -> list[str]:
  """One line per type and overall: F1 and the counts (of loso_report's 'pooled')."""
  return [f"{kind}: F1 {r['f1']:.3f} (TP {r['tp']}, FP {r['fp']}, FN {r['fn']})"
          for kind, r in ((k, pooled[k]) for k in (*KINDS, "overall"))]


@dataclasses.dataclass(frozen=True)
class StrsResult:
  """STRS and its parts: the spotting counts, the analysis counts and scores."""
  spotting: Counts
  analysis: Counts
  precision: float
  recall: float
  f1: float
  uf1: float
  uar: float

  @property
  def strs(self) -> float:
    return self.spotting.f1 * self.f1

  def as_dict(self) -> dict:
    """The reference evaluator's keys (strs_metric.py, `evaluate_STRS`) and values."""
    s, a = self.spotting, self.analysis
    return {"STRS": self.strs, "TP spotting": s.tp, "FP spotting": s.fp, "FN spotting": s.fn,
            "Precision spotting": s.precision, "Recall spotting": s.recall,
            "F1-score spotting": s.f1, "TP analysis": a.tp, "FP analysis": a.fp,
            "FN analysis": a.fn, "Precision analysis": self.precision,
            "Recall analysis": self.recall, "F1-score analysis": self.f1,
            "UF1 analysis": self.uf1, "UAR analysis": self.uar}


def _mean(values: Sequence[float], empty: float) -> float:
  return sum(values) / len(values) if values else empty


def strs(truths: Annotation, predictions: Annotation, kinds: Sequence[str] = ("micro",),
         classes: Sequence[str] | None = None, threshold: float = 0.5,
         reference_quirks: bool = False) -> StrsResult:
  """STRS of one dataset over the intervals of `kinds` (module docstring).

  classes: the analysis classes (names as `class_name` gives them); None takes the classes of
  the annotated intervals of `kinds`, as the reference evaluator's default does.
  """
  spot = Counts()
  found: list[tuple[str, str]] = []               # (annotated class, predicted class)
  for _, preds, gts in _videos(truths, predictions, kinds, reference_quirks):
    pairs, lone, missed = match(preds, gts, threshold)
    spot = spot + Counts(len(pairs), len(lone), len(missed))
    found += [(class_name(gts[j]), class_name(preds[i])) for i, j in pairs]
  if classes is None:
    classes = sorted({class_name(iv) for ivs in truths.values() for iv in ivs if iv.kind in kinds})
  found = [(gt, pred) for gt, pred in found if gt in classes]
  wrong_pred = sum(1 for gt, pred in found if pred != gt and pred in classes)
  analysis = Counts(sum(1 for gt, pred in found if gt == pred), wrong_pred,
                    wrong_pred if reference_quirks else sum(1 for gt, pred in found if gt != pred))
  per_class = []
  for c in classes:
    gt_bits = [gt == c for gt, _ in found]
    pred_bits = [pred == c for _, pred in found]
    if reference_quirks and len(set(gt_bits) | set(pred_bits)) < 2:
      per_class.append(Counts())
      continue
    per_class.append(Counts(sum(g and p for g, p in zip(gt_bits, pred_bits)),
                            sum(p and not g for g, p in zip(gt_bits, pred_bits)),
                            sum(g and not p for g, p in zip(gt_bits, pred_bits))))
  empty = math.nan if reference_quirks else 0.0   # np.mean([]) in the reference
  precision = _mean([c.precision for c in per_class], empty)
  recall = _mean([c.recall for c in per_class], empty)
  if precision + recall:
    f1 = 2 * precision * recall / (precision + recall)
  else:
    f1 = math.nan if reference_quirks else 0.0
  uar = precision if reference_quirks else recall
  uf1 = _mean([c.f1 for c in per_class], empty)
  return StrsResult(spot, analysis, precision, recall, f1, uf1, uar)
