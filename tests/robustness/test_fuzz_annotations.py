"""Fuzzing the micro-expression annotation readers: CASME II and SAMM spreadsheets (random cell
mutations, missing or renamed columns, merged cells, duplicate clips, damaged .xlsx bytes),
SMIC's folder tree, the composite-list CSV and landmark CSVs (random cells, missing columns,
non-UTF-8 text, duplicate rows). Bad rows come back as problems naming the file and row; a file
that cannot be used at all is a DataError / LandmarkFileError naming the file."""
import datetime
import io
import pathlib
import tempfile
import xml.etree.ElementTree
import zipfile
import zlib

import openpyxl
from openpyxl.utils.exceptions import InvalidFileException
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frldgt_jax.data import align
from frldgt_jax.data import annotations as A
from frldgt_jax.data import databases
from tests.frldgt.test_annotations import CASME2_HEADER, SAMM_HEADER
from tests.robustness import harness


def _valid_clips(path_of_output):
  def validate(output):
    clips, problems = output
    for clip in clips:
      assert isinstance(clip.onset, int) and clip.label in (-1, 0, 1, 2)
      assert clip.apex is None or isinstance(clip.apex, int)
    for problem in problems:
      assert problem.file and (problem.kind in (A.MALFORMED_ROW, A.DUPLICATE_ROW,
                                                A.MALFORMED_FOLDER))
    assert len({c.key for c in clips}) == len(clips), "a duplicate clip was kept"
  return validate


# What openpyxl and the XML / zip layers under it raise for a damaged workbook.
XLSX_ERRORS = (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError,
               xml.etree.ElementTree.ParseError, zlib.error, InvalidFileException,
               NotImplementedError)
CASME2 = harness.Reader("CASME II coding sheet (.xlsx)", A.read_casme2_xlsx, A.DataError,
                        _valid_clips(None), XLSX_ERRORS)
SAMM = harness.Reader("SAMM FACS code sheet (.xlsx)", A.read_samm_xlsx, A.DataError,
                      _valid_clips(None), XLSX_ERRORS)


def _valid_composite(output):
  entries, problems = output
  assert all(e.database in databases.NAMES and e.label in (0, 1, 2) for e in entries)
  assert len({e.key for e in entries}) == len(entries)
  assert all(p.row and p.row >= 2 for p in problems)


def _valid_landmarks(output):
  for (subject, sample), points in output.items():
    assert subject and sample and points.left_eye[0] < points.right_eye[0]


COMPOSITE = harness.Reader("composite list (.csv)", A.read_composite_list, A.DataError,
                           _valid_composite, (UnicodeDecodeError, OSError))
LANDMARKS = harness.Reader("landmark CSV", align.read_landmarks_csv, align.LandmarkFileError,
                           _valid_landmarks, (UnicodeDecodeError, OSError))
SMIC = harness.Reader("SMIC-HS folder tree", A.scan_smic, A.DataError, _valid_clips(None),
                      (OSError,))

_CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["/", "-", "", " 12 ", "12.0", "1e400", "9" * 400, "-3", "sub01", "sub", "006",
         "happiness", "Happiness ", "disgust", "repression", "others", "surprise", "fear",
         "Negative", "Positive", "Surprise", "Other", "EP02_01f", "006_1_2", "é漢字"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    st.just(datetime.datetime(2020, 1, 2)))


@st.composite
def sheet_rows(draw, header):
  header = list(header)
  edit = draw(st.sampled_from(["keep", "keep", "drop", "rename", "shuffle"]))
  if edit == "drop":
    del header[draw(st.integers(0, len(header) - 1))]
  elif edit == "rename":
    header[draw(st.integers(0, len(header) - 1))] = draw(_CELLS)
  elif edit == "shuffle":
    header = draw(st.permutations(header))
  good = [(1, "EP02_01f", 46, 59, 86, "happiness"), (6, "006_1_2", 100, 120, 150, "Negative")]
  rows = []
  for _ in range(draw(st.integers(0, 8))):
    subject, name, onset, apex, offset, emotion = draw(st.sampled_from(good))
    row = [subject, name, None, onset, apex, offset, None, "12", emotion, None, None, None]
    for _ in range(draw(st.integers(0, 3))):
      row[draw(st.integers(0, len(row) - 1))] = draw(_CELLS)
    rows.append(row[:draw(st.integers(1, len(row)))])
    if draw(st.integers(0, 4)) == 0:
      rows.append(list(rows[-1]))  # a duplicate clip
  preamble = [[draw(_CELLS)] for _ in range(draw(st.integers(0, 3)))]
  merges = [(draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(st.integers(0, 2)),
             draw(st.integers(0, 2))) for _ in range(draw(st.integers(0, 2)))]
  return preamble + [header] + rows, merges


