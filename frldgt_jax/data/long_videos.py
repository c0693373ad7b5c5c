"""Long-video spotting databases as they ship: CAS(ME)^2, SAMM Long Videos, CAS(ME)^3 Part A.

Layouts, with where each fact comes from: docs/spotting_data.md; names, frame rates and files are
the databases' `LongVideoDatabase` entries (databases.py). In a manual directory:

  casme2_lv  CAS(ME)^2code_final.xlsx   sheet 1: no header; participant, video name_expression
                                        ('disgust1_1'), onset, apex, offset, AUs, emotion, type
                                        ('macro-expression' | 'micro-expression'), self-report;
                                        sheet 2: folder number, 's15', participant; sheet 3:
                                        video code ('0101'), video name ('disgust1')
             rawpic/s15/15_0101disgustingteeth/img1.jpg                               30 fps
  samm_lv    SAMM_LongVideos_V2_Release.xlsx   free-text rows, then the header row (Subject,
                                        Filename '006_1_2', Inducement Code, Onset, Apex, Offset,
                                        Duration, Type 'Macro' | 'Micro - 1/2', Action Units,
                                        Notes); no emotion column
             SAMM_longvideos/006_1/006_1_0001.jpg                                   200 fps
  casme3_a   annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   sheet 'label': Subject,
                                        Filename, Onset, Apex, Offset, ..., emotion (micro)
             annotation/cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx  sheet 'Sheet1':
                                        sub, seq, onset, apex, offset, emotion (macro)
             part_A/data/spNO.1/a/color/1.jpg                                        30 fps

Each reader returns `(videos, problems)`: `LongVideo` records (subject, video, fps, frame folder,
`Interval`s) and `DataProblem`s, the errata found and what was done (RULES below, applied in
this order to every row):

  onset_missing        onset 0 or empty: the row is dropped (SoftNet-SpotME drops SAMM-LV rows
                       with onset 0)
  offset_missing       offset 0 or empty: the apex is the offset (SoftNet-SpotME, MEAN); with
                       no apex either, the row is dropped
  offset_before_onset  the row is dropped
  apex_outside         the apex is forgotten (None); the interval is kept
  duplicate_row        the same onset, offset and type again in a video: the later row dropped
  missing_video        no frame folder for an annotated video: its rows are dropped
  beyond_last_frame    the interval ends after the video's last frame: the row is dropped
  overlap              two intervals of one type overlap: both kept, reported

Emotion -> the 3 MEGC classes (`Interval.label` 0 negative, 1 positive, 2 surprise; -1 others):
EMOTION_CLASSES. SAMM-LV's sheet has no emotion: its intervals are 'others' (-1) unless an
emotion file is given (`samm_emotions`, SAMM's micro FACS codes; a micro-expression row takes the
Estimated Emotion of the same Filename, as MEAN merges on Filename and Type).

`load_videos(database, manual_dir, resolution)` reads the frames too, grayscale, aligned track by
track (tracks.py) from per-frame landmarks (the generated corpus's `landmarks_long.csv`, or a
detector the caller gives), and returns `LoadedVideo`s; no TensorFlow is needed.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from frldgt_jax.data import align as align_lib
from frldgt_jax.data import databases
from frldgt_jax.data import tracks as tracks_lib
from frldgt_jax.data.annotations import DataProblem, _frame_number, _read_xlsx_rows, _text
from frldgt_jax.errors import InputError
from frldgt_jax.spotting.intervals import Interval

NAMES = databases.LONG_VIDEO_NAMES
FPS = {db.name: db.fps for db in databases.LONG_VIDEO}
CASME2_FILE, = databases.CASME2_LV.annotation_files
CASME2_FRAMES = databases.CASME2_LV.frame_root
SAMM_FILE, = databases.SAMM_LV.annotation_files
SAMM_FRAMES = databases.SAMM_LV.frame_root
CASME3_MICRO_FILE, CASME3_MACRO_FILE = databases.CASME3_A.annotation_files
CASME3_FRAMES = databases.CASME3_A.frame_root
LANDMARKS_FILE = "landmarks_long.csv"
LANDMARK_COLUMNS = ("subject", "video", "frame") + align_lib.LANDMARK_CSV_COLUMNS[2:]

CASME2_COLUMNS = ("participant", "expression", "onset", "apex", "offset", "aus", "emotion",
                  "type", "self_report")
SAMM_COLUMNS = ("subject", "filename", "onset", "apex", "offset", "type")
CASME3_MICRO_COLUMNS = ("subject", "filename", "onset", "apex", "offset", "emotion")
CASME3_MACRO_COLUMNS = ("sub", "seq", "onset", "apex", "offset", "emotion")

# Emotion text (lower case) -> MEGC class; anything else is 'others' (-1).
EMOTION_CLASSES = {
    "negative": 0, "positive": 1, "surprise": 2,                       # CAS(ME)^2's own words
    "anger": 0, "contempt": 0, "disgust": 0, "fear": 0, "sadness": 0,  # SAMM (MEAN load_label)
    "sad": 0, "happiness": 1, "happy": 1,                              # CAS(ME)^3's spellings
}
KIND_WORDS = {"micro-expression": "micro", "macro-expression": "macro", "micro - 1/2": "micro",
              "macro": "macro", "micro": "micro"}

RULE_ONSET_MISSING = "onset_missing"
RULE_OFFSET_MISSING = "offset_missing"
RULE_OFFSET_BEFORE_ONSET = "offset_before_onset"
RULE_APEX_OUTSIDE = "apex_outside"
DUPLICATE_ROW = "duplicate_row"
MISSING_VIDEO = "missing_video"
BEYOND_LAST_FRAME = "beyond_last_frame"
OVERLAP = "overlap"
RULES = (RULE_ONSET_MISSING, RULE_OFFSET_MISSING, RULE_OFFSET_BEFORE_ONSET, RULE_APEX_OUTSIDE,
         DUPLICATE_ROW, MISSING_VIDEO, BEYOND_LAST_FRAME, OVERLAP)

_DIGITS = re.compile(r"(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class LongVideo:
  """One annotated long video: where its frames are and its intervals (after the errata)."""
  database: str
  subject: str
  video: str
  fps: float
  frame_dir: str
  intervals: tuple[Interval, ...]


@dataclasses.dataclass(frozen=True)
class LoadedVideo:
  """A long video's aligned face frames (what the spotter trains on)."""
  database: str
  subject: str
  video: str
  fps: float
  frames: np.ndarray           # uint8 [T, S, S]
  frame_numbers: np.ndarray    # int64 [T]
  intervals: tuple[Interval, ...]
  tracks: tuple[tracks_lib.Track, ...]
  gaps: tuple[tracks_lib.Gap, ...]


