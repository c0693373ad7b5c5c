"""Face detection and similarity alignment of micro-expression frames.

One alignment per clip (shared/design/frldgt.md, "Align before anything else"): landmarks of the
onset frame (left eye, right eye, mouth centre) are mapped by a least-squares similarity transform
(rotation, uniform scale, translation) onto `TEMPLATE`, and the same transform crops every frame
of the clip.

Coordinates: x right, y down. Landmarks are in pixel coordinates of the raw frame with OpenCV's
convention (the centre of pixel [row i, column j] is (x=j, y=i)). `TEMPLATE` is in normalised
crop coordinates where the crop covers [0, 1] x [0, 1] edge to edge, so a template point t lands
at pixel t * size - 0.5 of a `size` crop; this keeps the template symmetric under a horizontal
flip of the crop (x -> size - 1 - x maps 0.32 onto 0.68 exactly).

Detection uses the Haar cascades bundled with opencv-python 4.x (`cv2.data.haarcascades`; they
are gone from OpenCV 5, hence the `<5` pin in pyproject.toml).
"""
from __future__ import annotations

import csv
import functools
import math
import os
import pathlib
from typing import Mapping, NamedTuple, Sequence

import cv2
import numpy as np

from frldgt_jax.errors import InputError

# Micro-expression conventions (HELPER_BRIEF): image-left eye centre, image-right eye centre,
# mouth centre, normalised (x, y) in the square aligned crop.
TEMPLATE = ((0.32, 0.38), (0.68, 0.38), (0.50, 0.78))

LANDMARK_CSV_COLUMNS = ("subject", "sample", "left_eye_x", "left_eye_y", "right_eye_x",
                        "right_eye_y", "mouth_x", "mouth_y")

# Mouth below the eye line, in eye distances, when the smile cascade finds no mouth: the
# template's own ratio (0.78 - 0.38) / (0.68 - 0.32) = 1.111.
_MOUTH_DROP = (TEMPLATE[2][1] - TEMPLATE[0][1]) / (TEMPLATE[1][0] - TEMPLATE[0][0])
# Eye centres inside a frontal-face box when the eye cascades find no pair: the template's eye
# positions (the Haar frontal-face box spans roughly the template crop).
_BOX_EYES = (TEMPLATE[0], TEMPLATE[1])

_FACE_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
_EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
_SMILE_CASCADE = "haarcascade_smile.xml"


class FaceNotFoundError(InputError):
  """No face was detected in an image; the message names the image."""


class LandmarkFileError(InputError):
  """A landmark CSV is malformed; the message names the file and the row."""


class Landmarks(NamedTuple):
  """Three facial points in pixel coordinates (x, y) of one image.

  left_eye / right_eye are the image-left / image-right eye (image-left is the subject's right
  eye). `source` says where the points come from: 'csv', 'given', or for `detect_landmarks` the
  cascades used, e.g. 'face=frontalface_default eyes=eye mouth=smile'; 'mouth=eyes_fallback'
  means no smile was found and the mouth was placed from the eyes.
  """
  left_eye: tuple[float, float]
  right_eye: tuple[float, float]
  mouth: tuple[float, float]
  source: str = "given"

  def as_array(self) -> np.ndarray:
    """The points as a float64 [3, 2] array (left eye, right eye, mouth)."""
    return np.array([self.left_eye, self.right_eye, self.mouth], dtype=np.float64)

  @classmethod
  def from_array(cls, points, source: str = "given") -> "Landmarks":
    """Landmarks from a [3, 2] array-like (left eye, right eye, mouth)."""
    p = np.asarray(points, dtype=np.float64).reshape(3, 2)
    return cls(tuple(p[0].tolist()), tuple(p[1].tolist()), tuple(p[2].tolist()), source)


def template_points(size: int) -> np.ndarray:
  """TEMPLATE in pixel coordinates of a `size` x `size` crop, float64 [3, 2]."""
  return np.asarray(TEMPLATE, dtype=np.float64) * size - 0.5


# ----------------------------------------------------------------------------- similarity