def _xlsx(rows, merges) -> bytes:
  book = openpyxl.Workbook()
  sheet = book.active
  for row in rows:
    sheet.append(row)
  for r, c, dr, dc in merges:
    sheet.merge_cells(start_row=r, start_column=c, end_row=r + dr, end_column=c + dc)
  out = io.BytesIO()
  book.save(out)
  return out.getvalue()


@harness.fuzz(40)
@given(sheet=sheet_rows(CASME2_HEADER))
def test_casme2_sheets(recorder, sheet):
  recorder.check_bytes(CASME2, _xlsx(*sheet), "CASME2-coding-20140508.xlsx")


@harness.fuzz(40)
@given(sheet=sheet_rows(SAMM_HEADER))
def test_samm_sheets(recorder, sheet):
  recorder.check_bytes(SAMM, _xlsx(*sheet), "SAMM_Micro_FACS_Codes_v2.xlsx")


_GOOD_SHEET = _xlsx([list(CASME2_HEADER), [1, "EP02_01f", None, 46, 59, 86, None, "12",
                                           "happiness"]], [])


@harness.fuzz(60)
@given(data=st.data(), samm=st.booleans())
def test_damaged_xlsx_bytes(recorder, data, samm):
  reader = SAMM if samm else CASME2
  recorder.check_bytes(reader, data.draw(harness.mutated(_GOOD_SHEET)), "sheet.xlsx")


def _csv_text(draw, header, good_row) -> bytes:
  header = list(header)
  if draw(st.integers(0, 4)) == 0:
    del header[draw(st.integers(0, len(header) - 1))]
  lines = [header]
  for _ in range(draw(st.integers(0, 6))):
    row = list(good_row)
    for _ in range(draw(st.integers(0, 3))):
      row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(
          ["", "nan", "inf", "-1", "1e400", "x", "\"", "a,b", "é", "0", "2", "3"]))
    lines.append(row[:draw(st.integers(1, len(row)))] if draw(st.booleans()) else row)
    if draw(st.integers(0, 4)) == 0:
      lines.append(list(lines[-1]))
  text = "\n".join(",".join(cells) for cells in lines) + "\n"
  encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16", "utf-8-sig"]))
  raw = text.encode(encoding, errors="replace")
  if draw(st.booleans()):
    raw = draw(harness.mutated(raw))
  return raw


@harness.fuzz(80)
@given(data=st.data())
def test_composite_lists(recorder, data):
  raw = _csv_text(data.draw, ("dataset", "subject", "sample", "label"),
                  ("casme2", "sub01", "EP02_01f", "1"))
  recorder.check_bytes(COMPOSITE, raw, "composite.csv")


@harness.fuzz(80)
@given(data=st.data())
def test_landmark_csvs(recorder, data):
  raw = _csv_text(data.draw, align.LANDMARK_CSV_COLUMNS,
                  ("sub01", "EP02_01f", "10.5", "20", "30", "20", "20", "40"))
  recorder.check_bytes(LANDMARKS, raw, "landmarks.csv")


_SMIC_NAMES = ["s1", "s02", "S3", "sx", "s1_ne_01", "s2_po_03", "micro", "Micro", "negative",
               "positive", "surprise", "happy", "x", "s1_ne_01"]


@harness.fuzz(40)
@given(paths=st.lists(st.lists(st.sampled_from(_SMIC_NAMES), min_size=1, max_size=4),
                      max_size=8))
def test_smic_folder_trees(recorder, paths):
  with tempfile.TemporaryDirectory() as tmp:
    sandbox = pathlib.Path(tmp)
    root = sandbox / "HS"
    root.mkdir()
    for parts in paths:
      (root.joinpath(*parts)).mkdir(parents=True, exist_ok=True)
    recorder.check(SMIC, root, sandbox)


@pytest.mark.parametrize("reader", [CASME2, SAMM, COMPOSITE, LANDMARKS], ids=lambda r: r.name)
def test_empty_and_missing_files(recorder, reader, tmp_path):
  recorder.check_bytes(reader, b"", "empty")
  recorder.check(reader, tmp_path / "missing.csv", tmp_path)
