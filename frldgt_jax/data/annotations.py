"""Annotation readers for CASME II, SAMM and SMIC-HS, the MEGC2019 composite list, and the errata.

Each database's facts (frame rate, files, class mapping) are its entry in databases.py, which
names the reader here that parses its annotation source.

Each reader returns `(clips, problems)`: one `ClipAnnotation` per row that parsed and one
`DataProblem` per row that did not (naming the file, the spreadsheet row and the sample). The
caller decides whether a problem fails the build or drops the clip; nothing is dropped here.

Layouts (docs/frldgt.md, "Dataset layouts"):
- CASME II `CASME2-coding-*.xlsx`, columns by position: 0 Subject (int), 1 Filename, 3 OnsetFrame,
  4 ApexFrame (some cells are "/"), 5 OffsetFrame, 7 Action Units, 8 Estimated Emotion. 200 fps.
- SAMM `SAMM_Micro_FACS_Codes_v2.xlsx`: free text rows before the header row (13 in v2), header
  names Subject, Filename, Onset Frame, Apex Frame, Offset Frame, ..., Estimated Emotion. 200 fps.
- SMIC-HS: no annotation file; `HS/s1/micro/{negative,positive,surprise}/s1_ne_01/`; the folder
  is the only label source and the clip spans the frames on disk. 100 fps.

Canonical names (docs/frldgt.md, "Micro-expression conventions"): database 'casme2' | 'samm' | 'smic';
subject CASME II 'sub01', SAMM unpadded '6', SMIC 's01'; sample CASME II 'EP02_01f', SAMM '006_1_2',
SMIC 's01_ne_01'. The folder spellings (SAMM '006', SMIC 's1', 's1_ne_01') are kept beside them.

Labels always come from the annotation file (SMIC has none: its folder is the label source),
mapped by the database's entry (databases.py: 3-class composite `label`, CASME II's `label5`).

Errata: the fixes `resolve_frames` applies, each reported once per clip as a `Fix`
(rule names are the `RULE_*` constants):
1. RULE_OFFSET_MISSING: an offset cell that is empty, "/", 0 or negative -> the last frame on disk.
2. RULE_OFFSET_BEFORE_ONSET: an offset smaller than the onset -> the last frame on disk.
3. RULE_SMIC_MIDDLE_APEX: SMIC has no apex annotation -> the middle frame (onset + offset) // 2.
4. RULE_APEX_MISSING: an apex cell that is "/", empty or negative (CASME II) -> the mid-point
   (onset + offset) // 2.
5. RULE_APEX_OUTSIDE: an apex outside [onset, offset] (SAMM) -> the mid-point (onset + offset) // 2.
   Clamping would put the apex on the onset or the offset, both near-neutral frames by definition;
   the mid-point is the least-biased guess, and the same rule as for a missing apex.
6. RULE_LABEL_FROM_ANNOTATION (composite only): the composite list's label differs from the
   label the annotation file gives -> the annotation label is kept, and the fix is reported.
Anything else that is wrong (a cell that does not parse, a missing folder or frame, an unreadable
image) is a `DataProblem`, never a silent fix.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Any, Iterable, Sequence

from frldgt_jax.data import csv_file
from frldgt_jax.errors import InputError

RULE_OFFSET_MISSING = "offset_missing"
RULE_OFFSET_BEFORE_ONSET = "offset_before_onset"
RULE_SMIC_MIDDLE_APEX = "smic_middle_apex"
RULE_APEX_MISSING = "apex_missing"
RULE_APEX_OUTSIDE = "apex_outside"
RULE_LABEL_FROM_ANNOTATION = "label_from_annotation"
ERRATA_RULES = (RULE_OFFSET_MISSING, RULE_OFFSET_BEFORE_ONSET, RULE_SMIC_MIDDLE_APEX,
                RULE_APEX_MISSING, RULE_APEX_OUTSIDE, RULE_LABEL_FROM_ANNOTATION)

# Problem kinds (each fails the build unless drops are allowed; then the clip is dropped).
MALFORMED_ROW = "malformed_row"
DUPLICATE_ROW = "duplicate_row"
MALFORMED_FOLDER = "malformed_folder"
MISSING_CLIP = "missing_clip"
MISSING_FILE = "missing_file"
MISSING_FRAME = "missing_frame"
UNREADABLE_IMAGE = "unreadable_image"
NO_FACE = "no_face"
NO_LANDMARKS = "no_landmarks"
OUTSIDE_CLASSES = "outside_classes"

_SAMM_COLUMNS = {"subject": "Subject", "filename": "Filename", "onset": "Onset Frame",
                 "apex": "Apex Frame", "offset": "Offset Frame", "emotion": "Estimated Emotion"}
_HEADER_SEARCH_ROWS = 40
_SMIC_SUBJECT = re.compile(r"^s(\d+)$", re.IGNORECASE)


def _database(name: str):
  """The registry entry of database `name` (frldgt_jax/data/databases.py).

  Imported on use: the registry names this module's readers, so it imports this module.
  """
  from frldgt_jax.data import databases  # pylint: disable=g-import-not-at-top
  return databases.get(name)


def _database_names() -> tuple[str, ...]:
  from frldgt_jax.data import databases  # pylint: disable=g-import-not-at-top
  return databases.NAMES


@dataclasses.dataclass(frozen=True)
class DataProblem:
  """Something wrong with the input, located by file (and spreadsheet row when there is one)."""
  kind: str
  message: str
  file: str
  row: int | None = None
  database: str | None = None
  subject: str | None = None
  sample: str | None = None

  def __str__(self) -> str:
    where = self.file if self.row is None else f"{self.file}, row {self.row}"
    who = f" (sample {self.sample})" if self.sample else ""
    return f"{where}{who}: {self.message}"

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class DataError(InputError):
  """The input has problems; raised with all of them listed, one per line."""

  def __init__(self, problems: Sequence[DataProblem], hint: str = ""):
    self.problems = list(problems)
    lines = [f"{len(self.problems)} problem(s) in the input data:"]
    lines += [f"  - [{p.kind}] {p}" for p in self.problems]
    if hint:
      lines.append(hint)
    super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Fix:
  """One erratum rule applied to one clip."""
  rule: str
  detail: str

  def to_json(self) -> dict[str, str]:
    return {"rule": self.rule, "detail": self.detail}


@dataclasses.dataclass(frozen=True)
class ClipAnnotation:
  """One annotated clip, as the annotation source gives it (before the errata).

  onset/apex/offset are absolute frame numbers; apex/offset are None where the cell is
  missing ("/", empty, 0 or negative) and, for SMIC, where no annotation exists.
  """
  database: str
  subject: str        # canonical ('sub01', '6', 's01')
  sample: str         # canonical ('EP02_01f', '006_1_2', 's01_ne_01')
  subject_dir: str    # folder spelling ('sub01', '006', 's1')
  sample_dir: str     # folder spelling ('EP02_01f', '006_1_2', 's1_ne_01')
  onset: int | None   # None only for SMIC (the first frame on disk)
  apex: int | None
  offset: int | None
  emotion: str
  label: int
  label5: int
  fps: int
  source: str         # annotation file (or SMIC clip folder)
  row: int | None     # 1-based spreadsheet row
  apex_text: str = ""
  offset_text: str = ""

  @property
  def key(self) -> tuple[str, str, str]:
    return (self.database, self.subject, self.sample)

  def problem(self, kind: str, message: str, file: str | os.PathLike | None = None,
              row: int | None = -1) -> DataProblem:
    """A DataProblem about this clip (defaults to its annotation file and row)."""
    return DataProblem(kind=kind, message=message,
                       file=str(file) if file is not None else self.source,
                       row=self.row if row == -1 else row, database=self.database,
                       subject=self.subject, sample=self.sample)


@dataclasses.dataclass(frozen=True)
class ClipFrames:
  """The clip's frame span after the errata."""
  onset: int
  apex: int
  offset: int


