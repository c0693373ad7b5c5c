"""The generated micro-expression corpus (frldgt_jax/data/synthetic.py, launch/make_synthetic.py).

The layout is checked against the layouts the real databases are distributed in, spelled out
here independently of the generator; the expressions are checked with OpenCV's Farneback optical
flow between the aligned onset and apex frames read back from disk.
"""
import csv
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import openpyxl
import pytest

from frldgt_jax.data import align
from frldgt_jax.data import faces
from frldgt_jax.data import synthetic

SIZE = 128
REPO = pathlib.Path(__file__).resolve().parents[2]
CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes"]
# MEGC2019 composite rules (frldgt.md): CASME II negative = disgust or repression.
CASME2_COMPOSITE = {"disgust": 0, "repression": 0, "happiness": 1, "surprise": 2}
SAMM_COMPOSITE = {"anger": 0, "contempt": 0, "disgust": 0, "fear": 0, "sadness": 0,
                  "happiness": 1, "surprise": 2}
FRAME_PATTERNS = {"casme2": re.compile(r"^img(\d+)\.jpg$"),
                  "samm": re.compile(r"^(\d{3})_(\d+)\.jpg$"),
                  "smic": re.compile(r"^image(\d{6})\.bmp$")}
# Regions of the aligned 128-px crop (x, y centre and half sizes, normalised), from TEMPLATE:
# brows above the eyes, mouth corners either side of the mouth, cheeks below the eyes, the chin
# below the mouth; the nose sits away from every AU pattern's reach and serves as the neutral
# reference.
REGIONS = {"brows": [(0.32, 0.29, 0.07, 0.035), (0.68, 0.29, 0.07, 0.035)],
           "corners": [(0.385, 0.78, 0.035, 0.03), (0.615, 0.78, 0.035, 0.03)],
           "cheeks": [(0.32, 0.53, 0.04, 0.04), (0.68, 0.53, 0.04, 0.04)],
           "chin": [(0.5, 0.89, 0.08, 0.03)],
           "nose": [(0.5, 0.56, 0.03, 0.05)]}
# Per class, FACS: the regions that move and where (unit vectors for the image-left and
# image-right box), and a region that must stay put.
_DOWN, _UP = (0.0, 1.0), (0.0, -1.0)
_IN_DOWN = ((0.41, 0.91), (-0.41, 0.91))     # AU4: brows down and together
_OUT_UP = ((-0.54, -0.84), (0.54, -0.84))    # AU12: corners up and outwards
EXPECTED = {0: ({"brows": _IN_DOWN, "corners": (_DOWN, _DOWN)}, "cheeks"),  # AU4 + AU15
            1: ({"cheeks": (_UP, _UP), "corners": _OUT_UP}, "brows"),       # AU6 + AU12
            2: ({"brows": (_UP, _UP), "chin": (_DOWN,)}, "cheeks")}         # AU1+2 + AU26


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """One subject per database, 6 composite clips each (every class in every database)."""
  root = tmp_path_factory.mktemp("corpus")
  manifest = synthetic.generate_corpus(root, synthetic.CorpusConfig(subjects=1, seed=0))
  return root, manifest


def _frame_files(folder: pathlib.Path, database: str) -> dict[int, str]:
  out = {}
  for name in os.listdir(folder):
    match = FRAME_PATTERNS[database].match(name)
    assert match, f"unexpected file {folder / name}"
    out[int(match.groups()[-1])] = name
  return out


def _read_gray(root, clip, number):
  folder = root / clip["raw_dir"]
  name = _frame_files(folder, clip["database"])[number]
  image = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
  assert image is not None, folder / name
  return image


def _aligned(root, clip, landmarks, number):
  key = (clip["subject_native"], clip["sample_native"])
  matrix = align.similarity_from_landmarks(landmarks[clip["database"]][key], SIZE)
  return align.align(_read_gray(root, clip, number), matrix, SIZE)


