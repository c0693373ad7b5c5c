"""Annotation readers, frame listing and the errata (frldgt_jax/data/annotations.py, clips.py).

The writers here build hand-made dataset folders (tiny images, real .xlsx files) in the layouts
the databases are distributed in; tests/frldgt/test_builders.py reuses them.
"""
import pathlib

import cv2
import numpy as np
import openpyxl
import pytest

from frldgt_jax.data import annotations as A
from frldgt_jax.data import databases
from frldgt_jax.data import clips as C

CASME2_HEADER = ("Subject", "Filename", "Unnamed: 2", "OnsetFrame", "ApexFrame", "OffsetFrame",
                 "Unnamed: 6", "Action Units", "Estimated Emotion")
SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes")


def write_casme2_xlsx(path, rows):
  """rows: (subject, filename, onset, apex, offset, emotion); the sheet has CASME II's columns."""
  book = openpyxl.Workbook()
  sheet = book.active
  sheet.append(CASME2_HEADER)
  for subject, name, onset, apex, offset, emotion in rows:
    sheet.append((subject, name, None, onset, apex, offset, None, "12", emotion))
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  book.save(path)


def write_samm_xlsx(path, rows, preamble=13):
  """rows: (subject, filename, onset, apex, offset, emotion), after `preamble` free-text rows."""
  book = openpyxl.Workbook()
  sheet = book.active
  for i in range(preamble):
    sheet.append((f"SAMM description line {i + 1}" if i % 3 == 0 else None,))
  sheet.append(SAMM_HEADER)
  for subject, name, onset, apex, offset, emotion in rows:
    sheet.append((subject, name, "1", onset, apex, offset, None, "Micro", "R12", emotion,
                  None, None))
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  book.save(path)