# ----------------------------------------------------------------------------- cell parsing

class _CellError(ValueError):
  pass


def _text(value: Any) -> str:
  if value is None:
    return ""
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value).strip()


def _frame_number(value: Any, column: str) -> int:
  """An integer frame number from an xlsx cell (int, integral float or digit string)."""
  if isinstance(value, bool):
    raise _CellError(f"{column} {value!r} is not a frame number")
  if isinstance(value, int):
    return value
  if isinstance(value, float) and value.is_integer():
    return int(value)
  text = _text(value)
  if re.fullmatch(r"-?\d{1,12}(\.0+)?", text):  # more digits than any video has frames: refused
    return int(text.split(".")[0])
  raise _CellError(f"{column} {_text(value)!r} is not a frame number")


def _subject_number(value: Any) -> int:
  """A subject number from a cell: 1, 1.0, '006' or 'sub01'."""
  text = _text(value)
  match = re.fullmatch(r"(?:sub)?0*(\d+)", text, re.IGNORECASE)
  if not match:
    raise _CellError(f"Subject {text!r} is not a subject number")
  return int(match.group(1))


def _optional_frame_number(value: Any, column: str) -> int | None:
  """A frame number, or None for a missing cell ("/", "-", empty, 0 or negative)."""
  if _text(value) in ("", "/", "-"):
    return None
  number = _frame_number(value, column)
  return number if number > 0 else None


