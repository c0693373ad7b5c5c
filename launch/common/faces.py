"""Face detection for the entry points: eye and mouth landmarks from OpenCV's Haar cascades.

The one face detector of the project. The libraries take landmark arrays and do the geometry:
`sat3d_jax.face_crop.crop_face` (EG3D-like crop, launch/invert.py) and the dataset builders'
similarity alignment (`frldgt_jax.data.builders.BuildOptions(detector=detect_landmarks)`,
launch/prepare_data.py).

    points, source = faces.detect_landmarks(image, "photo.jpg")   # float64 [3, 2], str

Landmarks: image-left eye centre, image-right eye centre, mouth centre, in pixel coordinates of
the image (x right, y down; OpenCV's convention, the centre of pixel [row i, column j] is
(x=j, y=i)). Image-left is the subject's right eye.

Detection uses the Haar cascades bundled with opencv-python 4.x (`cv2.data.haarcascades`; they
are gone from OpenCV 5, hence the `<5` pin in pyproject.toml).
"""
from __future__ import annotations

import functools
import math
import os
from typing import NamedTuple

import cv2
import numpy as np

from frldgt_jax.data import align as frldgt_align
from sat3d_jax import errors as sat3d_errors

# The heuristics place points at the micro-expression template's proportions (frldgt_jax's
# TEMPLATE: image-left eye, image-right eye, mouth of a square crop), which the Haar
# frontal-face box spans roughly.
_TEMPLATE = frldgt_align.TEMPLATE
# Mouth below the eye line, in eye distances, when the smile cascade finds no mouth.
_MOUTH_DROP = (_TEMPLATE[2][1] - _TEMPLATE[0][1]) / (_TEMPLATE[1][0] - _TEMPLATE[0][0])
# Eye centres inside a frontal-face box when the eye cascades find no pair.
_BOX_EYES = (_TEMPLATE[0], _TEMPLATE[1])

_FACE_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
_EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
_SMILE_CASCADE = "haarcascade_smile.xml"


class FaceNotFoundError(frldgt_align.FaceNotFoundError, sat3d_errors.InputError):
  """No face was detected in an image; the message names the image.

  A user error for both libraries: the dataset builders drop or report the clip
  (`frldgt_jax.data.align.FaceNotFoundError`), and launch/common/cli.py reports either
  library's InputError as one line with exit status 2.
  """


class Detection(NamedTuple):
  """Landmarks found in one image.

  points: float64 [3, 2] (x, y) pixels: image-left eye, image-right eye, mouth centre.
  source: the cascades used, e.g. 'face=frontalface_default eyes=eye+pupil mouth=smile';
    'eyes=face_box' means no eye pair was found and the eyes were placed in the face box,
    'mouth=eyes_fallback' that no smile was found and the mouth was placed from the eyes.
  """
  points: np.ndarray
  source: str


@functools.cache
def _cascade(file_name: str) -> cv2.CascadeClassifier:
  path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), file_name)
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise RuntimeError(f"OpenCV Haar cascade {file_name} not found at {path}: face detection "
                       f"needs opencv-python(-headless) 4.x, which bundles them (found "
                       f"{cv2.__version__})")
  return cascade


def _to_gray(image: np.ndarray, name: str) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"{name}: expected a uint8 image, got {image.dtype}")
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  if image.ndim == 2:
    return np.ascontiguousarray(image)
  if image.ndim == 3 and image.shape[2] in (3, 4):
    code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
    return cv2.cvtColor(np.ascontiguousarray(image), code)
  raise ValueError(f"{name}: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {image.shape}")