def region_motion(onset: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
  """Farneback flow (x, y) in the boxes of each region: {region: [boxes, pixels, 2]}."""
  flow = cv2.calcOpticalFlowFarneback(onset, other, None, 0.5, 3, 15, 5, 5, 1.1, 0)
  out = {}
  for name, boxes in REGIONS.items():
    blocks = []
    for x, y, hw, hh in boxes:
      cx, cy, rx, ry = (round(v * SIZE) for v in (x, y, hw, hh))
      blocks.append(flow[cy - ry:cy + ry, cx - rx:cx + rx].reshape(-1, 2))
    out[name] = np.array(blocks)
  return out


def class_motion(motion: dict[str, np.ndarray], label: int):
  """Relative to the nose's mean motion: {moving region: its peak displacement along the FACS
  direction (90th percentile in each box, averaged over the boxes)}, and the largest mean
  displacement of a box of the region that should stay put."""
  nose = motion["nose"][0].mean(0)
  moving, still = EXPECTED[label]
  along = {region: float(np.mean([np.percentile((m - nose) @ np.array(d), 90) for m, d in
                                  zip(motion[region], directions)]))
           for region, directions in moving.items()}
  return along, float(np.abs(motion[still].mean(1) - nose).max())


def _landmarks(root, manifest):
  return {db: align.read_landmarks_csv(root / info["landmarks"])
          for db, info in manifest["databases"].items()}


# ----------------------------------------------------------------------------- layout

def test_casme2_spreadsheet(corpus):
  root, manifest = corpus
  paths = list(root.glob("CASME2-coding-*.xlsx"))
  assert len(paths) == 1
  rows = list(openpyxl.load_workbook(paths[0], read_only=True).worksheets[0].iter_rows(
      values_only=True))
  assert list(rows[0][:9]) == CASME2_HEADER
  clips = {c["sample_native"]: c for c in manifest["clips"] if c["database"] == "casme2"}
  assert len(rows) - 1 == len(clips)
  slash_apexes = 0
  for row in rows[1:]:
    subject, filename, empty2, onset, apex, offset, empty6, aus, emotion = row[:9]
    clip = clips[filename]
    assert isinstance(subject, int) and f"sub{subject:02d}" == clip["subject_native"]
    assert empty2 is None and empty6 is None and isinstance(aus, str) and aus
    assert (onset, offset) == (clip["onset_index"], clip["offset_index"])
    if apex == "/":
      slash_apexes += 1  # unannotated: the true apex is the mid-point
      assert clip["apex_index"] == (onset + offset) // 2
    else:
      assert apex == clip["apex_index"]
    assert emotion == clip["emotion"]
    assert clip["label"] == CASME2_COMPOSITE.get(emotion, -1)
  assert slash_apexes == 1
  assert {c["emotion"] for c in clips.values()} - set(CASME2_COMPOSITE), "no clip to filter out"


def test_samm_spreadsheet(corpus):
  root, manifest = corpus
  rows = list(openpyxl.load_workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx", read_only=True)
              .worksheets[0].iter_rows(values_only=True))
  for row in rows[:13]:  # 13 rows of free text before the header row
    assert isinstance(row[0], str) and row[0] and all(c is None for c in row[1:])
  assert list(rows[13][:12]) == SAMM_HEADER
  clips = {c["sample_native"]: c for c in manifest["clips"] if c["database"] == "samm"}
  assert len(rows) - 14 == len(clips)
  wrong = 0
  for row in rows[14:]:
    cells = dict(zip(SAMM_HEADER, row))
    clip = clips[cells["Filename"]]
    assert cells["Subject"] == clip["subject_native"] and cells["Filename"].startswith(
        cells["Subject"] + "_")
    assert cells["Onset Frame"] == clip["onset_index"]
    if not cells["Onset Frame"] <= cells["Apex Frame"] <= cells["Offset Frame"]:
      wrong += 1  # the real file's faults: the truth is recoverable from the folder
      assert clip["faults"]
      assert clip["apex_index"] == (clip["onset_index"] + clip["offset_index"]) // 2 or (
          cells["Offset Frame"] < cells["Onset Frame"] and
          clip["offset_index"] == max(_frame_files(root / clip["raw_dir"], "samm")))
    else:
      assert (cells["Apex Frame"], cells["Offset Frame"]) == (clip["apex_index"],
                                                              clip["offset_index"])
    assert clip["label"] == SAMM_COMPOSITE.get(cells["Estimated Emotion"].lower(), -1)
  assert wrong == 2