# ----------------------------------------------------------------------------- xlsx

def _zip_member_problem(info, archive_size: int) -> str | None:
  """What makes a zip member unreadable or a memory hazard (zipfile allocates the sizes the
  archive claims): encryption, a method other than stored/deflated, compressed bytes past the
  end of the archive, an expansion beyond DEFLATE's 1032:1."""
  import zipfile  # pylint: disable=g-import-not-at-top
  if info.flag_bits & 0x1:
    return "is encrypted"
  if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
    return f"uses compression method {info.compress_type} (.xlsx uses stored or deflated)"
  if info.header_offset + info.compress_size > archive_size:
    return f"claims {info.compress_size} compressed bytes, past the end of the file"
  if info.file_size > 1032 * info.compress_size + 1024:
    return f"claims {info.file_size} bytes from {info.compress_size} compressed"
  return None


def _read_xlsx_rows(path: pathlib.Path, sheet: int | str = 0
                    ) -> list[tuple[int, tuple[Any, ...]]]:
  """(1-based row number, cell values) for every row of one sheet (default the first).

  `sheet` is the sheet's position or its name.
  """
  import xml.etree.ElementTree  # pylint: disable=g-import-not-at-top
  import zipfile  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top

  import openpyxl  # pylint: disable=g-import-not-at-top
  from openpyxl.utils.exceptions import InvalidFileException  # pylint: disable=g-import-not-at-top
  if not path.is_file():
    raise DataError([DataProblem(MISSING_FILE, "file does not exist", str(path))])
  # What openpyxl and the zip / XML / deflate layers under it raise for a damaged workbook
  # (a missing part is a KeyError of the zip archive; a zip feature zipfile does not support,
  # NotImplementedError). Rows are parsed lazily: inside the try.
  damaged = (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError,
             xml.etree.ElementTree.ParseError, zlib.error, NotImplementedError)
  try:
    with zipfile.ZipFile(path) as archive:  # before openpyxl reads (and allocates) any part
      for info in archive.infolist():
        problem = _zip_member_problem(info, path.stat().st_size)
        if problem:
          raise DataError([DataProblem(MALFORMED_ROW, f"workbook part {info.filename!r} "
                                       f"{problem}", str(path))])
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
      names = workbook.sheetnames
      if not (sheet in names if isinstance(sheet, str) else 0 <= sheet < len(names)):
        raise DataError([DataProblem(MALFORMED_ROW, f"workbook has no sheet {sheet!r} (sheets: "
                                     f"{names})", str(path))])
      rows = workbook[sheet] if isinstance(sheet, str) else workbook.worksheets[sheet]
      return [(i, tuple(row)) for i, row in enumerate(rows.iter_rows(values_only=True),
                                                       start=1)]
    finally:
      workbook.close()
  except DataError:
    raise
  except damaged as e:
    raise DataError([DataProblem(MALFORMED_ROW, f"cannot be read as an .xlsx workbook "
                                 f"({type(e).__name__}: {e})", str(path))]) from e


