"""Long videos: face tracks (frldgt_jax/data/tracks.py), the long-video databases' readers and
loader (long_videos.py) on the generated corpus (synthetic_long.py), whose planted truth they must
give back exactly.

References: the single-frame similarity of align.py (a track whose frames share one set of
landmarks must use exactly it) and transforms whose effect is known in closed form (a head shifted
by a known number of pixels).
"""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from frldgt_jax.data import align, long_videos, synthetic_long, tracks
from frldgt_jax.errors import InputError
from tests import no_tensorflow
from frldgt_jax.spotting.intervals import Interval

SIZE = 64
REPO = pathlib.Path(__file__).resolve().parents[2]
FACE = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 90.0]])


def _frames(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 120, 140), dtype=np.uint8)


def test_tracks_split_where_the_head_jumps_and_where_the_face_is_lost():
  # 0-9 steady (sub-threshold jitter), 10-11 no face, 12-19 steady, 20-29 head 15 px right.
  rng = np.random.default_rng(1)
  marks = [FACE + rng.normal(0, 0.3, FACE.shape) for _ in range(10)] + [None, None]
  marks += [FACE] * 8 + [FACE + [15.0, 0.0]] * 10
  found, gaps = tracks.split_tracks(marks, SIZE)
  assert [(t.start, t.stop) for t in found] == [(0, 10), (12, 20), (20, 30)]
  assert [(g.start, g.stop) for g in gaps] == [(10, 12)]
  # One similarity per track, fitted on all its frames; equal frames give the one-frame fit.
  np.testing.assert_allclose(found[1].matrix, align.similarity_from_landmarks(FACE, SIZE),
                             atol=1e-9)
  shifted = align.similarity_from_landmarks(FACE + [15.0, 0.0], SIZE)
  np.testing.assert_allclose(found[2].matrix, shifted, atol=1e-9)
  # The mouth moving alone (speech) does not start a track.
  speech = [FACE + [[0, 0], [0, 0], [0, 6.0 * (i % 2)]] for i in range(6)]
  assert len(tracks.split_tracks(speech, SIZE)[0]) == 1
  with pytest.raises(ValueError):
    tracks.split_tracks(marks, SIZE, drift=0.0)


def test_align_video_warps_each_track_and_fills_gaps_without_motion():
  frames = _frames(8)
  marks = [None, FACE, FACE, None, FACE + [20.0, 0.0], FACE + [20.0, 0.0], None, None]
  out = tracks.align_video(frames, marks, SIZE)
  assert out.frames.shape == (8, SIZE, SIZE) and out.frames.dtype == np.uint8
  assert out.has_face.tolist() == [False, True, True, False, True, True, False, False]
  m1 = align.similarity_from_landmarks(FACE, SIZE)
  m2 = align.similarity_from_landmarks(FACE + [20.0, 0.0], SIZE)
  np.testing.assert_array_equal(out.frames[1], align.align(frames[1], m1, SIZE))
  np.testing.assert_array_equal(out.frames[5], align.align(frames[5], m2, SIZE))
  np.testing.assert_array_equal(out.frames[0], out.frames[1])  # leading gap: next frame
  np.testing.assert_array_equal(out.frames[3], out.frames[2])  # gap: last frame before it
  np.testing.assert_array_equal(out.frames[7], out.frames[5])
  assert tracks.gap_messages(out.gaps, fps=2.0, frame_numbers=np.arange(8) + 1) == [
      "no face in frames 1-1 (0.00-0.50 s, 1 frame)",
      "no face in frames 4-4 (1.50-2.00 s, 1 frame)",
      "no face in frames 7-8 (3.00-4.00 s, 2 frames)"]
  none = tracks.align_video(frames[:3], [None] * 3, SIZE)
  assert none.tracks == () and not none.has_face.any() and not none.frames.any()


# ----------------------------------------------------------------------------- databases

SECONDS = (("casme2_lv", 5.0), ("samm_lv", 4.0), ("casme3_a", 5.0))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  out = tmp_path_factory.mktemp("long")
  synthetic_long.generate_long_corpus(out, synthetic_long.LongCorpusConfig(
      subjects=2, videos_per_subject=1, seconds=SECONDS))
  return out


