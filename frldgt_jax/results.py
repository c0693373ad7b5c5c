"""What a LOSO sweep writes: predictions.csv, results.json, the MEGC log, a confusion PNG, a table.

Every score is computed from the pooled per-clip predictions (docs/frldgt.md: per class, TP/FP/FN
summed over all folds; never a mean of per-fold scores) by frldgt_jax.metrics, and
`results_from_predictions_csv` recomputes results.json from predictions.csv alone, so the two
always agree.

  predictions.csv   dataset,subject,sample,label,prediction   one row per clip, fold order
  results.json      UF1, UAR (pooled), accuracy, n, per_database {name: {UF1, UAR, n}},
                    per_class {name: {F1, recall, support, predicted}}, confusion [true][pred],
                    class_names, folds [{fold, subject, clips, correct}], steps_per_fold,
                    wall_time_s, plus run information
  megc_log.txt      MEGC submission log: a header line per fold ('casme2 sub01'), then one line
                    per clip of that fold: '<sample> <gt> <pred>'
  confusion.png     the pooled confusion matrix (matplotlib, Agg backend)
  results.md        a Markdown table: composite and per-database UF1 / UAR / clips
  per_subject.png   held-out accuracy of each subject (one bar per LOSO fold)
  learning_curves.png  training curves (metrics.jsonl) of the first few folds: the DGM loss of
                    stage 1, the cross-entropy and training accuracy of stage 2
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from frldgt_jax import metrics as metrics_lib

CSV_COLUMNS = ("dataset", "subject", "sample", "label", "prediction")
FILES = {"predictions": "predictions.csv", "results": "results.json", "megc_log": "megc_log.txt",
         "confusion": "confusion.png", "table": "results.md", "per_subject": "per_subject.png",
         "learning_curves": "learning_curves.png"}


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Pooled per-clip predictions of a sweep, in fold order (one row per clip)."""
  dataset: np.ndarray      # str [N] database
  subject: np.ndarray      # str [N] canonical subject (held out in fold `fold`)
  sample: np.ndarray       # str [N]
  label: np.ndarray        # int64 [N] ground truth
  prediction: np.ndarray   # int64 [N]
  fold: np.ndarray         # int64 [N] LOSO fold index (not written to the CSV)

  def __len__(self) -> int:
    return len(self.label)


def write_predictions_csv(path: str | os.PathLike, p: Predictions) -> None:
  """predictions.csv with the columns CSV_COLUMNS (atomic: temp file, then rename)."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for row in zip(p.dataset, p.subject, p.sample, p.label, p.prediction):
      writer.writerow([row[0], row[1], row[2], int(row[3]), int(row[4])])
  os.replace(tmp, path)


def read_predictions_csv(path: str | os.PathLike, num_classes: int = 3) -> Predictions:
  """Reads predictions.csv back; fold numbers follow the order subjects first appear."""
  path = pathlib.Path(path)
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
      raise ValueError(f"{path}: header must be {','.join(CSV_COLUMNS)}, got {header}")
    rows = []
    for line, row in enumerate(reader, start=2):
      if len(row) != len(CSV_COLUMNS):
        raise ValueError(f"{path} row {line}: expected {len(CSV_COLUMNS)} fields, got {row}")
      try:
        label, pred = int(row[3]), int(row[4])
      except ValueError:
        raise ValueError(f"{path} row {line}: label/prediction must be integers, got "
                         f"{row[3]!r}, {row[4]!r}") from None
      for name, value in (("label", label), ("prediction", pred)):
        if not 0 <= value < num_classes:
          raise ValueError(f"{path} row {line}: {name} {value} outside [0, {num_classes})")
      rows.append((row[0], row[1], row[2], label, pred))
  if not rows:
    raise ValueError(f"{path}: no prediction rows")
  order: dict[tuple[str, str], int] = {}
  folds = [order.setdefault((r[0], r[1]), len(order)) for r in rows]
  cols = list(zip(*rows))
  return Predictions(np.asarray(cols[0]), np.asarray(cols[1]), np.asarray(cols[2]),
                     np.asarray(cols[3], np.int64), np.asarray(cols[4], np.int64),
                     np.asarray(folds, np.int64))


def compute_results(p: Predictions, class_names: Sequence[str],
                    extra: Optional[Mapping[str, Any]] = None) -> dict:
  """results.json's content from pooled predictions (module docstring); `extra` is merged in."""
  by_database = dict(metrics_lib.scores_by_database(p.label, p.prediction, p.dataset,
                                                    len(class_names)))
  pooled = by_database.pop("composite")
  per_db = {name: {"UF1": s["uf1"], "UAR": s["uar"], "n": s["count"]}
            for name, s in by_database.items()}
  cm = pooled["confusion"]
  per_class = {name: {"F1": float(pooled["f1"][i]), "recall": float(pooled["recall"][i]),
                      "support": int(pooled["support"][i]), "predicted": int(cm[:, i].sum())}
               for i, name in enumerate(class_names)}
  folds = []
  for k in _unique_in_order(p.fold):
    sel = p.fold == k
    first = np.flatnonzero(sel)[0]
    folds.append({"fold": int(k), "subject": f"{p.dataset[first]}/{p.subject[first]}",
                  "clips": int(sel.sum()),
                  "correct": int((p.label[sel] == p.prediction[sel]).sum())})
  out = {"UF1": pooled["uf1"], "UAR": pooled["uar"], "accuracy": pooled["accuracy"],
         "n": len(p), "per_database": per_db, "per_class": per_class,
         "confusion": cm.tolist(), "class_names": list(class_names), "folds": folds}
  out.update(extra or {})
  return out