@dataclasses.dataclass
class _Row:
  """One spreadsheet row, cells already read."""
  file: str
  row: int
  subject: str
  video: str
  onset: int | None
  apex: int | None
  offset: int | None
  kind: str
  emotion: str


def emotion_label(emotion: str) -> int:
  """The MEGC class of an emotion text (EMOTION_CLASSES); -1 ('others') otherwise."""
  return EMOTION_CLASSES.get(emotion.strip().lower(), -1)


def frame_files(folder: str | os.PathLike) -> dict[int, pathlib.Path]:
  """{frame number: file} of a frame folder; the number is the last digits of the name."""
  out = {}
  for path in pathlib.Path(folder).iterdir():
    match = _DIGITS.search(path.name)
    if match:
      out[int(match.group(1))] = path
  return out


# ----------------------------------------------------------------------------- cells

def _number(value: Any) -> int | None:
  """A frame number from a cell; None for empty, '/', 0 or negative."""
  if _text(value) in ("", "/", "-"):
    return None
  number = _frame_number(value, "frame")
  return number if number > 0 else None


def _columns(rows, path: pathlib.Path, header_index: int, wanted: Sequence[str]) -> dict:
  names = [_text(c).lower() for c in rows[header_index][1]]
  missing = [w for w in wanted if w not in names]
  if missing:
    raise InputError(f"{path}, row {rows[header_index][0]}: header has no column(s) {missing} "
                     f"(found {[n for n in names if n]})")
  return {w: names.index(w) for w in wanted}


def _header_row(rows, path: pathlib.Path, first: str) -> int:
  for i, (_, cells) in enumerate(rows[:40]):
    if cells and _text(cells[0]).lower() == first:
      return i
  raise InputError(f"{path}: no header row starting with {first!r} in the first 40 rows")


def _kind(text: str, path: pathlib.Path, row: int) -> str:
  kind = KIND_WORDS.get(text.strip().lower())
  if kind is None:
    raise InputError(f"{path}, row {row}: expression type {text!r} is not one of "
                     f"{sorted(KIND_WORDS)}")
  return kind


