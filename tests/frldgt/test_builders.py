"""TFDS builders and launch/prepare_data.py on hand-made dataset folders (tiny images, real xlsx).

Alignment reference: landmarks placed exactly on the template of an S x S crop make the
similarity transform the identity, so the stored frames must equal the decoded raw frames.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from frldgt_jax.data import align  # noqa: E402
from frldgt_jax.data import annotations as A  # noqa: E402
from frldgt_jax.data import builders  # noqa: E402
from frldgt_jax.data import pipeline  # noqa: E402
from tests.frldgt.test_annotations import write_casme2_xlsx, write_frames, write_samm_xlsx

tfds.disable_progress_bar()

REPO = pathlib.Path(__file__).resolve().parents[2]
S, T = 16, 4

GOOD = (1, "EP02_01f", 46, 50, 52, "happiness")
SLASH = (1, "EP03_02", 10, "/", 20, "disgust")
GAP = (2, "EP05_03", 3, 6, 8, "repression")          # frame 5 is not on disk
MALFORMED = (2, "EP01_11f", "abc", 5, 9, "surprise")
FRAMES_ON_DISK = {"EP02_01f": range(46, 53), "EP03_02": range(10, 21),
                  "EP05_03": [3, 4, 6, 7, 8], "EP01_11f": range(1, 10)}


def make_casme2(root, rows, cropped=False):
  """A CASME II manual dir with `rows`, S x S raw frames and an identity landmark file."""
  manual = root / "manual"
  write_casme2_xlsx(manual / "CASME2-coding-20140508.xlsx", rows)
  images, marks = {}, {}
  for seed, (subject, sample, *_rest) in enumerate(rows):
    subject_dir = f"sub{subject:02d}"
    numbers = FRAMES_ON_DISK[sample]
    images[sample] = write_frames(manual / "CASME2_RAW_selected" / subject_dir / sample,
                                  [f"img{n}.jpg" for n in numbers], shape=(S, S), seed=seed)
    if cropped:
      write_frames(manual / "Cropped" / subject_dir / sample,
                   [f"reg_img{n}.jpg" for n in numbers], shape=(20, 24), seed=seed + 100)
    marks[(subject_dir, sample)] = align.template_points(S)
  landmarks = root / "landmarks.csv"
  align.write_landmarks_csv(landmarks, marks)
  return manual, landmarks


def build_casme2(root, manual, landmarks, allow_drops=False, alignment="landmarks"):
  options = builders.BuildOptions(landmarks_csv=str(landmarks), allow_drops=allow_drops)
  return builders.build("casme2", manual, root / "out", resolution=S, frames=T,
                        alignment=alignment, options=options)


def test_slash_apex_gets_the_documented_fix_and_frames_are_aligned(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, SLASH])
  builder, summary = build_casme2(tmp_path, manual, landmarks)
  assert summary["fixes"] == [{"database": "casme2", "subject": "sub01", "sample": "EP03_02",
                               "rule": A.RULE_APEX_MISSING,
                               "detail": "apex cell '/' -> mid-point 15 of [10, 20]"}]
  assert summary["drops"] == [] and summary["counts"]["total"] == 2
  assert summary["counts"]["per_class"] == {"casme2": {"negative": 1, "positive": 1}}
  assert summary == builders.read_build_summary(builder.data_dir)
  assert pathlib.Path(builder.data_dir) == builders.dataset_dir(
      tmp_path / "out", "casme2", resolution=S, frames=T, alignment="landmarks")

  data = pipeline.load_prepared(builder.data_dir)
  assert list(data.sample) == ["EP02_01f", "EP03_02"]
  assert list(data.subject) == ["sub01", "sub01"] and list(data.database) == ["casme2"] * 2
  np.testing.assert_array_equal(data.label, [1, 0])
  np.testing.assert_array_equal(data.label5, [0, 1])
  np.testing.assert_array_equal(data.onset_index, [46, 10])
  np.testing.assert_array_equal(data.apex_index, [50, 15])
  np.testing.assert_array_equal(data.frame_indices, [[46, 47, 49, 50], [10, 12, 13, 15]])
  assert data.frames.shape == (2, T, S, S, 1) and data.frames.dtype == np.uint8
  for i, sample in enumerate(data.sample):
    folder = manual / "CASME2_RAW_selected" / "sub01" / sample
    for t, n in enumerate(data.frame_indices[i]):
      raw = cv2.imread(str(folder / f"img{n}.jpg"), cv2.IMREAD_GRAYSCALE)
      np.testing.assert_array_equal(data.frames[i, t, :, :, 0], raw)


def test_missing_frame_fails_naming_the_clip_or_is_listed_as_a_drop(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, GAP])
  with pytest.raises(A.DataError) as info:
    build_casme2(tmp_path, manual, landmarks)
  message = str(info.value)
  assert "[missing_frame]" in message and "row 3 (sample EP05_03)" in message
  assert "missing: 5" in message and "img5.jpg" in message and "allow_drops" in message
  assert len(info.value.problems) == 1
  assert not builders.dataset_dir(tmp_path / "out", "casme2", resolution=S, frames=T,
                                  alignment="landmarks").exists()

  builder, summary = build_casme2(tmp_path, manual, landmarks, allow_drops=True)
  (drop,) = summary["drops"]
  assert (drop["kind"], drop["sample"], drop["row"]) == (A.MISSING_FRAME, "EP05_03", 3)
  assert "img5.jpg" in drop["reason"]
  assert summary["counts"]["total"] == 1
  assert list(pipeline.load_prepared(builder.data_dir).sample) == ["EP02_01f"]


def test_malformed_row_fails_naming_file_and_row(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, MALFORMED])
  with pytest.raises(A.DataError) as info:
    build_casme2(tmp_path, manual, landmarks)
  xlsx = manual / "CASME2-coding-20140508.xlsx"
  assert f"{xlsx}, row 3 (sample EP01_11f): OnsetFrame 'abc' is not a frame number" in str(
      info.value)


def test_unreadable_image_fails_naming_the_file(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, SLASH])
  bad = manual / "CASME2_RAW_selected" / "sub01" / "EP03_02" / "img13.jpg"
  bad.write_bytes(b"\xff\xd8 truncated")
  with pytest.raises(A.DataError, match=r"\[unreadable_image\].*img13\.jpg \(sample EP03_02\)"):
    build_casme2(tmp_path, manual, landmarks)
  _, summary = build_casme2(tmp_path, manual, landmarks, allow_drops=True)
  assert [(d["kind"], d["sample"]) for d in summary["drops"]] == [(A.UNREADABLE_IMAGE,
                                                                   "EP03_02")]


def test_cropped_frames_are_resized_as_they_are(tmp_path):
  manual, _ = make_casme2(tmp_path, [GOOD], cropped=True)
  builder, summary = builders.build("casme2", manual, tmp_path / "out", resolution=S, frames=T,
                                    alignment="cropped")
  assert summary["alignment_sources"] == {"cropped": 1}
  data = pipeline.load_prepared(builder.data_dir)
  folder = manual / "Cropped" / "sub01" / "EP02_01f"
  for t, n in enumerate(data.frame_indices[0]):
    crop = cv2.imread(str(folder / f"reg_img{n}.jpg"), cv2.IMREAD_GRAYSCALE)
    expected = cv2.resize(crop, (S, S), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(data.frames[0, t, :, :, 0], expected)


def test_prepare_data_aligns_with_dlib(tmp_path):
  """Default alignment 'landmarks68': prepare_data.py writes dlib's eyes and mouth of each onset
  frame to a landmark CSV and builds from it; a clip whose onset frame has no face stops it,
  naming the clip, unless the user's CSV gives that clip (--landmarks CSV --detect)."""
  import skimage.data

  from launch.common import faces
  face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
  manual = tmp_path / "manual"
  write_casme2_xlsx(manual / "CASME2-coding-1.xlsx", [GOOD, SLASH])
  folder = manual / "CASME2_RAW_selected" / "sub01" / "EP02_01f"
  folder.mkdir(parents=True)
  for n in FRAMES_ON_DISK["EP02_01f"]:
    cv2.imwrite(str(folder / f"img{n}.jpg"), face)
  faceless = manual / "CASME2_RAW_selected" / "sub01" / "EP03_02"
  faceless.mkdir(parents=True)
  for n in FRAMES_ON_DISK["EP03_02"]:
    cv2.imwrite(str(faceless / f"img{n}.jpg"), np.full((96, 96), 128, np.uint8))
  common = ["--dataset", "casme2", "--manual_dir", manual, "--data_dir", tmp_path / "out",
            "--resolution", 32, "--frames", 2]
  failed = _prepare(*common)
  assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
  assert "no face found on the onset frame of 1 clip(s): sub01/EP03_02" in failed.stderr
  given = tmp_path / "given.csv"
  align.write_landmarks_csv(given, {("sub01", "EP03_02"): [[30, 40], [60, 40], [45, 75]]})
  done = _prepare(*common, "--landmarks", given, "--detect")
  assert done.returncode == 0, done.stderr[-2000:]
  written = tmp_path / "out" / "casme2_landmarks68.csv"
  assert f"landmarks: {written}" in done.stdout
  rows = align.read_landmarks_csv(written)
  assert list(rows) == [("sub01", "EP02_01f")]  # the given clip was not detected
  onset = cv2.imread(str(folder / "img46.jpg"), cv2.IMREAD_GRAYSCALE)
  points = faces.detect_landmarks(onset, "img46.jpg").points
  np.testing.assert_allclose(rows[("sub01", "EP02_01f")].as_array(), points, atol=5e-4)
  data_dir = builders.dataset_dir(tmp_path / "out", "casme2", resolution=32, frames=2,
                                  alignment="landmarks68")
  assert data_dir.name == "2.0.0" and data_dir.parent.name == "s32_t2_landmarks68"
  data = pipeline.load_prepared(data_dir)
  assert sorted(data.sample) == ["EP02_01f", "EP03_02"]
  i = list(data.sample).index("EP02_01f")
  matrix = align.similarity_from_landmarks(rows[("sub01", "EP02_01f")], 32)
  np.testing.assert_array_equal(data.frames[i, 0, :, :, 0], align.align(onset, matrix, 32))