def results_from_predictions_csv(path: str | os.PathLike, class_names: Sequence[str]) -> dict:
  """The scores of results.json recomputed from predictions.csv alone."""
  return compute_results(read_predictions_csv(path, len(class_names)), class_names)


def _unique_in_order(values: np.ndarray) -> list:
  seen, out = set(), []
  for v in values.tolist():
    if v not in seen:
      seen.add(v)
      out.append(v)
  return out


def megc_log(p: Predictions) -> str:
  """The MEGC submission log: per fold a header '<dataset> <subject>', then lines
  '<sample> <gt> <pred>'."""
  lines = []
  for k in _unique_in_order(p.fold):
    rows = np.flatnonzero(p.fold == k)
    lines.append(f"{p.dataset[rows[0]]} {p.subject[rows[0]]}")
    lines += [f"{p.sample[i]} {int(p.label[i])} {int(p.prediction[i])}" for i in rows]
  return "\n".join(lines) + "\n"


def write_confusion_png(path: str | os.PathLike, confusion, class_names: Sequence[str],
                        title: str = "") -> None:
  """The confusion matrix (rows: true class, columns: predicted) as a PNG with counts."""
  plt = pyplot()
  cm = np.asarray(confusion, np.int64)
  fig, ax = plt.subplots(figsize=(1.4 * len(class_names) + 2, 1.2 * len(class_names) + 1.5),
                         dpi=100)
  ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, class_names, rotation=30, ha="right")
  ax.set_yticks(ticks, class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  for (i, j), n in np.ndenumerate(cm):
    ax.text(j, i, str(n), ha="center", va="center",
            color="white" if n > cm.max() / 2 else "black")
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def pyplot():
  """matplotlib.pyplot on the Agg backend (files only, no display)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def per_subject_accuracy(p: Predictions) -> list[tuple[str, int, int]]:
  """[(database/subject, correct, clips)] in fold order."""
  out = []
  for k in _unique_in_order(p.fold):
    rows = np.flatnonzero(p.fold == k)
    out.append((f"{p.dataset[rows[0]]}/{p.subject[rows[0]]}",
                int(np.sum(p.label[rows] == p.prediction[rows])), len(rows)))
  return out


def write_per_subject_png(path: str | os.PathLike, p: Predictions, title: str = "") -> None:
  """Bar chart of each held-out subject's accuracy, with its clip count on the bar."""
  plt = pyplot()
  rows = per_subject_accuracy(p)
  fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(rows) + 1.5), 3.2), dpi=100)
  x = np.arange(len(rows))
  accuracy = [c / n for _, c, n in rows]
  ax.bar(x, accuracy, color="tab:blue")
  for i, (_, c, n) in enumerate(rows):
    ax.text(i, accuracy[i] + 0.02, f"{c}/{n}", ha="center", va="bottom", fontsize=7)
  ax.axhline(float(np.mean(p.label == p.prediction)), color="k", lw=0.8, ls="--",
             label="pooled accuracy")
  ax.set_xticks(x, [name for name, _, _ in rows], rotation=60, ha="right", fontsize=7)
  ax.set_ylim(0, 1.12)
  ax.set_ylabel("held-out accuracy")
  ax.legend(fontsize=7, loc="lower right")
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def read_metrics(path: str | os.PathLike) -> list[dict]:
  """The rows of a training run's metrics.jsonl (missing file: [])."""
  path = pathlib.Path(path)
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_learning_curves_png(path: str | os.PathLike, runs: Mapping[str, Sequence[dict]],
                              title: str = "") -> None:
  """Stage-1 DGM loss, stage-2 cross-entropy and stage-2 training accuracy against the step, one
  line per run (`runs`: label -> metrics.jsonl rows; a stacked run's values are per fold)."""
  plt = pyplot()
  panels = (("dgm_loss", 1, "stage 1: DGM loss"), ("ce", 2, "stage 2: cross-entropy"),
            ("accuracy", 2, "stage 2: training accuracy"))
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=100)
  for label, rows in runs.items():
    for ax, (key, stage, _) in zip(axes, panels):
      points = [(r["step"], r[key]) for r in rows
                if key in r and np.mean(r.get("stage", stage)) == stage]
      if not points:
        continue
      steps = np.asarray([s for s, _ in points])
      values = np.asarray([v for _, v in points], np.float64)
      if values.ndim == 2:  # stacked: [rows, folds]
        for j in range(values.shape[1]):
          ax.plot(steps, values[:, j], lw=1, label=f"{label} #{j}")
      else:
        ax.plot(steps, values, lw=1, label=label)
  for ax, (_, _, name) in zip(axes, panels):
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step")
  axes[0].legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_sweep_plots(out_dir: str | os.PathLike, p: Predictions,
                      unit_dirs: Sequence[str | os.PathLike], curves: int = 4,
                      title: str = "") -> None:
  """per_subject.png and learning_curves.png (the first `curves` training units) in out_dir."""
  out = pathlib.Path(out_dir)
  write_per_subject_png(out / FILES["per_subject"], p, title)
  runs = {pathlib.Path(d).name: read_metrics(pathlib.Path(d) / "metrics.jsonl")
          for d in list(unit_dirs)[:curves]}
  write_learning_curves_png(out / FILES["learning_curves"],
                            {k: v for k, v in runs.items() if v}, title)


