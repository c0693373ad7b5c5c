"""A user's clip made into the model's inputs, the way a trained run's data was made.

  clip (frldgt_jax/video.py) -> landmarks of the onset frame (a landmark CSV row, or the face
  detector the caller passes) -> one similarity transform onto the alignment TEMPLATE for every
  frame (frldgt_jax/data/align.py) -> the apex, given or spotted (frldgt_jax/apex.py) -> aligned
  onset and apex at the model's resolution (and their TV-L1 flow when the model reads it).

How the run's alignment (its config.json, data.alignment) is followed:
  'landmarks68' the face detector's landmarks (dlib's 68 reduced to eyes and mouth, as
               launch/prepare_data.py aligned the training clips); 'detect' (runs made with
               the earlier Haar detector) is followed the same way;
  'landmarks'  the training clips were aligned from landmark-CSV points mapped onto TEMPLATE; the
               detector's points (or the --landmarks CSV's) are mapped onto the same template;
  'cropped'    the training clips were the datasets' registered crops, resized; a user's clip
               has none, so the template alignment stands in for them (recorded as such);
  another      the template alignment, recorded with the run's alignment name.
`PreparedClip.alignment_used` says which of these happened and where the landmarks came from.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from frldgt_jax import apex as apex_lib
from frldgt_jax import motion as motion_lib
from frldgt_jax.data import align as align_lib
from frldgt_jax.errors import InputError
from frldgt_jax.video import Clip

SPOT_SIZE = 128   # apex spotting works on 128 x 128 aligned crops whatever the model's size

# Alignments whose training clips were aligned from a face detector's landmarks.
_DETECTED = ("landmarks68", "detect")
_ALIGNMENT_USED = {
    "landmarks68": "detected landmarks -> template (as the run's 'landmarks68' data)",
    "detect": "detected landmarks -> template (as the run's 'detect' data)",
    "landmarks": "{} mapped onto the landmark-CSV template (as the run's 'landmarks' data)",
    "cropped": "{} -> template, standing in for the datasets' registered crops the run used",
}


@dataclasses.dataclass
class PreparedClip:
  """What the model and the pictures need of one clip."""
  name: str
  source: str
  num_frames: int
  onset: int                  # frame index (0-based position in the clip)
  apex: int
  apex_spotted: bool
  curve: np.ndarray           # float [N] smoothed motion energy (frldgt_jax/apex.py)
  onset_frame: np.ndarray     # uint8 [S, S] aligned
  apex_frame: np.ndarray      # uint8 [S, S] aligned
  flow: Optional[np.ndarray]  # float32 [S, S, 2] TV-L1 onset -> apex, when the model reads it
  face_box: list              # [x0, y0, x1, y1] raw pixels: the aligned crop's bounding box
  landmarks: list             # [[x, y]] x 3: left eye, right eye, mouth on the onset frame
  alignment_used: str


def crop_box(matrix: np.ndarray, size: int) -> list[float]:
  """[x0, y0, x1, y1] in raw pixels: the bounding box of a `size` crop made with `matrix`."""
  inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
  corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5],
                      [size - 0.5, size - 0.5]])
  raw = corners @ inverse[:, :2].T + inverse[:, 2]
  return [round(float(v), 1) for v in (*raw.min(0), *raw.max(0))]


def prepare_clip(clip: Clip, *, size: int, alignment: str, match_brightness: bool,
                 need_flow: bool, landmarks: Optional[np.ndarray] = None,
                 detector: Optional[Callable] = None, onset: Optional[int] = None,
                 apex: Optional[int] = None) -> PreparedClip:
  """Aligns `clip`, finds its apex when not given, and makes the model's inputs.

  Args:
    clip: the frames.
    size: the model's resolution S.
    alignment: the run's config.data.alignment (module docstring).
    match_brightness: the run's config.data.match_brightness (for the TV-L1 flow).
    need_flow: whether the model reads TV-L1 flow.
    landmarks: [3, 2] onset-frame landmarks (a landmark CSV row), else `detector` finds them.
    detector: (image, name) -> (points [3, 2], source), e.g. launch/common/faces.py's
      detect_landmarks; raises a FaceNotFoundError naming the clip when there is no face.
    onset, apex: frame indices (default: onset 0, apex spotted).
  """
  n = len(clip.frames)
  onset = 0 if onset is None else int(onset)
  if not 0 <= onset < n - 1:
    raise InputError(f"{clip.source}: onset {onset} must be a frame before the last "
                     f"(the clip has {n} frames, 0..{n - 1})")
  if apex is not None and not onset < apex < n:
    raise InputError(f"{clip.source}: apex {apex} must lie after the onset {onset} and within "
                     f"the clip's {n} frames")
  name = f"{clip.source} (onset frame {onset})"
  if landmarks is not None:
    points, source = np.asarray(landmarks, np.float64), "landmarks CSV"
  else:
    if detector is None:
      raise InputError("prepare_clip needs landmarks or a face detector")
    points, source = detector(clip.frames[onset], name)
    source = f"face detector ({source})"
  try:
    spot_matrix = align_lib.similarity_from_landmarks(points, SPOT_SIZE)
    matrix = align_lib.similarity_from_landmarks(points, size)
  except ValueError as e:
    raise InputError(f"{name}: unusable landmarks ({e})") from None
  spot_frames = np.stack([align_lib.align(f, spot_matrix, SPOT_SIZE) for f in clip.frames])
  spotted = apex is None
  if spotted:
    apex, curve = apex_lib.spot_apex(spot_frames, onset)
  else:
    curve = apex_lib.smooth(apex_lib.motion_curve(spot_frames, onset))
  onset_frame = align_lib.align(clip.frames[onset], matrix, size)
  apex_frame = align_lib.align(clip.frames[apex], matrix, size)
  flow = motion_lib.tvl1_flow(onset_frame, apex_frame, match_brightness) if need_flow else None
  # An alignment this module does not know (a newer builder's): the template alignment,
  # recorded with its name.
  used = _ALIGNMENT_USED.get(alignment, "{} -> template (the run's data: '" + alignment + "')")
  used = used if "{}" not in used else used.format(source)
  if alignment in _DETECTED and landmarks is not None:
    used = "landmarks CSV -> template (the run detected them instead)"
  elif alignment in _DETECTED:
    used = f"{used}; {source}"
  return PreparedClip(clip.name, clip.source, n, onset, int(apex), spotted, curve, onset_frame,
                      apex_frame, flow, crop_box(matrix, size), np.round(points, 2).tolist(),
                      used)