def test_samm_and_smic_builders(tmp_path):
  manual = tmp_path / "manual"
  write_samm_xlsx(manual / "SAMM_Micro_FACS_Codes_v2.xlsx", [
      (6, "006_1_2", 5562, 5700, 5570, "Anger"),     # apex outside [onset, offset]
      (6, "006_1_3", 98, 100, 102, "Happiness")])
  samm = manual / "SAMM" / "006"
  write_frames(samm / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5560, 5575)], (S, S))
  write_frames(samm / "006_1_3", [f"006_{n:04d}.jpg" for n in range(96, 104)], (S, S))
  hs = manual / "SMIC" / "HS"
  write_frames(hs / "s3" / "micro" / "positive" / "s3_po_05",
               [f"image{n:06d}.bmp" for n in range(201, 212)], (S, S))
  marks = {("006", "006_1_2"): align.template_points(S),
           ("006", "006_1_3"): align.template_points(S),
           ("s3", "s3_po_05"): align.template_points(S)}
  landmarks = tmp_path / "lm.csv"
  align.write_landmarks_csv(landmarks, marks)
  options = builders.BuildOptions(landmarks_csv=str(landmarks))
  b_samm, s_samm = builders.build("samm", manual, tmp_path / "out", resolution=S, frames=T,
                                  alignment="landmarks", options=options)
  assert [(f["sample"], f["rule"]) for f in s_samm["fixes"]] == [("006_1_2", A.RULE_APEX_OUTSIDE)]
  assert s_samm["counts"]["per_subject"] == {"samm": {"6": 2}}
  samm_data = pipeline.load_prepared(b_samm.data_dir)
  np.testing.assert_array_equal(samm_data.apex_index, [5566, 100])
  np.testing.assert_array_equal(samm_data.frame_indices[1], [98, 99, 99, 100])
  b_smic, s_smic = builders.build("smic", manual, tmp_path / "out", resolution=S, frames=T,
                                  alignment="landmarks", options=options)
  assert [(f["sample"], f["rule"]) for f in s_smic["fixes"]] == [("s03_po_05",
                                                                  A.RULE_SMIC_MIDDLE_APEX)]
  smic_data = pipeline.load_prepared(b_smic.data_dir)
  assert (smic_data.subject[0], smic_data.sample[0], smic_data.label[0]) == ("s03", "s03_po_05",
                                                                             1)
  assert (smic_data.onset_index[0], smic_data.apex_index[0]) == (201, 206)