def fit_similarity(src, dst, weights=None) -> np.ndarray:
  """Least-squares similarity transform mapping points `src` onto `dst` (Umeyama 1991).

  Closed form: with centred point sets and the weighted cross-covariance C = sum w d s^T, the
  rotation is U diag(1, det(U V^T)) V^T from the SVD C = U S V^T (no reflection), the scale
  trace(diag(1, +-1) S) / sum w |s|^2 and the translation mean(dst) - scale R mean(src).

  Args:
    src, dst: [N, 2] points (N >= 2), x then y.
    weights: optional [N] non-negative weights (default all equal).
  Returns:
    float64 [2, 3] matrix A with dst ~ A @ [x, y, 1].
  """
  src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
  dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
  if src.shape != dst.shape or src.shape[0] < 2:
    raise ValueError(f"need two equal [N>=2, 2] point sets, got {src.shape} and {dst.shape}")
  w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
  if w.shape != (len(src),) or np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f"weights must be {len(src)} non-negative numbers, not all zero; got {w}")
  w = w / w.sum()
  mu_s, mu_d = w @ src, w @ dst
  s, d = src - mu_s, dst - mu_d
  var_s = float(w @ np.sum(s * s, axis=1))
  if not var_s > 1e-12:
    raise ValueError(f"source points are degenerate (all at one place): {src.tolist()}")
  cov = (d * w[:, None]).T @ s
  u, sig, vt = np.linalg.svd(cov)
  flip = np.array([1.0, 1.0 if np.linalg.det(u @ vt) >= 0 else -1.0])
  rot = u @ np.diag(flip) @ vt
  scale = float(np.sum(sig * flip)) / var_s
  shift = mu_d - scale * rot @ mu_s
  return np.concatenate([scale * rot, shift[:, None]], axis=1)


def similarity_from_landmarks(landmarks, size: int, weights=None) -> np.ndarray:
  """The [2, 3] similarity transform taking raw-frame landmarks to TEMPLATE in a `size` crop.

  Args:
    landmarks: `Landmarks` or a [3, 2] array-like (left eye, right eye, mouth), raw pixels.
    size: side of the square aligned crop in pixels.
    weights: optional per-point weights for the least squares (default equal).
  Returns:
    float64 [2, 3] matrix for `align` / cv2.warpAffine (raw pixel -> crop pixel).
  """
  points = landmarks.as_array() if isinstance(landmarks, Landmarks) else landmarks
  points = np.asarray(points, dtype=np.float64)
  if points.shape != (3, 2) or not np.all(np.isfinite(points)):
    raise ValueError(f"landmarks must be 3 finite (x, y) points, got {points.tolist()}")
  if not points[0, 0] < points[1, 0]:
    raise ValueError(f"left_eye {points[0].tolist()} must be image-left of right_eye "
                     f"{points[1].tolist()}")
  return fit_similarity(points, template_points(size), weights)


