"""Frame files of a clip: finding the dataset folders, listing frames, choosing and loading them.

File names and folders are each database's entry in databases.py (docs/frldgt.md, "Dataset
layouts"): CASME II `img46.jpg` (number = absolute frame index, no padding), SAMM `006_05562.jpg`
(the zero padding varies between clips, 4 or 5 digits, so the folder is listed and the number
after the last "_" parsed), SMIC `image000123.bmp`. The datasets' cropped sets prefix the same
names with `reg_` (`reg_img46.jpg`, `reg_image000123.bmp`).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import pathlib
from typing import Callable

import numpy as np

from frldgt_jax.data import annotations, databases
from frldgt_jax.errors import InputError

# Each database's pieces (databases.py: annotation_glob, raw_root, cropped_root) are searched
# for from the manual directory down to `_SEARCH_DEPTH` levels (the directory itself is level 0).
# Folders with several matches are an error rather than a guess.
_SEARCH_DEPTH = 3
# Frames larger than this are refused from their header (a decompression bomb); the datasets'
# frames are at most 2040x1088. The same bound as sat3d_jax/image_file.py.
MAX_PIXELS = 100_000_000


class ClipError(InputError):
  """A clip's frames cannot be used; carries the problem kind and the file at fault."""

  def __init__(self, kind: str, message: str, file: str | os.PathLike):
    self.kind = kind
    self.file = str(file)
    super().__init__(message)


def frame_number(database: str, file_name: str) -> int | None:
  """The frame number in a frame file's name, or None if the name is not a frame of `database`."""
  match = databases.get(database).frame_pattern.match(file_name)
  return int(match.group(1)) if match else None


def expected_frame_name(database: str, number: int, subject_dir: str = "",
                        cropped: bool = False) -> str:
  """The file name a frame is expected to have (for error messages)."""
  db = databases.get(database)
  others = "".join(f" (or {p}-digit padding)" for p in db.frame_paddings[1:])
  return db.frame_file(number, subject_dir, cropped=cropped) + others


def list_frames(folder: str | os.PathLike, database: str) -> dict[int, pathlib.Path]:
  """{frame number: path} for the frame files in a clip folder, in frame order.

  Raises ClipError (MISSING_CLIP) if the folder is absent or holds no frame, and
  (MALFORMED_FOLDER) if two files carry the same frame number (e.g. 4- and 5-digit SAMM names).
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise ClipError(annotations.MISSING_CLIP, f"clip folder {folder} does not exist", folder)
  frames: dict[int, pathlib.Path] = {}
  for entry in os.scandir(folder):
    number = frame_number(database, entry.name)
    if number is None or not entry.is_file():
      continue
    if number in frames:
      raise ClipError(annotations.MALFORMED_FOLDER, f"frame {number} appears twice: "
                      f"{frames[number].name} and {entry.name}", folder)
    frames[number] = pathlib.Path(entry.path)
  if not frames:
    raise ClipError(annotations.MISSING_CLIP, f"clip folder {folder} holds no "
                    f"{database} frame files", folder)
  return dict(sorted(frames.items()))


def check_span(frames: dict[int, pathlib.Path], start: int, stop: int, database: str,
               folder: str | os.PathLike, subject_dir: str = "", cropped: bool = False) -> None:
  """Raises ClipError (MISSING_FRAME) unless every frame start..stop (inclusive) is on disk."""
  missing = [n for n in range(start, stop + 1) if n not in frames]
  if missing:
    shown = ", ".join(str(n) for n in missing[:8]) + (", ..." if len(missing) > 8 else "")
    example = pathlib.Path(folder) / expected_frame_name(database, missing[0], subject_dir,
                                                         cropped)
    raise ClipError(annotations.MISSING_FRAME, f"{len(missing)} frame(s) between onset {start} "
                    f"and apex {stop} missing: {shown} (expected e.g. {example})", folder)


def stored_frame_numbers(onset: int, apex: int, num_frames: int) -> np.ndarray:
  """`num_frames` frame numbers evenly spaced from onset to apex inclusive (rounded).

  frames[0] = onset and frames[-1] = apex; a span shorter than `num_frames` repeats frames.
  """
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2 (onset and apex), got {num_frames}")
  return np.rint(np.linspace(onset, apex, num_frames)).astype(np.int64)


def _check_header(path: pathlib.Path) -> None:
  """Refuses a file whose image header Pillow cannot identify or that claims more than
  `MAX_PIXELS` pixels, before OpenCV allocates them (OpenCV's own limit is 2**30)."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      width, height = im.size
  except Image.DecompressionBombError as e:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: image header claims more than "
                    f"{MAX_PIXELS} pixels (a decompression bomb?)", path) from e
  except UnidentifiedImageError as e:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: not a readable image (no image format "
                    "recognised)", path) from e
  except OSError as e:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: cannot be read ({e})", path) from e
  if width * height > MAX_PIXELS:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: {width}x{height} pixels is more "
                    f"than {MAX_PIXELS} (refused before decoding)", path)