def test_frames_exist_for_every_annotated_index(corpus):
  root, manifest = corpus
  paddings = set()
  for clip in manifest["clips"]:
    database = clip["database"]
    raw = root / clip["raw_dir"]
    if database == "casme2":
      assert raw.parent.parent.name == "CASME2_RAW_selected"
      assert raw.parent.name == clip["subject_native"]
    elif database == "samm":
      assert raw.parent.parent.name == "SAMM"
    else:
      # SMIC/HS/s1/micro/<emotion>/s1_ne_01: the label comes from the folder.
      parts = raw.relative_to(root).parts
      assert parts[:2] == ("SMIC", "HS") and parts[3] == "micro"
      assert parts[4] == ("negative", "positive", "surprise")[clip["label"]]
      assert re.fullmatch(r"s\d+_(ne|po|sur)_\d\d", parts[5])
    frames = _frame_files(raw, database)
    assert len(frames) == clip["n_frames"]
    assert sorted(frames) == list(range(min(frames), max(frames) + 1))
    for number in range(clip["onset_index"], clip["offset_index"] + 1):
      assert number in frames, (raw, number)
    if database == "samm":
      paddings |= {len(re.match(r"\d+_(\d+)", n).group(1)) for n in frames.values()}
      assert all(n.startswith(clip["subject_native"] + "_") for n in frames.values())
    cropped = root / clip["cropped_dir"]
    assert sorted(os.listdir(cropped)) == sorted("reg_" + n for n in frames.values())
  assert {4, 5} <= paddings
  samm_names = [n for c in manifest["clips"] if c["database"] == "samm"
                for n in os.listdir(root / c["raw_dir"])]
  assert any(re.fullmatch(r"\d{3}_0\d{4}\.jpg", n) for n in samm_names), "no 5-digit zero pad"


def test_image_formats(corpus):
  root, manifest = corpus
  seen = set()
  for clip in manifest["clips"]:
    if clip["database"] in seen:
      continue
    seen.add(clip["database"])
    folder = root / clip["raw_dir"]
    image = cv2.imread(str(folder / sorted(os.listdir(folder))[0]), cv2.IMREAD_UNCHANGED)
    if clip["database"] == "samm":
      assert image.ndim == 2  # grayscale files
    else:
      assert image.shape == (480, 640, 3)
      # Colour: the channels differ on the face.
      assert np.abs(image[..., 2].astype(int) - image[..., 0]).mean() > 5
    assert image.shape[:2] == (480, 640)
  assert seen == {"casme2", "samm", "smic"}


def test_manifest_and_composite_list_match_the_files(corpus):
  root, manifest = corpus
  counts = manifest["counts"]
  # Recount from the files, not from the manifest's clip list.
  casme = list(openpyxl.load_workbook(next(root.glob("CASME2-coding-*.xlsx")), read_only=True)
               .worksheets[0].iter_rows(values_only=True))[1:]
  samm = list(openpyxl.load_workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx", read_only=True)
              .worksheets[0].iter_rows(values_only=True))[14:]
  smic = [p for p in (root / "SMIC" / "HS").glob("s*/micro/*/*") if p.is_dir()]
  labels = {
      "casme2": [CASME2_COMPOSITE.get(r[8], -1) for r in casme],
      "samm": [SAMM_COMPOSITE.get(r[9].lower(), -1) for r in samm],
      "smic": [("negative", "positive", "surprise").index(p.parent.name) for p in smic],
  }
  for database, found in labels.items():
    c = counts["per_database"][database]
    assert c["clips"] == len(found)
    assert c["composite"] == sum(v >= 0 for v in found)
    assert [c["negative"], c["positive"], c["surprise"]] == [found.count(k) for k in range(3)]
  assert counts["clips"] == len(manifest["clips"]) == sum(len(v) for v in labels.values())
  assert sum(s["clips"] for s in counts["per_subject"].values()) == counts["clips"]
  with open(root / "composite_3class.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["dataset", "subject", "sample", "label"]
  assert len(rows) - 1 == counts["composite"] == 18
  for dataset, subject, sample, label in rows[1:]:
    if dataset == "casme2":
      assert re.fullmatch(r"sub\d\d", subject) and re.fullmatch(r"EP\d\d_\d\d?f?", sample)
    elif dataset == "samm":
      assert re.fullmatch(r"[1-9]\d*", subject) and sample.startswith(f"{int(subject):03d}_")
    else:
      assert re.fullmatch(r"s\d\d", subject) and re.fullmatch(subject + r"_(ne|po|sur)_\d\d",
                                                               sample)
    assert label in ("0", "1", "2")
  for clip in manifest["clips"]:
    assert clip["fps"] == {"casme2": 200, "samm": 200, "smic": 100}[clip["database"]]
    assert clip["onset_index"] < clip["apex_index"] < clip["offset_index"]
    if clip["database"] == "smic":  # no apex annotation: the middle frame
      assert clip["apex_index"] == (clip["onset_index"] + clip["offset_index"]) // 2
    assert clip["label5"] == (("happiness", "disgust", "repression", "surprise", "others").index(
        clip["emotion"]) if clip["database"] == "casme2" and clip["emotion"] in (
            "happiness", "disgust", "repression", "surprise", "others") else -1)


# ----------------------------------------------------------------------------- content

def test_landmarks_put_the_pupils_on_the_template(corpus):
  root, manifest = corpus
  landmarks = _landmarks(root, manifest)
  big = 4 * SIZE  # a finer crop to find the pupils in; errors are reported in 128-px pixels
  template = align.template_points(big)
  for clip in manifest["clips"]:
    key = (clip["subject_native"], clip["sample_native"])
    matrix = align.similarity_from_landmarks(landmarks[clip["database"]][key], big)
    crop = align.align(_read_gray(root, clip, clip["onset_index"]), matrix, big)
    crop = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), 2.0)
    for eye in template[:2]:
      # The pupil is the darkest spot within 6 (128-px) pixels of the template eye.
      x0, y0 = int(eye[0]) - 24, int(eye[1]) - 24
      window = crop[y0:y0 + 49, x0:x0 + 49]
      y, x = np.unravel_index(np.argmin(window), window.shape)
      error = np.hypot(x0 + x - eye[0], y0 + y - eye[1]) * SIZE / big
      assert error < 2.0, (clip["sample"], eye, x0 + x, y0 + y)


