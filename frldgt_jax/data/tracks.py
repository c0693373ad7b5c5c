"""Face tracks of a long video: aligned once per stable track, re-aligned when the head moves.

A short clip is aligned once, on its onset frame (frldgt_jax/data/align.py). A long video is not:
the head drifts, turns, or leaves the picture. `split_tracks` walks the per-frame landmarks
(None where no face was found) and cuts the video into tracks:

- a track starts at the first frame with a face after a gap (or at the video's start);
- its reference is the similarity of that first frame (landmarks -> `align.TEMPLATE`);
- a frame stays in the track while the reference maps its two eye centres within
  `drift` x crop side of their template positions; past that, a new track starts at that frame.
  Only the eyes are measured: the mouth centre moves with speech and expressions, which a track
  must not follow, while two points already fix a similarity's rotation, scale and shift;
- a frame without a face ends the track; consecutive faceless frames form a `Gap`.

Each track then gets one similarity, fitted by least squares on the landmarks of all its frames
at once (`align.fit_similarity` on the stacked points, so a jittery landmark on one frame moves
nothing), and every frame of the track is warped by it. `align_video` does both and fills each
gap with the last aligned frame before it (the first track's first frame for a leading gap), so
a gap carries no motion; `Aligned.has_face` says which frames are real. Positions are 0-based
indices into the frame sequence given; `Track.stop` and `Gap.stop` are exclusive.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from frldgt_jax.data import align as align_lib

# Eye drift (fraction of the crop side) beyond which a new track starts: 0.05 is 6.4 px of a
# 128 px crop, larger than landmark jitter and far larger than micro-expression motion.
DEFAULT_DRIFT = 0.05


@dataclasses.dataclass(frozen=True)
class Track:
  """Frames start..stop-1 with a face, aligned by one similarity `matrix` ([2, 3], raw->crop)."""
  start: int
  stop: int
  matrix: np.ndarray

  @property
  def length(self) -> int:
    return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class Gap:
  """Frames start..stop-1 without a face."""
  start: int
  stop: int

  @property
  def length(self) -> int:
    return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class Aligned:
  """A long video aligned track by track (module docstring)."""
  frames: np.ndarray      # uint8 [T, S, S] (or [T, S, S, C] for colour input)
  has_face: np.ndarray    # bool [T]
  tracks: tuple[Track, ...]
  gaps: tuple[Gap, ...]


def _as_points(landmarks) -> np.ndarray | None:
  if landmarks is None:
    return None
  if isinstance(landmarks, align_lib.Landmarks):
    return landmarks.as_array()
  return np.asarray(landmarks, dtype=np.float64).reshape(3, 2)


def eye_drift(matrix: np.ndarray, points: np.ndarray, size: int) -> float:
  """How far `matrix` puts the two eyes of `points` from the template's, in crop sides."""
  target = align_lib.template_points(size)[:2]
  mapped = points[:2] @ matrix[:, :2].T + matrix[:, 2]
  return float(np.max(np.linalg.norm(mapped - target, axis=1)) / size)


def split_tracks(landmarks: Sequence, size: int, drift: float = DEFAULT_DRIFT
                 ) -> tuple[tuple[Track, ...], tuple[Gap, ...]]:
  """Tracks and gaps of a video from its per-frame landmarks (module docstring).

  Args:
    landmarks: per frame, `Landmarks`, a [3, 2] array-like (left eye, right eye, mouth; raw
      pixels) or None where no face was found.
    size: side of the aligned crop in pixels.
    drift: eye drift, in crop sides, that starts a new track.
  Returns:
    (tracks, gaps), each in frame order; together they cover every frame exactly once.
  """
  if not drift > 0:
    raise ValueError(f"drift must be positive, got {drift}")
  points = [_as_points(p) for p in landmarks]
  tracks: list[Track] = []
  gaps: list[Gap] = []
  start, reference = None, None
  gap_start = None

  def close_track(stop):
    stacked = np.concatenate(points[start:stop])
    target = np.tile(align_lib.template_points(size), (stop - start, 1))
    tracks.append(Track(start, stop, align_lib.fit_similarity(stacked, target)))

  for i, p in enumerate(points):
    if p is None:
      if start is not None:
        close_track(i)
        start = None
      if gap_start is None:
        gap_start = i
      continue
    if gap_start is not None:
      gaps.append(Gap(gap_start, i))
      gap_start = None
    if start is not None and eye_drift(reference, p, size) > drift:
      close_track(i)
      start = None
    if start is None:
      start, reference = i, align_lib.similarity_from_landmarks(p, size)
  if start is not None:
    close_track(len(points))
  if gap_start is not None:
    gaps.append(Gap(gap_start, len(points)))
  return tuple(tracks), tuple(gaps)


def align_video(frames: Sequence[np.ndarray], landmarks: Sequence, size: int,
                drift: float = DEFAULT_DRIFT) -> Aligned:
  """Aligns a long video track by track (module docstring).

  Args:
    frames: the video's uint8 frames ([H, W] or [H, W, C]); any indexable sequence, so a lazy
      reader of frame files works (each frame is read once).
    landmarks: per frame, as `split_tracks` takes them; len(landmarks) == len(frames).
    size: side of the aligned crop in pixels.
    drift: see `split_tracks`.
  Returns:
    `Aligned`; with no face anywhere, frames are zeros and `tracks` is empty.
  """
  if len(frames) != len(landmarks):
    raise ValueError(f"{len(frames)} frames but {len(landmarks)} landmark entries")
  tracks, gaps = split_tracks(landmarks, size, drift)
  n = len(frames)
  has_face = np.zeros(n, bool)
  out = None
  for track in tracks:
    for i in range(track.start, track.stop):
      crop = align_lib.align(np.asarray(frames[i]), track.matrix, size)
      if out is None:
        out = np.zeros((n,) + crop.shape, np.uint8)
      out[i] = crop
    has_face[track.start:track.stop] = True
  if out is None:
    return Aligned(np.zeros((n, size, size), np.uint8), has_face, tracks, gaps)
  for gap in gaps:
    source = gap.start - 1 if gap.start > 0 else gap.stop
    out[gap.start:gap.stop] = out[source]
  return Aligned(out, has_face, tracks, gaps)


def gap_messages(gaps: Sequence[Gap], fps: float, frame_numbers: Sequence[int] | None = None
                 ) -> list[str]:
  """One line per gap: where the face was lost, in frames and seconds.

  Args:
    gaps: from `split_tracks` / `Aligned.gaps`.
    fps: the video's frame rate.
    frame_numbers: the frame number of each position (default the position itself).
  """
  lines = []
  for gap in gaps:
    first = gap.start if frame_numbers is None else int(frame_numbers[gap.start])
    last = gap.stop - 1 if frame_numbers is None else int(frame_numbers[gap.stop - 1])
    lines.append(f"no face in frames {first}-{last} ({gap.start / fps:.2f}-{gap.stop / fps:.2f} s,"
                 f" {gap.length} frame{'s' if gap.length != 1 else ''})")
  return lines
