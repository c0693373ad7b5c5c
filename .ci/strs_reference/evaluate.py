"""Runs the STRS reference evaluator, unmodified, on tests/fixtures/strs/intervals.csv.

Run by `.ci/strs_reference/run` inside the evaluator's own virtual environment (Python 3.10 with
the pandas 1.3.5 / numpy 1.24.3 / scikit-learn 1.2.2 its requirements.txt pins), never by the
project's tests. For every dataset of the fixture, every expression-type selection
(micro, macro, both) and every analysis class set (the evaluator's default: the annotated
classes; and the three MEGC classes), it writes the evaluator's input CSVs (subject, video,
onset, offset, emotion), calls `strs_metric.Evaluator().evaluate_STRS` from the checkout and
records its whole output at full precision. It also runs the checkout's own `main.py`, unmodified,
on each dataset's CSVs (its working directory holds them as data/pred.csv and data/gt.csv) and
records what it prints (rounded to 4 digits by main.py).

Usage: python evaluate.py STRS_METRIC_CHECKOUT FIXTURE_DIR
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

KIND_SETS = (("micro",), ("macro",), ("micro", "macro"))
CLASS_SETS = (None, ("negative", "positive", "surprise"))
COLUMNS = ("subject", "video", "onset", "offset", "emotion")


def write(path, rows):
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(COLUMNS)
    for row in rows:
      out.writerow([row[c] for c in COLUMNS])


def main(checkout, fixture):
  sys.path.insert(0, checkout)
  import pandas as pd  # pylint: disable=import-outside-toplevel
  from strs_metric import Evaluator  # pylint: disable=import-outside-toplevel
  with open(os.path.join(fixture, "intervals.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  runs, printed = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for dataset in datasets:
      for kinds in KIND_SETS:
        chosen = [r for r in rows if r["dataset"] == dataset and r["kind"] in kinds]
        pred = os.path.join(tmp, "pred.csv")
        gt = os.path.join(tmp, "gt.csv")
        write(pred, [r for r in chosen if r["source"] == "prediction"])
        write(gt, [r for r in chosen if r["source"] == "truth"])
        for classes in CLASS_SETS:
          res = Evaluator().evaluate_STRS(pd.read_csv(pred), pd.read_csv(gt),
                                          analysis_emotion=None if classes is None
                                          else list(classes))
          runs.append({"dataset": dataset, "kinds": list(kinds),
                       "classes": None if classes is None else list(classes),
                       "output": {k: float(v) for k, v in res.items()}})
        if kinds == ("micro", "macro"):
          data = os.path.join(tmp, "main", "data")
          os.makedirs(data, exist_ok=True)
          os.replace(pred, os.path.join(data, "pred.csv"))
          os.replace(gt, os.path.join(data, "gt.csv"))
          out = subprocess.run([sys.executable, os.path.join(checkout, "main.py")],
                               cwd=os.path.dirname(data), check=True, capture_output=True,
                               text=True).stdout
          printed.append({"dataset": dataset, "kinds": list(kinds), "stdout": out})
  with open(os.path.join(fixture, "reference.json"), "w") as f:
    json.dump({"runs": runs, "main_py": printed}, f, indent=1)
    f.write("\n")


if __name__ == "__main__":
  main(*sys.argv[1:])