def _cell_rows(path: pathlib.Path, rows, start: int, pick) -> list[_Row]:
  """Rows from `start` on, read by `pick(cells) -> _Row fields`; a bad cell names its row."""
  out = []
  for row, cells in rows[start:]:
    if all(_text(c) == "" for c in cells):
      continue
    try:
      out.append(_Row(str(path), row, *pick(tuple(cells) + (None,) * 12, row)))
    except InputError:
      raise
    except ValueError as e:  # a cell that is not what its column holds
      raise InputError(f"{path}, row {row}: {e}") from e
  return out


# ----------------------------------------------------------------------------- readers

def _casme2_rows(manual: pathlib.Path) -> list[_Row]:
  path = manual / CASME2_FILE
  codes = _read_xlsx_rows(path, 0)
  width = max((len([c for c in cells if _text(c)]) for _, cells in codes), default=0)
  if width < len(CASME2_COLUMNS) - 1:  # the self-report column may be empty throughout
    raise InputError(f"{path}: the code sheet has {width} columns, expected "
                     f"{len(CASME2_COLUMNS)} ({', '.join(CASME2_COLUMNS)})")
  subjects = {_text(c[2]): (_text(c[0]), _text(c[1])) for _, c in _read_xlsx_rows(path, 1)
              if len(c) >= 3 and _text(c[2])}
  video_codes = {_text(c[1]): _text(c[0]).zfill(4) for _, c in _read_xlsx_rows(path, 2)
                 if len(c) >= 2 and _text(c[1])}

  def pick(cells, row):
    participant = _text(cells[0])
    if participant not in subjects:
      raise ValueError(f"participant {participant!r} is not in the subject sheet")
    name = _text(cells[1]).split("_")[0]
    if name not in video_codes:
      raise ValueError(f"video {name!r} is not in the video-name sheet")
    number, subject = subjects[participant]
    return (subject, f"{number}_{video_codes[name]}", _number(cells[2]), _number(cells[3]),
            _number(cells[4]), _kind(_text(cells[7]), path, row), _text(cells[6]))
  return _cell_rows(path, codes, 0, pick)


def _casme2_folders(manual: pathlib.Path) -> dict[tuple[str, str], pathlib.Path]:
  """(subject 's15', video '15_0101') -> folder; the folder name carries a description."""
  out = {}
  root = manual / CASME2_FRAMES
  for subject in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
    for video in sorted(p for p in subject.iterdir() if p.is_dir()):
      match = re.match(r"(\d+_\d{4})", video.name)
      if match:
        out[(subject.name, match.group(1))] = video
  return out


def _samm_rows(manual: pathlib.Path, emotions: dict[str, str]) -> list[_Row]:
  path = manual / SAMM_FILE
  rows = _read_xlsx_rows(path, 0)
  header = _header_row(rows, path, "subject")
  col = _columns(rows, path, header, SAMM_COLUMNS)

  def pick(cells, row):
    filename = _text(cells[col["filename"]])
    parts = filename.split("_")
    if len(parts) < 2:
      raise ValueError(f"Filename {filename!r} is not subject_video[_n]")
    kind = _kind(_text(cells[col["type"]]), path, row)
    return (parts[0], f"{parts[0]}_{parts[1]}", _number(cells[col["onset"]]),
            _number(cells[col["apex"]]), _number(cells[col["offset"]]), kind,
            emotions.get(filename, "") if kind == "micro" else "")
  return _cell_rows(path, rows, header + 1, pick)


def _casme3_rows(manual: pathlib.Path) -> list[_Row]:
  out = []
  for name, sheet, columns, kind in ((CASME3_MICRO_FILE, "label", CASME3_MICRO_COLUMNS, "micro"),
                                     (CASME3_MACRO_FILE, "Sheet1", CASME3_MACRO_COLUMNS, "macro")):
    path = manual / name
    rows = _read_xlsx_rows(path, sheet)
    header = _header_row(rows, path, columns[0])
    col = _columns(rows, path, header, columns)

    def pick(cells, row, col=col, columns=columns, kind=kind):
      subject, video = _text(cells[col[columns[0]]]), _text(cells[col[columns[1]]])
      return (subject, f"{subject}_{video}", _number(cells[col[columns[2]]]),
              _number(cells[col[columns[3]]]), _number(cells[col[columns[4]]]), kind,
              _text(cells[col[columns[5]]]))
    out += _cell_rows(path, rows, header + 1, pick)
  return out


def _casme3_folders(manual: pathlib.Path) -> dict[tuple[str, str], pathlib.Path]:
  out = {}
  root = manual / CASME3_FRAMES
  for subject in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
    for video in sorted(p for p in subject.iterdir() if (p / "color").is_dir()):
      out[(subject.name, f"{subject.name}_{video.name}")] = video / "color"
  return out


