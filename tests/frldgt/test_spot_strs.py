"""STRS of a spotting run: frldgt_jax/spotting/recognition.py's labelling of an aligned video's
spotted micro-expressions, and launch/spot_strs.py end to end on a tiny generated long-video
corpus (the analysis F1 recomputed here by hand from the classes the command wrote), with bad
input one line and exit status 2 (a recogniser of another size: `check_size`, in-process). The
recogniser is the untrained tiny one (tests/frldgt/tiny_recogniser.py): the plumbing is checked,
not the class."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from frldgt_jax import run_io
from frldgt_jax.data import synthetic_long
from frldgt_jax.errors import InputError
from frldgt_jax.spotting import recognition, toy
from frldgt_jax.spotting.intervals import Interval
from tests.frldgt import tiny_recogniser
from tests.xla import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = ("negative", "positive", "surprise")


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory):
  return tiny_recogniser.write_recogniser(tmp_path_factory.mktemp("recogniser"))


def test_label_intervals_reads_the_onset_and_apex_frames(recogniser):
  models, _ = run_io.load_models(recogniser, ensemble=False)
  frames = toy.toy_video(7, 40, size=32, n_micro=2, n_macro=1).frames
  numbers = 101 + 2 * np.arange(len(frames))        # every other frame, counted from 101
  intervals = [Interval(105, 115, "micro", apex=109), Interval(121, 141, "macro", apex=131),
               Interval(143, 151, "micro", apex=143), Interval(155, 165, "micro")]
  labelled, rows = recognition.label_intervals(frames, numbers, intervals, models, "toy")
  # Positions (frame - 101) / 2; the apex at the onset moves one frame on, a missing apex is
  # the middle frame.
  onset, apex = [2, 21, 27], [4, 22, 29]
  expected, _ = run_io.ensemble_outputs(models, frames[onset], frames[apex])
  assert len(rows) == 3 and labelled[1] == intervals[1]
  for row, p, iv in zip(rows, expected, [labelled[0], labelled[2], labelled[3]]):
    assert row["class"] == CLASSES[int(np.argmax(p))] == CLASSES[iv.label]
    np.testing.assert_allclose([row["probabilities"][c] for c in CLASSES], p, atol=1e-5)
  swapped, _ = run_io.ensemble_outputs(models, frames[apex], frames[onset])
  assert np.abs(swapped - expected).max() > 1e-4     # the pair's order matters to the model
  with pytest.raises(InputError, match="names frames the video does not have"):
    recognition.label_intervals(frames, numbers, [Interval(106, 110, "micro")], models, "toy")
  with pytest.raises(InputError, match="the recogniser takes 32 x 32 frames, toy are 16 x 24"):
    recognition.label_intervals(frames[:, :24, :16], numbers, intervals, models, "toy")


def _strs(args, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1))
  return subprocess.run([sys.executable, str(REPO / "launch" / "spot_strs.py"), *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=600)


def test_spot_strs_scores_a_run_and_refuses_bad_input(recogniser, tmp_path):
  root = tmp_path / "long"
  truth = synthetic_long.generate_long_corpus(root, synthetic_long.LongCorpusConfig(
      subjects=2, seconds=(("casme2_lv", 2.5), ("samm_lv", 0.1), ("casme3_a", 0.2))))
  videos = truth["casme2_lv"]
  run = tmp_path / "run"
  run.mkdir()
  rows = [{"subject": v["subject"], "video": v["video"], "intervals": v["intervals"]}
          for v in videos]
  rows[0]["intervals"] = rows[0]["intervals"] + [
      {"onset": 60, "offset": 68, "kind": "micro", "apex": 64, "label": -1, "emotion": ""}]
  (run / "predictions.json").write_text(json.dumps(rows))
  config = ["--config", str(REPO / "configs" / "spotting_casme2_lv.py") + ":synthetic",
            f"--config.data.root={root / 'casme2_lv'}"]
  done = _strs(config + ["--config.data.image_size=32", "--run", "run", "--recogniser",
                         str(recogniser)], tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((run / "strs.json").read_text())
  micro = [iv for v in videos for iv in v["intervals"] if iv["kind"] == "micro"]
  assert (result["TP spotting"], result["FP spotting"], result["FN spotting"]) == (
      len(micro), 1, 0)
  spot_f1 = 2 * len(micro) / (2 * len(micro) + 1)
  # The analysis by hand: the annotated class against the class written for the same interval.
  written = {(v["video"], m["onset"]): m["class"] for v in result["videos"] for m in v["micro"]}
  pairs = [(CLASSES[v_iv["label"]], written[(v["video"], v_iv["onset"])])
           for v in videos for v_iv in v["intervals"] if v_iv["kind"] == "micro"]
  classes = sorted({gt for gt, _ in pairs})
  assert result["classes"] == classes
  precision = np.mean([sum(g == p == c for g, p in pairs) / max(1, sum(p == c for _, p in pairs))
                       for c in classes])
  recall = np.mean([sum(g == p == c for g, p in pairs) / sum(g == c for g, _ in pairs)
                    for c in classes])
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  assert result["F1-score spotting"] == pytest.approx(spot_f1)
  assert result["STRS"] == pytest.approx(spot_f1 * f1)
  assert "final model" in result["recogniser"] and f"STRS {spot_f1 * f1:.3f}" in done.stdout

  done = _strs(config + ["--run", "nowhere", "--recogniser", str(recogniser)], tmp_path)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith("error: ") and "nowhere/predictions.json: no such file" in lines[-1]
  assert "Traceback" not in done.stderr