def _is_blank(cells: Sequence[Any]) -> bool:
  return all(_text(c) == "" for c in cells)


def read_casme2_xlsx(path: str | os.PathLike) -> tuple[list[ClipAnnotation], list[DataProblem]]:
  """Reads CASME II's coding sheet (columns by position, see the module docstring)."""
  path = pathlib.Path(path)
  rows = _read_xlsx_rows(path)
  header_row = _find_header(rows, path, lambda cells: _text(cells[0]).lower() == "subject")
  header = [_text(c).lower() for c in rows[header_row][1]] + [""] * 9
  expected = {1: "file", 3: "onset", 4: "apex", 5: "offset", 8: "emotion"}
  wrong = [f"column {i} is {header[i]!r} (expected it to mention {word!r})"
           for i, word in expected.items() if word not in header[i]]
  if wrong:
    raise DataError([DataProblem(MALFORMED_ROW, "header does not match the CASME II layout: "
                                 + "; ".join(wrong), str(path), rows[header_row][0])])
  db = _database("casme2")
  clips, problems, seen = [], [], {}
  for row_number, cells in rows[header_row + 1:]:
    if _is_blank(cells):
      continue
    cells = tuple(cells) + (None,) * 9
    sample = _text(cells[1])
    try:
      if not sample:
        raise _CellError("Filename is empty")
      subject_number = _subject_number(cells[0])
      subject = f"sub{subject_number:02d}"
      onset = _frame_number(cells[3], "OnsetFrame")
      apex = _optional_frame_number(cells[4], "ApexFrame")
      offset = _optional_frame_number(cells[5], "OffsetFrame")
      emotion = _text(cells[8])
      if emotion.lower() not in db.labels:
        raise _CellError(f"Estimated Emotion {emotion!r} is not one of {sorted(db.labels)}")
    except _CellError as e:
      problems.append(DataProblem(MALFORMED_ROW, str(e), str(path), row_number, db.name,
                                  sample=sample or None))
      continue
    label, label5 = db.labels[emotion.lower()]
    clip = ClipAnnotation(db.name, subject, sample, subject, sample, onset, apex, offset,
                          emotion, label, label5, db.fps, str(path), row_number,
                          apex_text=_text(cells[4]), offset_text=_text(cells[5]))
    _add_unique(clip, clips, problems, seen)
  return clips, problems


def read_samm_xlsx(path: str | os.PathLike) -> tuple[list[ClipAnnotation], list[DataProblem]]:
  """Reads SAMM's FACS code sheet: finds the header row after the free-text preamble."""
  path = pathlib.Path(path)
  rows = _read_xlsx_rows(path)
  header_row = _find_header(rows, path, lambda cells: _text(cells[0]).lower() == "subject")
  names = [_text(c).lower() for c in rows[header_row][1]]
  columns = {}
  for key, name in _SAMM_COLUMNS.items():
    if name.lower() not in names:
      raise DataError([DataProblem(MALFORMED_ROW, f"header has no {name!r} column (found "
                                   f"{[n for n in names if n]})", str(path),
                                   rows[header_row][0])])
    columns[key] = names.index(name.lower())
  db = _database("samm")
  clips, problems, seen = [], [], {}
  for row_number, cells in rows[header_row + 1:]:
    if _is_blank(cells):
      continue
    cells = tuple(cells) + (None,) * len(names)
    sample = _text(cells[columns["filename"]])
    try:
      if not sample:
        raise _CellError("Filename is empty")
      subject_number = _subject_number(cells[columns["subject"]])
      onset = _frame_number(cells[columns["onset"]], "Onset Frame")
      apex = _optional_frame_number(cells[columns["apex"]], "Apex Frame")
      offset = _optional_frame_number(cells[columns["offset"]], "Offset Frame")
      emotion = _text(cells[columns["emotion"]])
      if emotion.lower() not in db.labels:
        raise _CellError(f"Estimated Emotion {emotion!r} is not one of {sorted(db.labels)}")
    except _CellError as e:
      problems.append(DataProblem(MALFORMED_ROW, str(e), str(path), row_number, db.name,
                                  sample=sample or None))
      continue
    label, label5 = db.labels[emotion.lower()]
    clip = ClipAnnotation(db.name, str(subject_number), sample, f"{subject_number:03d}", sample,
                          onset, apex, offset, emotion, label, label5, db.fps, str(path),
                          row_number,
                          apex_text=_text(cells[columns["apex"]]),
                          offset_text=_text(cells[columns["offset"]]))
    _add_unique(clip, clips, problems, seen)
  return clips, problems