def _samm_folders(manual: pathlib.Path) -> dict[tuple[str, str], pathlib.Path]:
  root = manual / SAMM_FRAMES
  return {(p.name.split("_")[0], p.name): p for p in sorted(root.iterdir())
          if p.is_dir()} if root.is_dir() else {}


def read_samm_emotions(path: str | os.PathLike) -> dict[str, str]:
  """{Filename: Estimated Emotion} from SAMM's micro FACS code sheet (the short-clip file)."""
  path = pathlib.Path(path)
  rows = _read_xlsx_rows(path, 0)
  header = _header_row(rows, path, "subject")
  col = _columns(rows, path, header, ("filename", "estimated emotion"))
  return {_text(c[col["filename"]]): _text(c[col["estimated emotion"]])
          for _, c in rows[header + 1:] if len(c) > col["estimated emotion"]}


def _problem(database, kind, message, row: _Row) -> DataProblem:
  return DataProblem(kind, message, row.file, row.row, database, row.subject, row.video)


def _interval(database: str, row: _Row, problems: list) -> Interval | None:
  """The row's interval after the errata rules, or None where a rule drops it."""
  where = f"{row.video} {row.onset}-{row.apex}-{row.offset}"
  if row.onset is None:
    problems.append(_problem(database, RULE_ONSET_MISSING, f"{where}: onset is 0 or missing; "
                             "row dropped", row))
    return None
  offset, apex = row.offset, row.apex
  if offset is None:
    if apex is None or apex < row.onset:
      problems.append(_problem(database, RULE_OFFSET_MISSING, f"{where}: offset and apex "
                               "missing; row dropped", row))
      return None
    problems.append(_problem(database, RULE_OFFSET_MISSING, f"{where}: offset is 0 or missing; "
                             f"the apex {apex} is the offset", row))
    offset = apex
  if offset < row.onset:
    problems.append(_problem(database, RULE_OFFSET_BEFORE_ONSET, f"{where}: offset before "
                             "onset; row dropped", row))
    return None
  if apex is not None and not row.onset <= apex <= offset:
    problems.append(_problem(database, RULE_APEX_OUTSIDE, f"{where}: apex outside "
                             f"{row.onset}..{offset}; apex left unknown", row))
    apex = None
  return Interval(row.onset, offset, row.kind, apex, emotion_label(row.emotion), row.emotion)


def read_database(database: str, manual_dir: str | os.PathLike,
                  samm_emotions: str | os.PathLike | None = None
                  ) -> tuple[list[LongVideo], list[DataProblem]]:
  """The annotated videos of `database` (NAMES) in `manual_dir`, and the problems found.

  Args:
    database: 'casme2_lv', 'samm_lv' or 'casme3_a'.
    manual_dir: the folder holding the layout (module docstring).
    samm_emotions: for samm_lv, SAMM's micro FACS code sheet giving the micro-expressions'
      emotions (default: `SAMM_Micro_FACS_Codes_v2.xlsx` in manual_dir when there).
  Raises:
    InputError: a spreadsheet lacks a column or a header, or a cell is not what its column holds
      (one line naming file and row); annotations.DataError: a spreadsheet or sheet is missing
      or unreadable.
  """
  manual = pathlib.Path(manual_dir)
  if database not in NAMES:
    raise InputError(f"unknown long-video database {database!r}; known: {NAMES}")
  if database == "casme2_lv":
    rows, folders = _casme2_rows(manual), _casme2_folders(manual)
  elif database == "samm_lv":
    default = manual / "SAMM_Micro_FACS_Codes_v2.xlsx"
    source = samm_emotions or (default if default.is_file() else None)
    rows = _samm_rows(manual, read_samm_emotions(source) if source else {})
    folders = _samm_folders(manual)
  else:
    rows, folders = _casme3_rows(manual), _casme3_folders(manual)
  problems: list[DataProblem] = []
  by_video: dict[tuple[str, str], list[Interval]] = {}
  seen: dict[tuple, int] = {}
  lengths: dict[tuple[str, str], int] = {}
  for row in rows:
    key = (row.subject, row.video)
    if key not in folders:
      problems.append(_problem(database, MISSING_VIDEO, f"no frame folder for video "
                               f"{row.video} of subject {row.subject}; row dropped", row))
      continue
    interval = _interval(database, row, problems)
    if interval is None:
      continue
    if key not in lengths:
      lengths[key] = max(frame_files(folders[key]), default=0)
    if interval.offset > lengths[key]:
      problems.append(_problem(database, BEYOND_LAST_FRAME, f"{row.video}: interval "
                               f"{interval.onset}-{interval.offset} ends after the last frame "
                               f"{lengths[key]}; row dropped", row))
      continue
    same = key + (interval.onset, interval.offset, interval.kind)
    if same in seen:
      problems.append(_problem(database, DUPLICATE_ROW, f"{row.video}: {interval.kind} "
                               f"{interval.onset}-{interval.offset} already in row {seen[same]}; "
                               "row dropped", row))
      continue
    seen[same] = row.row
    for other in by_video.get(key, ()):
      if other.kind == interval.kind and other.onset <= interval.offset \
          and interval.onset <= other.offset:
        problems.append(_problem(database, OVERLAP, f"{row.video}: {interval.kind} "
                                 f"{interval.onset}-{interval.offset} overlaps "
                                 f"{other.onset}-{other.offset}; both kept", row))
    by_video.setdefault(key, []).append(interval)
  videos = [LongVideo(database, s, v, FPS[database], str(folders[(s, v)]),
                      tuple(sorted(ivs, key=lambda i: (i.onset, i.offset, i.kind))))
            for (s, v), ivs in sorted(by_video.items())]
  return videos, problems