def test_composite_names_a_listed_clip_that_is_not_there(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, SLASH])
  listing = tmp_path / "list.csv"
  listing.write_text("dataset,subject,sample,label\ncasme2,sub01,EP02_01f,1\n"
                     "casme2,sub01,EP03_02,2\ncasme2,sub04,EP09_01,0\n")
  options = builders.BuildOptions(landmarks_csv=str(landmarks), composite_csv=str(listing))
  with pytest.raises(A.DataError, match=rf"{listing}, row 4 \(sample EP09_01\): listed clip"):
    builders.build("composite", manual, tmp_path / "out", resolution=S, frames=T,
                   alignment="landmarks", options=options)
  options = dataclasses.replace(options, allow_drops=True)
  _, summary = builders.build("composite", manual, tmp_path / "out", resolution=S, frames=T,
                              alignment="landmarks", options=options)
  assert [d["sample"] for d in summary["drops"]] == ["EP09_01"]
  # The list says surprise for EP03_02; the annotation says disgust: annotation wins, reported.
  assert sorted(f["rule"] for f in summary["fixes"]) == [A.RULE_APEX_MISSING,
                                                         A.RULE_LABEL_FROM_ANNOTATION]
  assert summary["counts"]["per_class"] == {"casme2": {"negative": 1, "positive": 1}}