def _find_header(rows, path: pathlib.Path, is_header) -> int:
  for i, (_, cells) in enumerate(rows[:_HEADER_SEARCH_ROWS]):
    if cells and is_header(cells):
      return i
  raise DataError([DataProblem(MALFORMED_ROW, f"no header row starting with 'Subject' in the "
                               f"first {_HEADER_SEARCH_ROWS} rows", str(path))])


def _add_unique(clip: ClipAnnotation, clips: list, problems: list, seen: dict) -> None:
  if clip.key in seen:
    problems.append(clip.problem(DUPLICATE_ROW, f"sample {clip.sample} of subject "
                                 f"{clip.subject} is already listed in row {seen[clip.key]}"))
    return
  seen[clip.key] = clip.row
  clips.append(clip)


# ----------------------------------------------------------------------------- SMIC

def smic_subject(folder_name: str) -> str:
  """'s1' -> 's01' (MEGC2019 spelling)."""
  match = _SMIC_SUBJECT.match(folder_name)
  if not match:
    raise ValueError(f"{folder_name!r} is not a SMIC subject folder (s<number>)")
  return f"s{int(match.group(1)):02d}"


def scan_smic(hs_root: str | os.PathLike) -> tuple[list[ClipAnnotation], list[DataProblem]]:
  """Lists SMIC-HS clips under `hs_root` (`HS/s1/micro/<emotion>/s1_ne_01/`).

  Labels come from the emotion folder (SMIC ships no annotation file); onset, apex and offset
  are left None: `resolve_frames` takes the first and last frame on disk and the middle apex.
  """
  hs_root = pathlib.Path(hs_root)
  db = _database("smic")
  clips, problems, seen = [], [], {}
  subject_dirs = sorted((d for d in hs_root.iterdir() if d.is_dir() and _SMIC_SUBJECT.match(
      d.name)), key=lambda d: int(_SMIC_SUBJECT.match(d.name).group(1)))
  if not subject_dirs:
    raise DataError([DataProblem(MISSING_CLIP, "no subject folders (s1, s2, ...) found",
                                 str(hs_root), database="smic")])
  for subject_dir in subject_dirs:
    subject = smic_subject(subject_dir.name)
    micro = subject_dir / "micro"
    if not micro.is_dir():
      problems.append(DataProblem(MALFORMED_FOLDER, "subject folder has no 'micro' folder",
                                  str(subject_dir), database="smic", subject=subject))
      continue
    for emotion_dir in sorted(d for d in micro.iterdir() if d.is_dir()):
      emotion = emotion_dir.name.lower()
      if emotion not in db.labels:
        problems.append(DataProblem(MALFORMED_FOLDER, f"emotion folder {emotion_dir.name!r} is "
                                    f"not one of {sorted(db.labels)}", str(emotion_dir),
                                    database="smic", subject=subject))
        continue
      for clip_dir in sorted(d for d in emotion_dir.iterdir() if d.is_dir()):
        prefix = subject_dir.name + "_"
        if not clip_dir.name.startswith(prefix):
          problems.append(DataProblem(MALFORMED_FOLDER, f"clip folder name does not start with "
                                      f"{prefix!r}", str(clip_dir), database="smic",
                                      subject=subject, sample=clip_dir.name))
          continue
        sample = subject + "_" + clip_dir.name[len(prefix):]
        label, label5 = db.labels[emotion]
        clip = ClipAnnotation("smic", subject, sample, subject_dir.name, clip_dir.name, None,
                              None, None, emotion, label, label5, db.fps,
                              str(clip_dir), None)
        if clip.key in seen:
          problems.append(clip.problem(DUPLICATE_ROW, f"also found under {seen[clip.key]}"))
          continue
        seen[clip.key] = clip.source
        clips.append(clip)
  return clips, problems