def load_gray(path: str | os.PathLike) -> np.ndarray:
  """A frame as uint8 [H, W] grayscale; ClipError (UNREADABLE_IMAGE) naming the file otherwise.

  The same checks as SAT3D's photo reader (sat3d_jax/image_file.py: header identified, at most
  `MAX_PIXELS`, pixels decode); the pixels are decoded by OpenCV, as the datasets were built.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  _check_header(path)
  try:
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
  except OSError as e:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: cannot be read ({e})", path) from e
  if image is None or image.size == 0:
    raise ClipError(annotations.UNREADABLE_IMAGE, f"{path}: pixel data cannot be decoded", path)
  return image


# ----------------------------------------------------------------------------- locating data

def find_under(root: str | os.PathLike, pattern: str, want_dir: bool,
               max_depth: int = _SEARCH_DEPTH) -> list[pathlib.Path]:
  """Paths under `root` (itself included) whose name matches `pattern` (case-insensitive glob)."""
  root = pathlib.Path(root)
  found, level = [], [root]
  pattern = pattern.lower()
  if want_dir and fnmatch.fnmatch(root.name.lower(), pattern):
    found.append(root)
  for _ in range(max_depth):
    next_level = []
    for folder in level:
      try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
      except OSError:
        continue
      for entry in entries:
        is_dir = entry.is_dir()
        if is_dir == want_dir and fnmatch.fnmatch(entry.name.lower(), pattern):
          found.append(pathlib.Path(entry.path))
        if is_dir and not (want_dir and fnmatch.fnmatch(entry.name.lower(), pattern)):
          next_level.append(entry.path)
    level = next_level
  return found


def find_one(root: str | os.PathLike, pattern: str, want_dir: bool, what: str,
             check: Callable[[pathlib.Path], bool] = lambda p: True) -> pathlib.Path:
  """The single match of `find_under`; a clear error when there is none or several."""
  matches = [p for p in find_under(root, pattern, want_dir) if check(p)]
  if len(matches) == 1:
    return matches[0]
  kind = "folder" if want_dir else "file"
  if not matches:
    raise annotations.DataError([annotations.DataProblem(
        annotations.MISSING_FILE, f"no {what} ({kind} named like {pattern!r}) within "
        f"{_SEARCH_DEPTH} levels", str(root))])
  raise annotations.DataError([annotations.DataProblem(
      annotations.MALFORMED_FOLDER, f"several {what} {kind}s found, keep one: "
      + ", ".join(str(m) for m in matches), str(root))])


@dataclasses.dataclass(frozen=True)
class DatasetPaths:
  """Where one database's annotation file and frame folders are under the manual directory."""
  database: str
  annotation: pathlib.Path | None   # None for SMIC (labels from folders)
  raw_root: pathlib.Path | None     # subject folders inside; None if only the cropped set exists
  cropped_root: pathlib.Path | None


def locate(manual_dir: str | os.PathLike, database: str, use_cropped: bool,
           need_raw: bool) -> DatasetPaths:
  """Finds a database's annotation file and frame roots under `manual_dir`."""
  manual_dir = pathlib.Path(manual_dir)
  db = databases.get(database)
  annotation = None
  if db.annotation_glob is not None:
    annotation = find_one(manual_dir, db.annotation_glob, False, f"{database} annotation")
  raw_root = cropped_root = None
  if need_raw or not use_cropped:
    raw_root = _frame_root(manual_dir, db, db.raw_root)
  if use_cropped:
    cropped_root = _frame_root(manual_dir, db, db.cropped_root)
  return DatasetPaths(database, annotation, raw_root, cropped_root)


def _frame_root(manual_dir: pathlib.Path, db: databases.Database, name: str) -> pathlib.Path:
  """The folder holding the subject folders: the root, or its `clips_under` (SMIC/HS/s1/...)."""
  if db.clips_under:
    root = find_one(manual_dir, name, True, f"{db.name} frames",
                    check=lambda p: (p / db.clips_under).is_dir())
    return root / db.clips_under
  return find_one(manual_dir, name, True, f"{db.name} frames",
                  check=lambda p: any(e.is_dir() for e in os.scandir(p)))