def test_readers_recover_the_planted_intervals_and_report_the_errata(corpus):
  truth = synthetic_long.read_truth(corpus)
  expected = {"casme2_lv": long_videos.DUPLICATE_ROW, "samm_lv": long_videos.RULE_ONSET_MISSING,
              "casme3_a": long_videos.MISSING_VIDEO}
  for database in long_videos.NAMES:
    videos, problems = long_videos.read_database(database, corpus / database)
    assert {(v.subject, v.video): v.intervals for v in videos} == truth[database]
    assert [p.kind for p in problems] == [expected[database]], problems
    assert all(v.fps == long_videos.FPS[database] for v in videos)
    assert {i.kind for v in videos for i in v.intervals} == {"micro", "macro"}
    for v in videos:
      for i in v.intervals:  # micro <= 0.5 s, macro 0.5-4 s (both ends counted)
        assert i.length <= 0.5 * v.fps if i.kind == "micro" else 0.5 * v.fps < i.length <= 4 * v.fps
  casme2 = long_videos.read_database("casme2_lv", corpus / "casme2_lv")[0]
  assert casme2[0].subject == "s15" and casme2[0].video == "15_0101"
  labels = {i.label for v in casme2 for i in v.intervals}
  assert labels <= {-1, 0, 1, 2} and len(labels) > 1


def test_errata_rules_on_a_hand_written_sheet(tmp_path, corpus):
  import openpyxl
  manual = tmp_path / "samm_lv"
  shutil.copytree(corpus / "samm_lv" / long_videos.SAMM_FRAMES, manual / long_videos.SAMM_FRAMES)
  book = openpyxl.Workbook()
  rows = [("Subject", "Filename", "Onset", "Apex", "Offset", "Type"),
          ("006", "006_1_1", 10, 20, 0, "Micro - 1/2"),     # offset 0: apex is the offset
          ("006", "006_1_2", 50, 90, 60, "Macro"),          # apex outside: forgotten
          ("006", "006_1_3", 80, 85, 70, "Macro"),          # offset before onset: dropped
          ("006", "006_1_4", 55, None, 58, "Macro"),        # overlaps 50-60: kept, reported
          ("006", "006_1_5", 700, 710, 900, "Macro"),       # past the last frame (800)
          ("007", "007_9_1", 10, 11, 12, "Micro - 1/2")]    # no such video
  for row in rows:
    book.active.append(row)
  book.save(manual / long_videos.SAMM_FILE)
  emotions = openpyxl.Workbook()
  for row in [("free text",), ("Subject", "Filename", "Estimated Emotion"),
              ("006", "006_1_1", "Anger"), ("006", "006_1_2", "Happiness")]:
    emotions.active.append(row)
  emotions.save(manual / "SAMM_Micro_FACS_Codes_v2.xlsx")
  videos, problems = long_videos.read_database("samm_lv", manual)
  assert [p.kind for p in problems] == [
      long_videos.RULE_OFFSET_MISSING, long_videos.RULE_APEX_OUTSIDE,
      long_videos.RULE_OFFSET_BEFORE_ONSET, long_videos.OVERLAP, long_videos.BEYOND_LAST_FRAME,
      long_videos.MISSING_VIDEO]
  assert [p.row for p in problems] == [2, 3, 4, 5, 6, 7]
  # The micro row takes SAMM's emotion (negative); macro rows have none ('others').
  assert videos[0].intervals == (Interval(10, 20, "micro", 20, 0, "Anger"),
                                 Interval(50, 60, "macro"), Interval(55, 58, "macro"))


def test_a_sheet_missing_a_column_is_one_clear_line(tmp_path, corpus):
  import openpyxl
  manual = tmp_path / "casme3_a"
  shutil.copytree(corpus / "casme3_a", manual)
  path = manual / long_videos.CASME3_MACRO_FILE
  book = openpyxl.load_workbook(path)
  book["Sheet1"].delete_cols(4)  # apex
  book.save(path)
  with pytest.raises(InputError) as e:
    long_videos.read_database("casme3_a", manual)
  assert str(e.value) == (f"{path}, row 1: header has no column(s) ['apex'] (found ['sub', "
                          "'seq', 'onset', 'offset', 'emotion'])")