def write_frames(folder, names, shape=(20, 24), seed=0):
  """Writes small random grayscale images named `names` into `folder`; returns the images."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  images = {}
  for name in names:
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    assert cv2.imwrite(str(folder / name), image)
    images[name] = image
  return images


# ----------------------------------------------------------------------------- CASME II

def test_casme2_reader_parses_rows_and_names_a_malformed_row(tmp_path):
  path = tmp_path / "CASME2-coding-20140508.xlsx"
  write_casme2_xlsx(path, [
      (1, "EP02_01f", 46, 59, 86, "happiness"),
      (1, "EP03_02", 10, "/", 20, "disgust"),
      (2, "EP01_11f", "abc", 5, 9, "repression"),
      (2, "EP05_03", 3, 4, 0, "fear"),
  ])
  clips, problems = A.read_casme2_xlsx(path)
  assert [(c.subject, c.sample, c.onset, c.apex, c.offset) for c in clips] == [
      ("sub01", "EP02_01f", 46, 59, 86), ("sub01", "EP03_02", 10, None, 20),
      ("sub02", "EP05_03", 3, 4, None)]
  assert [(c.label, c.label5) for c in clips] == [(1, 0), (0, 1), (-1, -1)]
  assert [c.row for c in clips] == [2, 3, 5]
  assert all(c.fps == 200 and c.database == "casme2" for c in clips)
  (problem,) = problems
  assert (problem.kind, problem.row, problem.sample) == (A.MALFORMED_ROW, 4, "EP01_11f")
  message = str(problem)
  assert str(path) in message and "row 4" in message and "EP01_11f" in message
  assert "OnsetFrame 'abc'" in message


def test_casme2_reader_flags_unknown_emotion_and_duplicates(tmp_path):
  path = tmp_path / "CASME2-coding-x.xlsx"
  write_casme2_xlsx(path, [
      (1, "EP02_01f", 46, 59, 86, "happiness"),
      (1, "EP02_01f", 46, 59, 86, "happiness"),
      (3, "EP02_01f", 46, 59, 86, "joy"),
  ])
  clips, problems = A.read_casme2_xlsx(path)
  assert len(clips) == 1
  assert [(p.kind, p.row) for p in problems] == [(A.DUPLICATE_ROW, 3), (A.MALFORMED_ROW, 4)]
  assert "'joy'" in str(problems[1])


def test_casme2_reader_rejects_a_sheet_with_other_columns(tmp_path):
  path = tmp_path / "CASME2-coding-x.xlsx"
  book = openpyxl.Workbook()
  book.active.append(("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame"))
  book.save(path)
  with pytest.raises(A.DataError, match=r"row 1.*header does not match the CASME II layout"):
    A.read_casme2_xlsx(path)


# ----------------------------------------------------------------------------- errata

def _clip(database="casme2", onset=10, apex=15, offset=20, apex_text="", offset_text=""):
  return A.ClipAnnotation(database, "sub01", "EP01", "sub01", "EP01", onset, apex, offset,
                          "happiness", 1, 0, 200, "x.xlsx", 2, apex_text, offset_text)


def test_errata_apex_slash_is_the_midpoint():
  span, fixes = A.resolve_frames(_clip(onset=10, apex=None, offset=21, apex_text="/"),
                                 range(1, 40))
  assert (span.onset, span.apex, span.offset) == (10, 15, 21)
  assert [f.rule for f in fixes] == [A.RULE_APEX_MISSING]
  assert "'/'" in fixes[0].detail and "15" in fixes[0].detail


def test_errata_apex_outside_span_is_the_midpoint():
  for apex in (5, 30):
    span, fixes = A.resolve_frames(_clip(database="samm", onset=10, apex=apex, offset=20),
                                   range(1, 40))
    assert span.apex == 15
    assert [f.rule for f in fixes] == [A.RULE_APEX_OUTSIDE]
    assert str(apex) in fixes[0].detail


def test_errata_missing_or_early_offset_is_the_last_frame_on_disk():
  span, fixes = A.resolve_frames(_clip(onset=10, apex=12, offset=None, offset_text="0"),
                                 range(3, 31))
  assert (span.offset, span.apex) == (30, 12)
  assert [f.rule for f in fixes] == [A.RULE_OFFSET_MISSING]
  span, fixes = A.resolve_frames(_clip(onset=10, apex=None, offset=8), range(3, 31))
  assert (span.offset, span.apex) == (30, 20)
  assert [f.rule for f in fixes] == [A.RULE_OFFSET_BEFORE_ONSET, A.RULE_APEX_MISSING]


def test_errata_leave_a_valid_clip_alone():
  span, fixes = A.resolve_frames(_clip(onset=10, apex=10, offset=20), range(1, 40))
  assert (span.onset, span.apex, span.offset) == (10, 10, 20) and fixes == []


# ----------------------------------------------------------------------------- SAMM

def test_samm_reader_skips_the_preamble_and_unpads_subjects(tmp_path):
  path = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
  write_samm_xlsx(path, [
      (6, "006_1_2", 5562, 5588, 5605, "Contempt"),
      ("032", "032_3_1", 1200, 1100, 1250, "Happiness"),
      (7, "007_6_1", 100, 120, 150, "Other"),
      (7, "007_6_2", "x", 120, 150, "Surprise"),
  ])
  clips, problems = A.read_samm_xlsx(path)
  assert [(c.subject, c.subject_dir, c.sample, c.label, c.row) for c in clips] == [
      ("6", "006", "006_1_2", 0, 15), ("32", "032", "032_3_1", 1, 16),
      ("7", "007", "007_6_1", -1, 17)]
  assert all(c.label5 == -1 and c.fps == 200 for c in clips)
  (problem,) = problems
  assert (problem.row, problem.sample) == (18, "007_6_2")
  assert "Onset Frame 'x'" in str(problem)
  span, fixes = A.resolve_frames(clips[1], range(1190, 1260))
  assert span.apex == 1225 and fixes[0].rule == A.RULE_APEX_OUTSIDE


def test_samm_reader_needs_a_header_row(tmp_path):
  path = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
  book = openpyxl.Workbook()
  book.active.append(("just text",))
  book.save(path)
  with pytest.raises(A.DataError, match="no header row starting with 'Subject'"):
    A.read_samm_xlsx(path)


def test_samm_frame_numbers_with_4_or_5_digit_padding(tmp_path):
  four = tmp_path / "006_1_2"
  five = tmp_path / "006_1_3"
  write_frames(four, ["006_5562.jpg", "006_5563.jpg", "notes.txt.jpg"], shape=(4, 4))
  write_frames(five, ["006_05562.jpg", "006_05563.jpg", "006_10001.jpg"], shape=(4, 4))
  assert list(C.list_frames(four, "samm")) == [5562, 5563]
  assert list(C.list_frames(five, "samm")) == [5562, 5563, 10001]
  write_frames(four, ["006_05562.jpg"], shape=(4, 4))
  with pytest.raises(C.ClipError, match="frame 5562 appears twice"):
    C.list_frames(four, "samm")


def test_casme2_and_smic_frame_names_including_cropped_sets():
  assert C.frame_number("casme2", "img46.jpg") == 46
  assert C.frame_number("casme2", "reg_img46.jpg") == 46
  assert C.frame_number("casme2", "img46.txt") is None
  assert C.frame_number("smic", "image000123.bmp") == 123
  assert C.frame_number("smic", "reg_image000123.bmp") == 123


def test_missing_frame_between_onset_and_apex_names_the_frame(tmp_path):
  folder = tmp_path / "EP01"
  write_frames(folder, [f"img{n}.jpg" for n in (10, 11, 13, 14)], shape=(4, 4))
  frames = C.list_frames(folder, "casme2")
  C.check_span(frames, 13, 14, "casme2", folder)
  with pytest.raises(C.ClipError, match=r"between onset 10 and apex 14 missing: 12 .*img12\.jpg"):
    C.check_span(frames, 10, 14, "casme2", folder)
  with pytest.raises(C.ClipError, match="does not exist"):
    C.list_frames(tmp_path / "nope", "casme2")


def test_stored_frame_numbers_span_onset_to_apex():
  np.testing.assert_array_equal(C.stored_frame_numbers(10, 24, 8),
                                [10, 12, 14, 16, 18, 20, 22, 24])
  np.testing.assert_array_equal(C.stored_frame_numbers(5, 7, 5), [5, 6, 6, 6, 7])
  np.testing.assert_array_equal(C.stored_frame_numbers(5, 5, 3), [5, 5, 5])


def test_unreadable_image_is_named(tmp_path):
  bad = tmp_path / "img3.jpg"
  bad.write_bytes(b"not a jpeg")
  with pytest.raises(C.ClipError, match=r"img3\.jpg: not a readable image") as info:
    C.load_gray(bad)
  assert info.value.kind == A.UNREADABLE_IMAGE


# ----------------------------------------------------------------------------- SMIC

def test_smic_scan_labels_from_folders_and_middle_apex(tmp_path):
  hs = tmp_path / "SMIC" / "HS"
  write_frames(hs / "s1" / "micro" / "negative" / "s1_ne_01",
               [f"image{n:06d}.bmp" for n in range(101, 112)], shape=(4, 4))
  write_frames(hs / "s12" / "micro" / "surprise" / "s12_sur_03",
               [f"image{n:06d}.bmp" for n in range(7, 11)], shape=(4, 4))
  (hs / "s12" / "micro" / "happy").mkdir()
  clips, problems = A.scan_smic(hs)
  assert [(c.subject, c.sample, c.subject_dir, c.sample_dir, c.label, c.fps) for c in clips] == [
      ("s01", "s01_ne_01", "s1", "s1_ne_01", 0, 100),
      ("s12", "s12_sur_03", "s12", "s12_sur_03", 2, 100)]
  (problem,) = problems
  assert problem.kind == A.MALFORMED_FOLDER and "happy" in str(problem)
  span, fixes = A.resolve_frames(clips[0], C.list_frames(
      hs / "s1" / "micro" / "negative" / "s1_ne_01", "smic"))
  assert (span.onset, span.apex, span.offset) == (101, 106, 111)
  assert [f.rule for f in fixes] == [A.RULE_SMIC_MIDDLE_APEX]


# ----------------------------------------------------------------------------- composite list

def test_shipped_composite_list_has_the_megc2019_counts():
  entries, problems = A.read_composite_list(
      pathlib.Path(A.__file__).parent / "megc2019_composite_3class.csv")
  assert problems == []
  # frldgt.md: 442 clips; SMIC-HS 164 / 16 subjects, CASME II 145 / 24, SAMM 133 / 28;
  # classes 250 / 109 / 83.
  assert len(entries) == 442
  per_db = {d: [e for e in entries if e.database == d] for d in databases.NAMES}
  assert {d: len(v) for d, v in per_db.items()} == {"casme2": 145, "samm": 133, "smic": 164}
  assert {d: len({e.subject for e in v}) for d, v in per_db.items()} == {
      "casme2": 24, "samm": 28, "smic": 16}
  assert [sum(e.label == c for e in entries) for c in range(3)] == [250, 109, 83]


def test_composite_list_names_a_bad_row(tmp_path):
  path = tmp_path / "list.csv"
  path.write_text("dataset,subject,sample,label\ncasme2,sub01,EP02_01f,1\n"
                  "samm,6,006_1_2,neg\ncasme2,sub01,EP02_01f,1\n")
  entries, problems = A.read_composite_list(path)
  assert len(entries) == 1
  assert [(p.kind, p.row, p.sample) for p in problems] == [
      (A.MALFORMED_ROW, 3, "006_1_2"), (A.DUPLICATE_ROW, 4, "EP02_01f")]
  assert f"{path}, row 3 (sample 006_1_2)" in str(problems[0])


def test_locate_finds_the_layout_and_names_what_is_missing(tmp_path):
  write_casme2_xlsx(tmp_path / "CASME2" / "CASME2-coding-20140508.xlsx", [])
  write_frames(tmp_path / "CASME2" / "CASME2_RAW_selected" / "sub01" / "EP01", ["img1.jpg"],
               shape=(4, 4))
  paths = C.locate(tmp_path, "casme2", use_cropped=False, need_raw=True)
  assert paths.annotation == tmp_path / "CASME2" / "CASME2-coding-20140508.xlsx"
  assert paths.raw_root == tmp_path / "CASME2" / "CASME2_RAW_selected"
  with pytest.raises(A.DataError, match=r"no casme2 frames \(folder named like 'Cropped'\)"):
    C.locate(tmp_path, "casme2", use_cropped=True, need_raw=False)
  with pytest.raises(A.DataError, match="no samm annotation"):
    C.locate(tmp_path, "samm", use_cropped=False, need_raw=True)
  write_casme2_xlsx(tmp_path / "CASME2-coding-old.xlsx", [])
  with pytest.raises(A.DataError, match="several casme2 annotation files found, keep one"):
    C.locate(tmp_path, "casme2", use_cropped=False, need_raw=True)
