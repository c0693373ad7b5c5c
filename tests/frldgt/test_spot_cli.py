"""launch/spot.py end to end on short generated videos: intervals and timeline written, each
spotted micro-expression classified by an FRL-DGT recogniser; where the face is lost it says so
and goes on; bad input is one line and exit status 2.

The recogniser is an FRL-DGT workdir of the tiny generated-corpus config whose final model holds
freshly initialised parameters (tests/frldgt/tiny_recogniser.py): what is checked is the
plumbing from a spotted interval to a class, not the class."""
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from frldgt_jax import video
from frldgt_jax.data import align
from frldgt_jax.spotting import toy
from frldgt_jax import run_io
from frldgt_jax.errors import InputError
from tests.frldgt import tiny_recogniser
from tests.xla import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "spotter_tiny"
HEADER = ["subject", "sample", "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y",
          "mouth_x", "mouth_y"]


def _spot(args, cwd):
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1))
  return subprocess.run([sys.executable, str(REPO / "launch" / "spot.py"), *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory):
  """A sweep workdir W with W/final/: the tiny FRL-DGT model, initialised, not trained."""
  return tiny_recogniser.write_recogniser(tmp_path_factory.mktemp("recogniser"))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
  """A 12 s generated video (128 x 128 face, 30 fps) as MP4, its truth, and a landmark CSV per
  frame with frames 150..209 missing (the face lost for 2 s)."""
  folder = tmp_path_factory.mktemp("video")
  v = toy.toy_video(904, 360, size=128, n_micro=3, n_macro=1)
  video.write_video(folder / "long.mp4", v.frames, fps=30.0)
  points = align.template_points(128).ravel().round(3).tolist()
  with open(folder / "landmarks.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(HEADER)
    for frame in range(360):
      if not 150 <= frame < 210:
        writer.writerow(["me", str(frame), *points])
  return folder, v


def test_spot_then_recognise_writes_intervals_and_a_timeline(recogniser, long_video, tmp_path):
  folder, truth = long_video
  done = _spot(["--spotter", str(TINY), "--recogniser", str(recogniser), "--video",
                str(folder / "long.mp4"), "--landmarks", str(folder / "landmarks.csv"),
                "--out", "out"], tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  out = tmp_path / "out"
  assert "no face in frames 150-209 (5.00-7.00 s, 60 frames)" in done.stdout
  record = json.loads((out / "intervals.json").read_text())
  assert record["faceless"] == [{"first_frame": 150, "last_frame": 209, "first_s": 5.0,
                                 "last_s": 6.9667}]
  assert len(record["tracks"]) == 2
  rows = record["intervals"]
  assert rows, done.stdout
  for row in rows:
    assert not 150 <= row["onset_frame"] <= 209 and not 150 <= row["offset_frame"] <= 209
    assert row["onset_frame"] <= row["apex_frame"] <= row["offset_frame"]
    assert abs(row["onset_s"] - row["onset_frame"] / 30.0) < 1e-3
    if row["kind"] == "micro":
      assert row["class"] in ("negative", "positive", "surprise")
      assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
  # The planted expressions outside the lost stretch are found (IoU >= 0.5, same kind).
  def iou(a, b):
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    return inter / (a[1] - a[0] + 1 + b[1] - b[0] + 1 - inter)
  visible = [iv for iv in truth.intervals if iv.offset < 150 or iv.onset >= 210]
  found = [any(r["kind"] == iv.kind and iou((r["onset_frame"], r["offset_frame"]),
                                            (iv.onset, iv.offset)) >= 0.5 for r in rows)
           for iv in visible]
  assert sum(found) >= len(visible) / 2, (visible, rows)
  with open(out / "intervals.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert [r["kind"] for r in table] == [r["kind"] for r in rows]
  assert (out / "timeline.png").stat().st_size > 10_000


def test_a_video_without_a_face_says_so_and_goes_on(tmp_path):
  video.write_video(tmp_path / "blank.mp4", np.full((40, 96, 96), 120, np.uint8), fps=20.0)
  done = _spot(["--spotter", str(TINY), "--video", "blank.mp4", "--out", "out"], tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "no face in frames 0-39 (0.00-2.00 s, 40 frames)" in done.stdout
  assert "no face anywhere" in done.stdout
  record = json.loads((tmp_path / "out" / "intervals.json").read_text())
  assert record["intervals"] == [] and (tmp_path / "out" / "timeline.png").is_file()


def test_bad_input_is_one_line_and_exit_2(long_video, tmp_path):
  folder, _ = long_video
  data = (folder / "long.mp4").read_bytes()
  (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 3])
  (tmp_path / "empty").mkdir()
  cases = [
      (["--spotter", str(TINY), "--video", "cut.mp4", "--out", "o"], "cut.mp4"),
      (["--spotter", str(TINY), "--frames", "empty", "--out", "o"], "fewer than 2 frames"),
      (["--spotter", "nowhere", "--video", str(folder / "long.mp4"), "--out", "o"],
       "no such spotter workdir"),
  ]
  for args, message in cases:
    done = _spot(args, tmp_path)
    assert done.returncode == 2, (args, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], (args, done.stderr)
    assert "Traceback" not in done.stderr
  with pytest.raises(InputError, match="no such sweep workdir"):
    run_io.load_models(tmp_path / "nowhere", ensemble=False)