# ----------------------------------------------------------------------------- composite list

@dataclasses.dataclass(frozen=True)
class CompositeEntry:
  """One row of the MEGC2019 composite list."""
  database: str
  subject: str
  sample: str
  label: int
  row: int

  @property
  def key(self) -> tuple[str, str, str]:
    return (self.database, self.subject, self.sample)


def read_composite_list(path: str | os.PathLike) -> tuple[list[CompositeEntry],
                                                          list[DataProblem]]:
  """Reads a `dataset,subject,sample,label` CSV (the 442-clip MEGC2019 list or a subset)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError([DataProblem(MISSING_FILE, "file does not exist", str(path))])
  rows = csv_file.read_rows(path, lambda message, row: DataError([DataProblem(
      MALFORMED_ROW, message, str(path), row)]))
  if not rows or [c.strip().lower() for c in rows[0][1][:4]] != ["dataset", "subject", "sample",
                                                                 "label"]:
    raise DataError([DataProblem(MALFORMED_ROW, "header must be 'dataset,subject,sample,label'",
                                 str(path), 1)])
  known = _database_names()
  entries, problems, seen = [], [], {}
  for row_number, cells in rows[1:]:
    if not any(c.strip() for c in cells):
      continue
    cells = [c.strip() for c in cells] + [""] * 4
    database, subject, sample, label = cells[:4]
    if database not in known or not subject or not sample or label not in ("0", "1", "2"):
      problems.append(DataProblem(MALFORMED_ROW, f"expected dataset in {known}, a subject, a "
                                  f"sample and a label in 0/1/2; got {cells[:4]}", str(path),
                                  row_number, database or None, subject or None, sample or None))
      continue
    entry = CompositeEntry(database, subject, sample, int(label), row_number)
    if entry.key in seen:
      problems.append(DataProblem(DUPLICATE_ROW, f"already listed in row {seen[entry.key]}",
                                  str(path), row_number, database, subject, sample))
      continue
    seen[entry.key] = row_number
    entries.append(entry)
  return entries, problems


# ----------------------------------------------------------------------------- errata

def resolve_frames(clip: ClipAnnotation, frame_numbers: Iterable[int]
                   ) -> tuple[ClipFrames, list[Fix]]:
  """Applies the errata (module docstring) given the frame numbers found on disk.

  Returns the clip's onset/apex/offset and the fixes applied. Whether the frames between onset
  and apex exist is checked by the caller (a missing frame is a problem, not an erratum).
  """
  on_disk = sorted(frame_numbers)
  if not on_disk:
    raise ValueError(f"{clip.sample}: no frames on disk")
  first, last = on_disk[0], on_disk[-1]
  fixes = []
  # A database without an annotation file (SMIC) gives no span: the frames on disk are the clip.
  from_folders = _database(clip.database).labels_from_folders
  onset = first if from_folders and clip.onset is None else clip.onset
  offset = clip.offset
  if from_folders and offset is None:
    offset = last
  elif offset is None:
    offset = last
    fixes.append(Fix(RULE_OFFSET_MISSING, f"offset cell {clip.offset_text!r} -> last frame on "
                     f"disk {last}"))
  elif offset < onset:
    fixes.append(Fix(RULE_OFFSET_BEFORE_ONSET, f"offset {offset} < onset {onset} -> last frame "
                     f"on disk {last}"))
    offset = last
  middle = (onset + offset) // 2
  apex = clip.apex
  if from_folders and apex is None:
    apex = middle
    fixes.append(Fix(RULE_SMIC_MIDDLE_APEX, f"no apex annotation -> middle frame {apex} of "
                     f"[{onset}, {offset}]"))
  elif apex is None:
    apex = middle
    fixes.append(Fix(RULE_APEX_MISSING, f"apex cell {clip.apex_text!r} -> mid-point {apex} of "
                     f"[{onset}, {offset}]"))
  elif not onset <= apex <= offset:
    fixes.append(Fix(RULE_APEX_OUTSIDE, f"apex {apex} outside [{onset}, {offset}] -> mid-point "
                     f"{middle}"))
    apex = middle
  return ClipFrames(onset, apex, offset), fixes
