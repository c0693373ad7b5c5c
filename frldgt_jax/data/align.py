"""Similarity alignment of micro-expression frames, and landmark CSV files.

One alignment per clip (docs/frldgt.md, "Align before anything else"): landmarks of the
onset frame (left eye, right eye, mouth centre) are mapped by a least-squares similarity transform
(rotation, uniform scale, translation) onto `TEMPLATE`, and the same transform crops every frame
of the clip.

Coordinates: x right, y down. Landmarks are in pixel coordinates of the raw frame with OpenCV's
convention (the centre of pixel [row i, column j] is (x=j, y=i)). `TEMPLATE` is in normalised
crop coordinates where the crop covers [0, 1] x [0, 1] edge to edge, so a template point t lands
at pixel t * size - 0.5 of a `size` crop; this keeps the template symmetric under a horizontal
flip of the crop (x -> size - 1 - x maps 0.32 onto 0.68 exactly).

Landmarks come from a landmark CSV or from a face detector the caller supplies (the dataset
builders' `BuildOptions.detector`; the application's is launch/common/faces.py). A detector
raises `FaceNotFoundError` (or a subclass) for an image without a face.
"""
from __future__ import annotations

import csv
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import cv2
import numpy as np

from frldgt_jax.data import csv_file
from frldgt_jax.errors import InputError

# The alignments the TFDS builders make (frldgt_jax/data/builders.py); landmarks68 and landmarks
# align on facial landmarks.
ALIGNMENTS = ("landmarks68", "landmarks", "cropped")
LANDMARK_ALIGNMENTS = ("landmarks68", "landmarks")
# Alignment names of earlier builder versions -> the alignment that replaced them. A new run
# cannot ask for them (no builder makes such data); runs saved with them still load and predict
# (frldgt_jax/clip_input.py follows them).
RETIRED_ALIGNMENTS = {"detect": "landmarks68"}  # 2.0.0: dlib replaced OpenCV Haar cascades

# Micro-expression conventions (docs/frldgt.md): image-left eye centre, image-right eye centre,
# mouth centre, normalised (x, y) in the square aligned crop.
TEMPLATE = ((0.32, 0.38), (0.68, 0.38), (0.50, 0.78))

LANDMARK_CSV_COLUMNS = ("subject", "sample", "left_eye_x", "left_eye_y", "right_eye_x",
                        "right_eye_y", "mouth_x", "mouth_y")


class FaceNotFoundError(InputError):
  """No face was detected in an image; the message names the image.

  What a face detector raises for such an image (the builders then drop or report the clip).
  """


class LandmarkFileError(InputError):
  """A landmark CSV is malformed; the message names the file and the row."""


class Landmarks(NamedTuple):
  """Three facial points in pixel coordinates (x, y) of one image.

  left_eye / right_eye are the image-left / image-right eye (image-left is the subject's right
  eye). `source` says where the points come from: 'csv', 'given', or what a detector reports.
  """
  left_eye: tuple[float, float]
  right_eye: tuple[float, float]
  mouth: tuple[float, float]
  source: str = "given"

  def as_array(self) -> np.ndarray:
    """The points as a float64 [3, 2] array (left eye, right eye, mouth)."""
    return np.array([self.left_eye, self.right_eye, self.mouth], dtype=np.float64)

  @classmethod
  def from_array(cls, points, source: str = "given") -> Landmarks:
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


# ----------------------------------------------------------------------------- landmark CSV

def read_landmarks_csv(path: str | os.PathLike) -> dict[tuple[str, str], Landmarks]:
  """Reads a landmark CSV: {(subject, sample): Landmarks} (folder spellings, raw onset pixels).

  Header (any column order, extra columns ignored): subject, sample, left_eye_x, left_eye_y,
  right_eye_x, right_eye_y, mouth_x, mouth_y. Rows are numbered as in the file (header = row 1).

  Raises:
    LandmarkFileError: missing file or columns, or a malformed/duplicate row (names the row).
  """
  path = pathlib.Path(path)
  rows = csv_file.read_rows(path, lambda message, row: LandmarkFileError(
      f"{path}{'' if row is None else f', row {row}'}: {message}"))
  if not rows:
    raise LandmarkFileError(f"{path}: empty file (expected header "
                            f"{','.join(LANDMARK_CSV_COLUMNS)})")
  header = [h.strip().lower() for h in rows[0][1]]
  missing = [c for c in LANDMARK_CSV_COLUMNS if c not in header]
  if missing:
    raise LandmarkFileError(f"{path}, row 1: header lacks column(s) {missing} (expected "
                            f"{','.join(LANDMARK_CSV_COLUMNS)}; got {','.join(header)})")
  index = {c: header.index(c) for c in LANDMARK_CSV_COLUMNS}
  result: dict[tuple[str, str], Landmarks] = {}
  rows_of: dict[tuple[str, str], int] = {}
  for row, cells in rows[1:]:
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