def test_class_displacements_are_in_the_au_regions(corpus):
  root, manifest = corpus
  landmarks = _landmarks(root, manifest)
  for clip in manifest["clips"]:
    if clip["label"] < 0:
      continue
    onset = _aligned(root, clip, landmarks, clip["onset_index"])
    motion = region_motion(onset, _aligned(root, clip, landmarks, clip["apex_index"]))
    nose = motion["nose"][0].mean(0)
    assert np.hypot(*nose) < 1.0, (clip["sample"], "the neutral region moved", nose)
    along, still = class_motion(motion, clip["label"])
    for region, value in along.items():
      # Drawn peaks are 1-3 px per side; Farneback recovered 55-90% of them on a corpus without
      # distractors (its window averages the peak with the skin around it).
      assert 0.45 < value < 3.5, (clip["sample"], clip["label_name"], region, value)
    assert still < 0.45, (clip["sample"], clip["label_name"], "still region moved", still)


def test_expression_returns_to_neutral_at_offset(corpus):
  root, manifest = corpus
  landmarks = _landmarks(root, manifest)
  for clip in manifest["clips"][:6]:
    onset = _aligned(root, clip, landmarks, clip["onset_index"])
    motion = region_motion(onset, _aligned(root, clip, landmarks, clip["offset_index"]))
    for region in ("brows", "corners", "cheeks", "chin"):
      relative = np.abs(motion[region].mean(1) - motion["nose"][0].mean(0)).max()
      assert relative < 0.45, (clip["sample"], region, relative)


def test_au_fields_have_the_stated_peak_and_the_warp_moves_content_by_them():
  identity = faces.random_identity(np.random.default_rng(5))
  to_canvas = faces.PIXELS_PER_UNIT / faces.AU_PIXELS
  for pattern in ("AU4", "AU1+2", "AU12", "AU15", "AU26"):
    components = faces.au_components(identity, pattern, (1.3, 2.6))
    peak = np.hypot(*faces.displacement_field(components).transpose(2, 0, 1)).max() / to_canvas
    expected = 2.6 if pattern != "AU26" else (1.3 + 2.6) / 2  # one side's, or the mean (jaw)
    assert abs(peak - expected) < 0.03 * expected, (pattern, peak)
  # Small blobs on the canvas move by the field at their position (inverse map by fixed point).
  components = faces.au_components(identity, "AU12", (3.0, 3.0))
  field = faces.displacement_field(components)
  box = faces.field_box(components)
  corner = faces.units_to_canvas((0.5 - identity.mouth_w, identity.mouth_y))
  ys, xs = np.mgrid[0:faces.CANVAS_H, 0:faces.CANVAS_W].astype(np.float32)
  for dx, dy in ((0, 0), (6, -4), (-5, 3)):
    p = corner + (dx, dy)
    blob = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / (2 * 0.8 ** 2)).astype(np.float32)
    moved = faces.warp_forward(blob, field[box[1]:box[3], box[0]:box[2]], box)
    centroid = np.array([(moved * xs).sum(), (moved * ys).sum()]) / moved.sum()
    at_p = cv2.remap(field, np.float32([[p[0]]]), np.float32([[p[1]]]), cv2.INTER_LINEAR)[0, 0]
    assert np.hypot(*at_p) > 2.0  # a real displacement (canvas pixels)
    # 0.1 canvas px = 0.05 px of the 128-px crop (bilinear resampling of a sub-pixel blob).
    np.testing.assert_allclose(centroid, p + at_p, atol=0.1)


