"""Reading a user's clip: a video file (MP4, AVI, MOV, ... through imageio-ffmpeg) or a folder of
frames named as in one of the databases (frldgt_jax/data/databases.py: CASME II img46.jpg, SAMM
006_05562.jpg, SMIC image000123.bmp), with or without the cropped sets' reg_ prefix.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from frldgt_jax.data import clips as clips_lib
from frldgt_jax.data import databases
from frldgt_jax.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
# What ffmpeg (through imageio-ffmpeg) raises for a file it cannot open or a stream it cannot
# decode: OSError from the probe, RuntimeError/ValueError/IndexError from the frame reader.
_FFMPEG_ERRORS = (OSError, RuntimeError, ValueError, IndexError)
# A clip's decoded grayscale frames are held in memory: at most this many bytes (a 4K frame is
# 8.3 MB, so about 500 of them; micro-expression clips are a few hundred frames at 640 x 480).
MAX_CLIP_BYTES = 4 << 30


@dataclasses.dataclass(frozen=True)
class Clip:
  """A clip's frames, grayscale uint8 [N, H, W], with where they came from."""
  name: str
  source: str                   # the video file or the frame folder
  frames: np.ndarray
  frame_numbers: np.ndarray     # int64 [N]: the numbers in the file names, or 0..N-1 for video
  fps: float | None             # the video's frame rate (None for a folder)


def is_video(path: str | os.PathLike) -> bool:
  """Whether `path` names a video file by its suffix."""
  return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def read_video(path: str | os.PathLike) -> Clip:
  """Every frame of a video file as grayscale; InputError naming the file if it cannot be read."""
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such video file")
  try:
    reader = imageio.get_reader(os.fspath(path), format="ffmpeg")
  except _FFMPEG_ERRORS as e:
    raise InputError(f"{path}: not a video ffmpeg can read ({_reason(e)})") from None
  frames, held = [], 0
  try:
    fps = reader.get_meta_data().get("fps")
    for frame in reader:
      frame = np.asarray(frame)
      frames.append(frame if frame.ndim == 2 else _gray(frame))
      held += frames[-1].nbytes
      if held > MAX_CLIP_BYTES:
        raise InputError(f"{path}: more than {MAX_CLIP_BYTES >> 30} GiB of frames after "
                         f"{len(frames)} frame(s); cut the clip to the expression first")
  except _FFMPEG_ERRORS as e:  # a truncated or corrupt stream
    raise InputError(f"{path}: the video cannot be decoded after {len(frames)} frame(s) "
                     f"({_reason(e)})") from None
  finally:
    reader.close()
  if not frames:
    raise InputError(f"{path}: the video holds no frame")
  return Clip(path.stem, str(path), np.stack(frames).astype(np.uint8),
              np.arange(len(frames), dtype=np.int64), float(fps) if fps else None)


def _reason(error: Exception) -> str:
  """An ffmpeg error on one line: its first line and, when ffmpeg's log follows, the log's last
  line (the log's banner and build configuration are left out)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if len(lines) <= 1:
    return lines[0] if lines else type(error).__name__
  return f"{lines[0]}; ffmpeg: {lines[-1]}"


def _gray(rgb: np.ndarray) -> np.ndarray:
  import cv2  # pylint: disable=g-import-not-at-top
  return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)


def read_frame_folder(folder: str | os.PathLike) -> Clip:
  """The frames of a folder named in one of the datasets' schemes, in frame-number order."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise InputError(f"{folder}: no such frame folder")
  names = [e.name for e in os.scandir(folder) if e.is_file()]
  best: dict[int, pathlib.Path] = {}
  # The loosest patterns (SAMM's) last: on a tie the stricter naming wins.
  for db in sorted(databases.ALL, key=lambda d: d.loose_frame_names):
    numbered = {}
    for name in names:
      number = clips_lib.frame_number(db.name, name)
      if number is not None:
        numbered.setdefault(number, folder / name)
    if len(numbered) > len(best):
      best = numbered
  if len(best) < 2:
    known = [f"{db.title} ({db.frame_example})" for db in databases.ALL]
    raise InputError(f"{folder}: fewer than 2 frames named as in {', '.join(known[:-1])} or "
                     f"{known[-1]}")
  numbers = sorted(best)
  frames = [clips_lib.load_gray(best[n]) for n in numbers]
  if len({f.shape for f in frames}) != 1:
    raise InputError(f"{folder}: the frames differ in size")
  return Clip(folder.name, str(folder), np.stack(frames), np.asarray(numbers, np.int64), None)


def read_clip(path: str | os.PathLike) -> Clip:
  """A video file or a frame folder (module docstring)."""
  path = pathlib.Path(path)
  if path.is_dir():
    return read_frame_folder(path)
  if not is_video(path):
    raise InputError(f"{path}: neither a frame folder nor a video file "
                     f"({', '.join(VIDEO_SUFFIXES)})")
  return read_video(path)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 30.0,
                quality: float = 8.0) -> None:
  """Writes uint8 frames [N, H, W] or [N, H, W, 3] as a video (H.264 for .mp4)."""
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  frames = np.asarray(frames)
  with imageio.get_writer(os.fspath(path), format="ffmpeg", fps=fps, quality=quality,
                          macro_block_size=1) as writer:
    for frame in frames:
      writer.append_data(frame)