def align(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """Warps `image` by `matrix` into a `size` x `size` uint8 crop (bilinear, border replicated).

  The channel layout is kept: [H, W] gives [size, size], [H, W, C] gives [size, size, C].
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"align expects a uint8 image, got {image.dtype}")
  matrix = np.asarray(matrix, dtype=np.float64)
  if matrix.shape != (2, 3):
    raise ValueError(f"matrix must be [2, 3], got {matrix.shape}")
  out = cv2.warpAffine(image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
  if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
    out = out[:, :, None]
  return out


# ----------------------------------------------------------------------------- detection

@functools.lru_cache(maxsize=None)
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
  x0, x1 = max(0, int(round(cx - half_w))), min(gray.shape[1], int(round(cx + half_w)) + 1)
  y0, y1 = max(0, int(round(cy - half_h))), min(gray.shape[0], int(round(cy + half_h)) + 1)
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


def detect_landmarks(image: np.ndarray, name: str = "<image>") -> Landmarks:
  """Finds the face, both eyes and the mouth with OpenCV's bundled Haar cascades.

  Face: frontalface_default and frontalface_alt2; the box most detections support wins, among
  those where a pair of eyes is found if any. Eyes: the eye cascade (then eye_tree_eyeglasses)
  in the upper part of the face box, best level pair, each centre moved onto the dark
  iris/pupil blob of its box; if no pair is found, the template's eye positions inside the face
  box. Mouth: the smile cascade in the lower face, accepted only where the eyes say a mouth can
  be; otherwise placed below the eye line at the template's distance. `Landmarks.source` records
  which of these were used.

  Args:
    image: uint8 [H, W] grayscale or [H, W, 3] RGB (or RGBA) image.
    name: the image's name (e.g. its file path) for error messages.
  Raises:
    FaceNotFoundError: no face in the image (the message names `name`).
  """
  raw_gray = _to_gray(image, name)
  gray = cv2.equalizeHist(raw_gray)
  candidates = _face_candidates(gray)
  if not candidates:
    raise FaceNotFoundError(f"{name}: no face found ({gray.shape[1]}x{gray.shape[0]} image; "
                            f"OpenCV Haar cascades {', '.join(_FACE_CASCADES)}); give its "
                            f"landmarks in a landmark CSV instead")
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
  return Landmarks(tuple(map(float, eyes[0])), tuple(map(float, eyes[1])),
                   tuple(map(float, mouth)), source)


# ----------------------------------------------------------------------------- landmark CSV

def read_landmarks_csv(path: str | os.PathLike) -> dict[tuple[str, str], Landmarks]:
  """Reads a landmark CSV: {(subject, sample): Landmarks} (folder spellings, raw onset pixels).

  Header (any column order, extra columns ignored): subject, sample, left_eye_x, left_eye_y,
  right_eye_x, right_eye_y, mouth_x, mouth_y. Rows are numbered as in the file (header = row 1).

  Raises:
    LandmarkFileError: missing file or columns, or a malformed/duplicate row (names the row).
  """
  path = pathlib.Path(path)
  try:
    f = open(path, newline="", encoding="utf-8")
  except OSError as e:
    raise LandmarkFileError(f"{path}: cannot be read ({e})") from e
  with f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
      raise LandmarkFileError(f"{path}: empty file (expected header "
                              f"{','.join(LANDMARK_CSV_COLUMNS)})")
    header = [h.strip().lower() for h in header]
    missing = [c for c in LANDMARK_CSV_COLUMNS if c not in header]
    if missing:
      raise LandmarkFileError(f"{path}, row 1: header lacks column(s) {missing} (expected "
                              f"{','.join(LANDMARK_CSV_COLUMNS)}; got {','.join(header)})")
    index = {c: header.index(c) for c in LANDMARK_CSV_COLUMNS}
    result: dict[tuple[str, str], Landmarks] = {}
    rows_of: dict[tuple[str, str], int] = {}
    for cells in reader:
      row = reader.line_num
      if not any(c.strip() for c in cells):
        continue
      if len(cells) != len(header):
        raise LandmarkFileError(f"{path}, row {row}: {len(cells)} fields, expected {len(header)}")
      subject, sample = cells[index["subject"]].strip(), cells[index["sample"]].strip()
      if not subject or not sample:
        raise LandmarkFileError(f"{path}, row {row}: subject and sample must not be empty")
      values = []
      for column in LANDMARK_CSV_COLUMNS[2:]:
        text = cells[index[column]].strip()
        try:
          value = float(text)
        except ValueError:
          value = math.nan
        if not math.isfinite(value):
          raise LandmarkFileError(f"{path}, row {row}: {column} {text!r} is not a finite number")
        values.append(value)
      if not values[0] < values[2]:
        raise LandmarkFileError(f"{path}, row {row}: left_eye_x {values[0]} must be smaller than "
                                f"right_eye_x {values[2]} (left = image-left)")
      key = (subject, sample)
      if key in rows_of:
        raise LandmarkFileError(f"{path}, row {row}: {subject}/{sample} already given in row "
                                f"{rows_of[key]}")
      rows_of[key] = row
      result[key] = Landmarks.from_array(np.reshape(values, (3, 2)), source="csv")
  return result


def write_landmarks_csv(path: str | os.PathLike,
                        landmarks: Mapping[tuple[str, str], Landmarks | Sequence]) -> None:
  """Writes {(subject, sample): landmarks} in the format `read_landmarks_csv` reads."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(LANDMARK_CSV_COLUMNS)
    for (subject, sample), points in landmarks.items():
      points = points.as_array() if isinstance(points, Landmarks) else np.asarray(points, float)
      writer.writerow([subject, sample] + [f"{v:.3f}" for v in points.reshape(-1)])