# ----------------------------------------------------------------------------- generator

def test_deterministic_for_a_seed(tmp_path):
  config = synthetic.CorpusConfig(subjects=1, clips_per_subject=1, databases=("samm",),
                                  extra_clips=False, cropped=False)
  for name, seed in (("a", 3), ("b", 3), ("c", 4)):
    synthetic.generate_corpus(tmp_path / name, dataclasses.replace(config, seed=seed))

  def files(name):
    """Bytes of every file; cell values of the spreadsheet (its zip carries save times)."""
    base = tmp_path / name
    out = {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*")
           if p.is_file() and p.suffix != ".xlsx" and p.name != "manifest.json"}
    out["xlsx"] = list(openpyxl.load_workbook(base / "SAMM_Micro_FACS_Codes_v2.xlsx")
                       .worksheets[0].iter_rows(values_only=True))
    return out
  assert files("a") == files("b")
  assert files("a") != files("c")
  manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
  assert manifest["counts"]["clips"] == 1 and manifest["config"]["seed"] == 3


def test_refuses_to_write_over_other_files(tmp_path):
  (tmp_path / "notes.txt").write_text("keep me")
  with pytest.raises(FileExistsError, match="not empty"):
    synthetic.generate_corpus(tmp_path, synthetic.CorpusConfig(subjects=1, clips_per_subject=1,
                                                               databases=("smic",)))
  with pytest.raises(FileExistsError, match="notes.txt"):
    synthetic.generate_corpus(tmp_path, synthetic.CorpusConfig(subjects=1, clips_per_subject=1,
                                                               databases=("smic",)),
                              overwrite=True)
  assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_overwrites_an_earlier_corpus(tmp_path):
  config = synthetic.CorpusConfig(subjects=1, clips_per_subject=1, databases=("casme2",),
                                  extra_clips=False, cropped=False)
  synthetic.generate_corpus(tmp_path, config)
  with pytest.raises(FileExistsError, match="not empty"):
    synthetic.generate_corpus(tmp_path, config)
  manifest = synthetic.generate_corpus(tmp_path, dataclasses.replace(config, seed=1),
                                       overwrite=True)
  assert synthetic.read_manifest(tmp_path)["config"]["seed"] == manifest["config"]["seed"] == 1
  assert len(list((tmp_path / "CASME2_RAW_selected").glob("sub01/*"))) == 1


def test_class_proportions_follow_the_composite():
  plans = synthetic.plan_corpus(synthetic.CorpusConfig())
  labels = [p.label for p in plans if p.label >= 0]
  assert len(labels) == 72 and len({(p.database, p.subject) for p in plans}) == 12
  # 250 / 109 / 83 of 442, scaled to 72 clips: 40.7 / 17.8 / 13.5.
  assert [labels.count(k) for k in range(3)] == [41, 18, 13]


def test_command_line(tmp_path):
  out = tmp_path / "corpus"
  result = subprocess.run(
      [sys.executable, str(REPO / "launch" / "make_synthetic.py"), "--out", str(out),
       "--subjects", "1", "--clips_per_subject", "1", "--databases", "casme2", "--nocropped"],
      capture_output=True, text=True, timeout=300, cwd=REPO)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"Corpus: {out}" in result.stdout
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["counts"]["per_database"]["casme2"]["composite"] == 1
  assert not (out / "Cropped").exists()
  # A user error (a bad flag value): one `error:` line, exit status 2, no traceback.
  bad = subprocess.run(
      [sys.executable, str(REPO / "launch" / "make_synthetic.py"), "--out", str(out),
       "--subjects", "0"], capture_output=True, text=True, timeout=300, cwd=REPO)
  assert bad.returncode == 2 and "error: subjects" in bad.stderr, bad.stderr[-2000:]
  assert "Traceback" not in bad.stderr