def test_load_videos_gives_aligned_frames_and_a_track_per_head_position(corpus):
  loaded = long_videos.load_videos("casme2_lv", corpus / "casme2_lv", resolution=64)
  truth = synthetic_long.read_truth(corpus)["casme2_lv"]
  assert len(loaded) == 2
  for v in loaded:
    assert v.frames.shape == (150, 64, 64) and v.frames.dtype == np.uint8
    assert v.frame_numbers.tolist() == list(range(1, 151))
    assert v.intervals == truth[(v.subject, v.video)]
    assert len(v.tracks) == 2 and v.gaps == ()  # the generated head moves once
  # Aligned: the face stays put within a track (mean frame difference small) although the raw
  # frame moves by a tenth of the face at the head move.
  v = loaded[0]
  within = np.abs(np.diff(v.frames[:v.tracks[0].stop].astype(np.float32), axis=0)).mean()
  assert within < 3.0


# ----------------------------------------------------------------------------- TFDS builders

def test_the_three_builders_store_what_the_tensorflow_free_loader_gives(corpus, tmp_path):
  import tensorflow_datasets as tfds
  from frldgt_jax.data import long_builders
  for database in long_videos.NAMES:
    builder, summary = long_builders.build(database, corpus / database, tmp_path, resolution=24,
                                           every=3)
    stored = {(e["subject"].decode(), e["video"].decode()): e
              for e in tfds.as_numpy(builder.as_dataset(split="train"))}
    loaded = long_videos.load_videos(database, corpus / database, 24, every=3)
    assert len(stored) == len(loaded) == summary["videos"] == 2
    assert len(summary["fixes"]) == 1  # the planted erratum, fixed and reported
    for v in loaded:
      e = stored[(v.subject, v.video)]
      np.testing.assert_array_equal(e["frames"], v.frames)
      np.testing.assert_array_equal(e["frame_numbers"], v.frame_numbers)
      assert e["fps"] == v.fps
      assert e["onset"].tolist() == [i.onset for i in v.intervals]
      assert e["offset"].tolist() == [i.offset for i in v.intervals]
      assert e["label"].tolist() == [i.label for i in v.intervals]
      assert e["micro"].tolist() == [int(i.kind == "micro") for i in v.intervals]
      assert e["track_start"].tolist() == [t.start for t in v.tracks]


def test_prepare_data_names_a_missing_column_in_one_line(tmp_path, corpus):
  import openpyxl
  manual = tmp_path / "casme2_lv"
  shutil.copytree(corpus / "casme2_lv", manual)
  path = manual / long_videos.CASME2_FILE
  book = openpyxl.load_workbook(path)
  book.worksheets[0].delete_cols(3, 3)  # onset, apex, offset
  book.save(path)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
  done = subprocess.run([sys.executable, str(REPO / "launch" / "prepare_data.py"), "--dataset",
                         "casme2_lv", "--manual_dir", str(manual), "--data_dir",
                         str(tmp_path / "out")], capture_output=True, text=True, env=env,
                        cwd=REPO, timeout=300)
  assert done.returncode == 2 and "Traceback" not in done.stderr
  errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "the code sheet has 6 columns, expected 9" in errors[0], done.stderr


def test_the_loader_needs_no_tensorflow(corpus, tmp_path):
  code = ("import sys; from frldgt_jax.data import long_videos as lv; "
          "v = lv.load_videos('casme3_a', sys.argv[1], 16, every=5); "
          "assert 'tensorflow' not in sys.modules; print(len(v), v[0].frames.shape)")
  done = subprocess.run([sys.executable, "-c", code, str(corpus / "casme3_a")],
                        capture_output=True, text=True, env=no_tensorflow.blocked_env(tmp_path),
                        cwd=REPO, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["2", "(30,", "16,", "16)"]