def markdown_table(results: Mapping[str, Any], title: str = "") -> str:
  """Composite and per-database UF1 / UAR / clips as a Markdown table."""
  lines = [f"### {title}", ""] if title else []
  lines += ["| data | UF1 | UAR | clips |", "|---|---:|---:|---:|",
            f"| all (pooled) | {results['UF1']:.4f} | {results['UAR']:.4f} | {results['n']} |"]
  for name, s in results["per_database"].items():
    lines.append(f"| {name} | {s['UF1']:.4f} | {s['UAR']:.4f} | {s['n']} |")
  lines += ["", "| class | F1 | recall | clips | predicted |", "|---|---:|---:|---:|---:|"]
  for name, s in results["per_class"].items():
    lines.append(f"| {name} | {s['F1']:.4f} | {s['recall']:.4f} | {s['support']} | "
                 f"{s['predicted']} |")
  info = [f"{k}: {results[k]}" for k in ("mode", "steps_per_fold", "wall_time_s")
          if k in results]
  if info:
    lines += ["", "; ".join(info) + f"; {len(results['folds'])} folds"]
  return "\n".join(lines) + "\n"


def write_all(out_dir: str | os.PathLike, p: Predictions, class_names: Sequence[str],
              extra: Optional[Mapping[str, Any]] = None, title: str = "") -> dict:
  """Writes every output file into `out_dir`; returns the results dict."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  results = compute_results(p, class_names, extra)
  write_predictions_csv(out / FILES["predictions"], p)
  _write_text(out / FILES["results"], json.dumps(results, indent=1) + "\n")
  _write_text(out / FILES["megc_log"], megc_log(p))
  write_confusion_png(out / FILES["confusion"], results["confusion"], class_names,
                      f"{title}  UF1 {results['UF1']:.3f}  UAR {results['UAR']:.3f}".strip())
  _write_text(out / FILES["table"], markdown_table(results, title))
  return results


def _write_text(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, path)