# ----------------------------------------------------------------------------- frames

def read_landmarks(path: str | os.PathLike) -> dict[tuple[str, str, int], np.ndarray]:
  """{(subject, video, frame): [3, 2] points} from a per-frame landmark CSV (LANDMARK_COLUMNS)."""
  path = pathlib.Path(path)
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    missing = [c for c in LANDMARK_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise InputError(f"{path}, row 1: header lacks column(s) {missing}")
    out = {}
    for row_number, row in enumerate(reader, start=2):
      try:
        points = np.array([float(row[c]) for c in LANDMARK_COLUMNS[3:]]).reshape(3, 2)
        out[(row["subject"], row["video"], int(row["frame"]))] = points
      except ValueError as e:
        raise InputError(f"{path}, row {row_number}: {e}") from e
  return out


def load_video(video: LongVideo, resolution: int, landmarks: Callable[[int, np.ndarray], Any],
               drift: float = tracks_lib.DEFAULT_DRIFT, every: int = 1) -> LoadedVideo:
  """Reads and aligns one video's frames (grayscale).

  Args:
    video: from `read_database`.
    resolution: side of the aligned square crop.
    landmarks: (frame number, gray image) -> [3, 2] points or None where no face.
    drift: see tracks.split_tracks.
    every: keep every `every`-th frame (1: all).
  """
  files = frame_files(video.frame_dir)
  numbers = np.array(sorted(files)[::max(1, int(every))], np.int64)
  images = []
  for n in numbers:
    image = cv2.imread(str(files[int(n)]), cv2.IMREAD_GRAYSCALE)
    if image is None:
      raise InputError(f"{files[int(n)]}: cannot be read as an image")
    images.append(image)
  marks = [landmarks(int(n), image) for n, image in zip(numbers, images)]
  aligned = tracks_lib.align_video(images, marks, resolution, drift)
  return LoadedVideo(video.database, video.subject, video.video, video.fps, aligned.frames,
                     numbers, video.intervals, aligned.tracks, aligned.gaps)


def load_videos(database: str, manual_dir: str | os.PathLike, resolution: int = 96,
                detector: Callable[[np.ndarray], Any] | None = None,
                drift: float = tracks_lib.DEFAULT_DRIFT, every: int = 1
                ) -> list[LoadedVideo]:
  """Every annotated video of `database`, its frames aligned (module docstring); no TensorFlow.

  Landmarks come from `landmarks_long.csv` in manual_dir when it is there, otherwise from
  `detector` (gray image -> `align.Landmarks`; raising `align.FaceNotFoundError` where there is
  no face). The errata found are not returned here: `read_database` gives them.
  """
  videos, _ = read_database(database, manual_dir)
  table_path = pathlib.Path(manual_dir) / LANDMARKS_FILE
  table = read_landmarks(table_path) if table_path.is_file() else None
  if table is None and detector is None:
    raise InputError(f"{manual_dir}: no {LANDMARKS_FILE} and no face detector given")
  out = []
  for video in videos:
    if table is not None:
      def marks(n, _, video=video):
        return table.get((video.subject, video.video, n))
    else:
      def marks(_, image):
        try:
          return detector(image)
        except align_lib.FaceNotFoundError:
          return None
    out.append(load_video(video, resolution, marks, drift, every))
  return out