def test_the_shipped_composite_list_is_the_megc2019_one():
  """The package's copy, byte for byte the 442-clip MEGC2019 composite list it was checked
  against (dataset, subject, sample, label)."""
  shipped = builders.default_composite_csv()
  assert hashlib.sha256(shipped.read_bytes()).hexdigest() == (
      "a69992e8c1d99a0fd1e2eb0797cff686c09702e7ce701ab33414ec2d1e5b01f3")
  assert len(shipped.read_text().splitlines()) == 1 + 442


def test_landmark_files_merge_and_refuse_a_clip_given_twice(tmp_path):
  a, b = tmp_path / "a.csv", tmp_path / "b.csv"
  align.write_landmarks_csv(a, {("sub01", "EP01"): align.template_points(S)})
  align.write_landmarks_csv(b, {("006", "006_1_2"): align.template_points(S)})
  assert set(builders.read_landmark_files([str(a), str(b)])) == {("sub01", "EP01"),
                                                                  ("006", "006_1_2")}
  with pytest.raises(ValueError, match=r"a\.csv: landmarks of sub01/EP01 are also given in"):
    builders.read_landmark_files([str(a), str(a)])


# ----------------------------------------------------------------------------- CLI

def _prepare(*args):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
         "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
  return subprocess.run([sys.executable, str(REPO / "launch" / "prepare_data.py"), *map(str, args)],
                        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_prepare_data_cli_summary_and_errors(tmp_path):
  manual, landmarks = make_casme2(tmp_path, [GOOD, SLASH, GAP])
  common = ["--dataset", "casme2", "--manual_dir", manual, "--data_dir", tmp_path / "out",
            "--landmarks", landmarks, "--resolution", S, "--frames", T]
  failed = _prepare(*common)
  assert failed.returncode == 2 and "Traceback" not in failed.stderr
  assert "error: 1 problem(s)" in failed.stderr and "(sample EP05_03)" in failed.stderr

  summary_json = tmp_path / "summary.json"
  done = _prepare(*common, "--allow_drops", "--summary_json", summary_json)
  assert done.returncode == 0, done.stderr
  summary = json.loads(summary_json.read_text())
  assert summary["counts"]["per_subject"] == {"casme2": {"sub01": 2}}
  assert [d["sample"] for d in summary["drops"]] == ["EP05_03"]
  assert [f["sample"] for f in summary["fixes"]] == ["EP03_02"]
  assert "clips dropped: 1" in done.stdout and "[apex_missing]" in done.stdout
  assert "casme2 clips per subject: sub01:2" in done.stdout


# ----------------------------------------------------------------------------- generated corpus

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """The smallest generated corpus that holds every annotation fault (2 subjects x 3 clips)."""
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("corpus")
  manifest = synthetic.generate_corpus(root, synthetic.CorpusConfig(
      subjects=2, clips_per_subject=3, cropped=False))
  return root, manifest


def _expected_counts(clips):
  per_db, per_class, per_subject = {}, {}, {}
  for c in clips:
    db = c["database"]
    per_db[db] = per_db.get(db, 0) + 1
    per_class.setdefault(db, {})[c["label_name"]] = per_class.get(db, {}).get(
        c["label_name"], 0) + 1
    per_subject.setdefault(db, {})[c["subject"]] = per_subject.get(db, {}).get(
        c["subject"], 0) + 1
  return {"total": len(clips), "per_database": per_db, "per_class": per_class,
          "per_subject": per_subject}


def _expected_fixes(clips):
  rules = {"ApexFrame": A.RULE_APEX_MISSING, "Offset Frame": A.RULE_OFFSET_BEFORE_ONSET,
           "Apex Frame": A.RULE_APEX_OUTSIDE}
  fixes = {(c["database"], c["sample"], rules[f["column"]]) for c in clips for f in c["faults"]}
  fixes |= {(c["database"], c["sample"], A.RULE_SMIC_MIDDLE_APEX) for c in clips
            if c["database"] == "smic"}
  return fixes


@pytest.mark.parametrize("dataset", ["casme2", "samm", "smic", "composite"])
def test_generated_corpus_round_trips_through_the_builders(corpus, dataset, tmp_path):
  root, manifest = corpus
  clips = [c for c in manifest["clips"]
           if (c["in_composite"] if dataset == "composite" else c["database"] == dataset)]
  options = builders.BuildOptions(
      landmarks_csv=[str(root / info["landmarks"]) for info in manifest["databases"].values()],
      composite_csv=str(root / manifest["composite_list"]) if dataset == "composite" else None)
  builder, summary = builders.build(dataset, root, tmp_path, resolution=32, frames=T,
                                    alignment="landmarks", options=options)
  assert summary["drops"] == [] and summary["ignored_problems"] == []
  assert summary["counts"] == _expected_counts(clips)
  assert {(f["database"], f["sample"], f["rule"]) for f in summary["fixes"]} == \
      _expected_fixes(clips)
  assert len(summary["fixes"]) == len(_expected_fixes(clips))

  data = pipeline.load_prepared(builder.data_dir)
  truth = {(c["database"], c["subject"], c["sample"]): c for c in clips}
  assert len(data) == len(truth)
  for i in range(len(data)):
    c = truth[(data.database[i], data.subject[i], data.sample[i])]
    assert (data.label[i], data.label5[i]) == (c["label"], c["label5"])
    assert (data.onset_index[i], data.apex_index[i], data.offset_index[i]) == (
        c["onset_index"], c["apex_index"], c["offset_index"])
    assert (data.frame_indices[i, 0], data.frame_indices[i, -1]) == (c["onset_index"],
                                                                      c["apex_index"])
  if dataset != "composite":
    # Stored onset frame = the raw onset frame warped by the generator's true landmarks.
    c = truth[(data.database[0], data.subject[0], data.sample[0])]
    raw = cv2.imread(str(root / c["raw_dir"] / c["frame_name_example"]), cv2.IMREAD_GRAYSCALE)
    matrix = align.similarity_from_landmarks(np.asarray(c["landmarks_onset"]), 32)
    np.testing.assert_array_equal(data.frames[0, 0, :, :, 0], align.align(raw, matrix, 32))