def _face_candidates(gray: np.ndarray):
  """Face boxes from both frontal cascades, most-supported first (as (box, cascade file))."""
  min_side = max(24, min(gray.shape) // 8)
  found = []
  for rank, file_name in enumerate(_FACE_CASCADES):
    boxes, support = _cascade(file_name).detectMultiScale2(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    for (x, y, w, h), n in zip(boxes, np.ravel(support)):
      found.append((-int(n), rank, (int(x), int(y), int(w), int(h)), file_name))
  # The number of merged raw detections ranks boxes: a large false positive (background,
  # clothing) gathers fewer than the real face, so "the largest box" would be the wrong rule.
  return [(box, file_name) for _, _, box, file_name in sorted(found)]


def _eye_pair(gray: np.ndarray, box):
  """The best (left, right) pair of eye boxes as (centre x, centre y, side), or None."""
  x, y, w, h = box
  top, bottom = y + int(0.12 * h), y + int(0.62 * h)
  roi = gray[top:bottom, x:x + w]
  for file_name in _EYE_CASCADES:
    found = _cascade(file_name).detectMultiScale(
        roi, scaleFactor=1.1, minNeighbors=3, minSize=(max(6, w // 10),) * 2,
        maxSize=(max(7, w // 2),) * 2)
    centres = [(x + ex + ew / 2 - 0.5, top + ey + eh / 2 - 0.5, ew) for ex, ey, ew, eh in found]
    best, best_cost = None, math.inf
    for a in centres:
      for b in centres:
        dx, dy = b[0] - a[0], b[1] - a[1]
        if not 0.2 * w <= dx <= 0.7 * w or abs(dy) > 0.4 * dx:
          continue
        # Prefer a level pair at the template's spacing and height, of similar sizes.
        cost = (abs(dy) / dx + abs(dx / w - (_BOX_EYES[1][0] - _BOX_EYES[0][0]))
                + abs(((a[1] + b[1]) / 2 - y) / h - _BOX_EYES[0][1]) + abs(a[2] - b[2]) / w)
        if cost < best_cost:
          best, best_cost = (a, b), cost
    if best is not None:
      return best, file_name
  return None, None


def _refine_eye(gray: np.ndarray, eye) -> tuple[float, float]:
  """Moves an eye-box centre onto the dark iris/pupil blob inside it.

  The Haar eye box is quantised to the cascade's scale steps (its centre moved by up to ~2 px
  between shifted copies of the test photograph); the weighted centroid of the darkest 10% of a
  blurred window around it was stable to ~0.3 px. A centroid that leaves the inner window (no
  clear blob) keeps the box centre.
  """
  cx, cy, side = eye
  half_w, half_h = 0.3 * side, 0.21 * side
  x0, x1 = max(0, round(cx - half_w)), min(gray.shape[1], round(cx + half_w) + 1)
  y0, y1 = max(0, round(cy - half_h)), min(gray.shape[0], round(cy + half_h) + 1)
  if x1 - x0 < 3 or y1 - y0 < 3:
    return float(cx), float(cy)
  patch = cv2.GaussianBlur(gray[y0:y1, x0:x1].astype(np.float32), (0, 0), max(1.0, 0.04 * side))
  weight = np.maximum(np.percentile(patch, 10) - patch, 0.0)
  if weight.sum() <= 0:
    return float(cx), float(cy)
  ys, xs = np.mgrid[y0:y1, x0:x1]
  rx, ry = float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())
  if abs(rx - cx) > 0.25 * side or abs(ry - cy) > 0.18 * side:
    return float(cx), float(cy)
  return rx, ry


def _mouth(gray: np.ndarray, box, left, right):
  """Mouth centre from the smile cascade (closest to where the eyes put it), or None."""
  x, y, w, h = box
  eye_mid = (np.asarray(left) + np.asarray(right)) / 2
  across = np.asarray(right) - np.asarray(left)
  eye_dist = float(np.hypot(*across))
  down = np.array([-across[1], across[0]]) / eye_dist  # perpendicular, pointing down the face
  expected = eye_mid + _MOUTH_DROP * eye_dist * down
  top = y + int(0.5 * h)
  bottom = min(gray.shape[0], y + int(1.1 * h))
  roi = gray[top:bottom, x:x + w]
  found = _cascade(_SMILE_CASCADE).detectMultiScale(
      roi, scaleFactor=1.05, minNeighbors=8, minSize=(max(8, w // 5), max(4, w // 10)))
  best, best_err = None, math.inf
  for mx, my, mw, mh in found:
    centre = np.array([x + mx + mw / 2 - 0.5, top + my + mh / 2 - 0.5])
    rel = centre - eye_mid
    drop, lateral = float(rel @ down) / eye_dist, float(rel @ across) / eye_dist ** 2
    if not 0.6 <= drop <= 1.5 or abs(lateral) > 0.3:
      continue
    err = float(np.hypot(*(centre - expected)))
    if err < best_err:
      best, best_err = centre, err
  return (best, "smile") if best is not None else (expected, "eyes_fallback")


def detect_landmarks(image: np.ndarray, name: str = "<image>") -> Detection:
  """Finds the face, both eyes and the mouth with OpenCV's bundled Haar cascades.

  Face: frontalface_default and frontalface_alt2; the box most detections support wins, among
  those where a pair of eyes is found if any. Eyes: the eye cascade (then eye_tree_eyeglasses)
  in the upper part of the face box, best level pair, each centre moved onto the dark
  iris/pupil blob of its box; if no pair is found, the template's eye positions inside the face
  box. Mouth: the smile cascade in the lower face, accepted only where the eyes say a mouth can
  be; otherwise placed below the eye line at the template's distance. `Detection.source`
  records which of these were used.

  Args:
    image: uint8 [H, W] grayscale or [H, W, 3] RGB (or RGBA) image.
    name: the image's name (e.g. its file path) for error messages.
  Returns:
    Detection(points float64 [3, 2] (image-left eye, image-right eye, mouth), source).
  Raises:
    FaceNotFoundError: no face in the image (the message names `name`).
    ValueError: not a uint8 image of one of those shapes (the message names `name`).
  """
  raw_gray = _to_gray(image, name)
  gray = cv2.equalizeHist(raw_gray)
  candidates = _face_candidates(gray)
  if not candidates:
    raise FaceNotFoundError(f"{name}: no face found ({gray.shape[1]}x{gray.shape[0]} image, "
                            f"OpenCV Haar cascades {', '.join(_FACE_CASCADES)})")
  # The best-supported face with a pair of eyes; failing that, the best-supported face.
  box, face_file, eyes, eye_file = candidates[0] + (None, None)
  for candidate_box, candidate_file in candidates:
    pair, pair_file = _eye_pair(gray, candidate_box)
    if pair is not None:
      box, face_file, eyes, eye_file = candidate_box, candidate_file, pair, pair_file
      break
  x, y, w, h = box
  if eyes is None:
    eyes = tuple((x + ex * w - 0.5, y + ey * h - 0.5) for ex, ey in _BOX_EYES)
    eye_source = "face_box"
  else:
    eyes = tuple(_refine_eye(raw_gray, eye) for eye in eyes)
    eye_source = eye_file.removeprefix("haarcascade_").removesuffix(".xml") + "+pupil"
  mouth, mouth_source = _mouth(gray, box, *eyes)
  source = (f"face={face_file.removeprefix('haarcascade_').removesuffix('.xml')} "
            f"eyes={eye_source} mouth={mouth_source}")
  points = np.array([[float(v) for v in eyes[0]], [float(v) for v in eyes[1]],
                     [float(v) for v in mouth]], dtype=np.float64)
  return Detection(points, source)
