"""Faces for the entry points: the one wrapper of dlib and MTCNN (extra `[faces]`).

What it wraps, loaded lazily on first use (the project installs and runs without them):
- dlib (`dlib-bin`): the HOG frontal-face detector (built into dlib) and, from the model files
  of `face-recognition-models` or of `--face_models DIR` (`set_model_dir`), the CNN (MMOD) face
  detector `mmod_human_face_detector.dat`, the 68-point shape predictor
  `shape_predictor_68_face_landmarks.dat` and the 128-d face-recognition ResNet
  `dlib_face_recognition_resnet_model_v1.dat`;
- MTCNN (`mtcnn` 1.x, on TensorFlow; its weights ship inside the package): the detector of
  EG3D's in-the-wild preprocessing, 5 keypoints per face.

The libraries take landmark arrays and keep the geometry: `sat3d_jax.face_crop` (EG3D's crop from
5 points), `sat3d_jax.head_pose` (camera from 68 points), `frldgt_jax.data.align` (similarity
alignment on eyes and mouth, from a landmark CSV that launch/prepare_data.py writes with
`detect_landmarks`).

    face = faces.landmarks68(image, "photo.jpg")       # Face68(points [68, 2], box, score, note)
    five = faces.mtcnn_five(image, "photo.jpg")        # Face5(points [5, 2], box, score, note)
    points, source = faces.detect_landmarks(image, "frame.jpg")   # float64 [3, 2], str
    vector = faces.descriptor(image, face)             # float64 [128]

Coordinates: pixels of the image, x right, y down, the centre of pixel [row i, column j] at
(x=j, y=i). Image-left is the subject's right. Which face when there are several: dlib's by the
detector's score, MTCNN's the largest box (width + height, as batch_mtcnn.py), or `index` (0 = the
first in that order); `note` says how many were found and which was taken.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
from typing import Any, NamedTuple

import numpy as np

from frldgt_jax.data import align as frldgt_align
from sat3d_jax import errors as sat3d_errors

EXTRA_HINT = "pip install -e '.[faces]'"
MODEL_FILES = {
    "predictor68": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}
DETECTORS = ("hog", "cnn")
# dlib's threshold on the Euclidean distance of two descriptors: below it, the same person.
SAME_PERSON_DISTANCE = 0.6
# batch_mtcnn.py keeps a face only above this confidence.
MTCNN_MIN_CONFIDENCE = 0.9
# 68-point indices (iBUG 300-W, 0-based): each eye's 6 contour points, the mouth corners.
_LEFT_EYE, _RIGHT_EYE, _MOUTH_CORNERS = slice(36, 42), slice(42, 48), [48, 54]

_model_dir: pathlib.Path | None = None


class FaceNotFoundError(frldgt_align.FaceNotFoundError, sat3d_errors.InputError):
  """No face was detected in an image; the message names the image.

  A user error for both libraries; launch/common/cli.py reports it as one line, exit status 2.
  """


class FaceModelsMissing(sat3d_errors.InputError):
  """dlib, MTCNN or a model file is not installed; the message names the extra or the file."""


class Detection(NamedTuple):
  """Eyes and mouth of one image: what the micro-expression alignment uses.

  points: float64 [3, 2] (x, y): image-left eye centre, image-right eye centre, mouth centre
    (means of each eye's 6 contour points and of the two mouth corners of dlib's 68).
  source: how, e.g. 'dlib68 hog' plus the face-choice note when there were several faces.
  """
  points: np.ndarray
  source: str


class Face68(NamedTuple):
  """dlib's 68 landmarks of one face: points float64 [68, 2], box (left, top, right, bottom),
  the detector's score, and a note on the choice among several faces ('' for one)."""
  points: np.ndarray
  box: tuple[int, int, int, int]
  score: float
  note: str


class Face5(NamedTuple):
  """MTCNN's 5 keypoints of one face, float64 [5, 2] in sat3d_jax.face_shape.FIVE_POINT_NAMES
  order (image-left eye, image-right eye, nose, image-left and image-right mouth corner), its box
  (left, top, right, bottom), confidence, and the choice note."""
  points: np.ndarray
  box: tuple[int, int, int, int]
  score: float
  note: str


def set_model_dir(path: str | os.PathLike | None) -> None:
  """Reads dlib's model files from `path` (the --face_models flag) instead of the package's."""
  global _model_dir
  _model_dir = None if path is None else pathlib.Path(path)
  _dlib_model.cache_clear()


def _import(module: str):
  try:
    return __import__(module)
  except ImportError as e:
    raise FaceModelsMissing(f"face detection needs {module!r}, from the extra [faces] "
                            f"({EXTRA_HINT}): {e}") from e


def model_path(kind: str) -> pathlib.Path:
  """Path of dlib's model file `kind` (a MODEL_FILES key), from --face_models or the package."""
  file_name = MODEL_FILES[kind]
  if _model_dir is not None:
    path = _model_dir / file_name
    where = f"--face_models {_model_dir}"
  else:
    # The package's folder, found without running its __init__: that imports pkg_resources,
    # which setuptools 81 removed (and Python 3.12 venvs have no setuptools of their own).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
      raise FaceModelsMissing(f"face detection needs 'face_recognition_models', from the extra "
                              f"[faces] ({EXTRA_HINT})")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / file_name
    where = "package face-recognition-models"
  if not path.is_file():
    raise FaceModelsMissing(f"{file_name} not found in {where} ({path}); install the extra "
                            f"[faces] ({EXTRA_HINT}) or give the folder holding it")
  return path


@functools.cache
def _dlib_model(kind: str):
  dlib = _import("dlib")
  if kind == "hog":
    return dlib.get_frontal_face_detector()
  path = str(model_path(kind))
  try:
    return {"cnn": dlib.cnn_face_detection_model_v1, "predictor68": dlib.shape_predictor,
            "descriptor": dlib.face_recognition_model_v1}[kind](path)
  except RuntimeError as e:
    raise FaceModelsMissing(f"{path}: not a dlib {kind} model ({e})") from e


def ensure_models(*kinds: str) -> None:
  """Loads dlib's models `kinds` ('hog', 'cnn', 'predictor68', 'descriptor') now, so that a
  missing package or model file fails before any long work (FaceModelsMissing)."""
  for kind in kinds:
    _dlib_model(kind)


@functools.cache
def _mtcnn():
  module = _import("mtcnn")
  return module.MTCNN()


def rgb_uint8(image, name: str) -> np.ndarray:
  """The image as a contiguous uint8 RGB [H, W, 3] (grey and RGBA converted); ValueError else."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"{name}: expected a uint8 image, got {image.dtype}")
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  if image.ndim == 2:
    image = np.repeat(image[:, :, None], 3, axis=2)
  if image.ndim != 3 or image.shape[2] not in (3, 4):
    raise ValueError(f"{name}: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got "
                     f"{image.shape}")
  return np.ascontiguousarray(image[:, :, :3])


def _choose(found: list[tuple[float, tuple, Any]], index: int | None, rule: str, name: str,
            what: str):
  """(entry, note) of `found` [(rank key, box, payload)] sorted best first by `rule`."""
  if not found:
    raise FaceNotFoundError(f"{name}: no face found ({what})")
  found = sorted(found, key=lambda f: -f[0])
  if index is not None and not 0 <= index < len(found):
    raise FaceNotFoundError(f"{name}: face index {index} asked for, {len(found)} found ({what})")
  chosen = found[index or 0]
  note = ""
  if len(found) > 1:
    boxes = "; ".join(f"#{i} box {list(f[1])}" for i, f in enumerate(found))
    note = (f"{len(found)} faces found ({boxes}), took #{index or 0} "
            f"({'by index' if index is not None else rule})")
  return chosen, note


def _dlib_faces(rgb: np.ndarray, detector: str, upsample: int):
  """[(score, (l, t, r, b), dlib.rectangle)] from the HOG or CNN detector."""
  if detector == "hog":
    rects, scores, _ = _dlib_model("hog").run(rgb, upsample, 0.0)
    pairs = list(zip(scores, rects))
  elif detector == "cnn":
    pairs = [(d.confidence, d.rect) for d in _dlib_model("cnn")(rgb, upsample)]
  else:
    raise ValueError(f"face detector must be one of {DETECTORS}, got {detector!r}")
  return [(float(s), (r.left(), r.top(), r.right(), r.bottom()), r) for s, r in pairs]


def landmarks68(image, name: str = "<image>", *, detector: str = "hog", upsample: int = 1,
                index: int | None = None) -> Face68:
  """dlib's 68 landmarks of the face in `image` (the detector's best-scored face, or `index`).

  Args:
    image: uint8 [H, W] grey or [H, W, 3] RGB (or RGBA).
    name: the image's name for messages.
    detector: 'hog' (fast, frontal) or 'cnn' (MMOD; slower, fewer false positives).
    upsample: times the image is doubled before detecting (1 finds faces down to ~40 px).
    index: take this face of the score-ordered list instead of the best one.
  Raises:
    FaceNotFoundError: no face (or no face `index`); FaceModelsMissing: dlib or a model file.
  """
  rgb = rgb_uint8(image, name)
  found = _dlib_faces(rgb, detector, upsample)
  what = f"dlib {detector} detector, upsampled {upsample}x, {rgb.shape[1]}x{rgb.shape[0]} image"
  (score, box, rect), note = _choose(found, index, "highest score", name, what)
  shape = _dlib_model("predictor68")(rgb, rect)
  points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
  return Face68(points, box, score, note)


def eyes_and_mouth(points68) -> np.ndarray:
  """float64 [3, 2]: the means of each eye's 6 contour points and of the two mouth corners."""
  p = np.asarray(points68, dtype=np.float64)
  return np.stack([p[_LEFT_EYE].mean(0), p[_RIGHT_EYE].mean(0), p[_MOUTH_CORNERS].mean(0)])


def detect_landmarks(image, name: str = "<image>") -> Detection:
  """Image-left eye, image-right eye and mouth centre from dlib's 68 landmarks (HOG detector).

  Returns:
    Detection(points float64 [3, 2], source).
  Raises:
    FaceNotFoundError: no face in the image (the message names `name`).
    ValueError: not a uint8 image of a supported shape.
  """
  face = landmarks68(image, name)
  return Detection(eyes_and_mouth(face.points), "dlib68 hog" + (f"; {face.note}"
                                                                if face.note else ""))


def mtcnn_five(image, name: str = "<image>", *, index: int | None = None) -> Face5:
  """MTCNN's 5 keypoints, as EG3D's batch_mtcnn.py takes them: the largest face (box width +
  height), kept only above confidence 0.9; or face `index` of that order.

  Raises:
    FaceNotFoundError: no face above the confidence; FaceModelsMissing: no mtcnn/TensorFlow.
  """
  rgb = rgb_uint8(image, name)
  results = _mtcnn().detect_faces(rgb)
  found = []
  for r in results:
    if r["confidence"] <= MTCNN_MIN_CONFIDENCE:
      continue
    x, y, w, h = (int(v) for v in r["box"])
    k = r["keypoints"]
    points = np.array([k[n] for n in ("left_eye", "right_eye", "nose", "mouth_left",
                                      "mouth_right")], dtype=np.float64)
    found.append((w + h, (x, y, x + w, y + h), (points, float(r["confidence"]))))
  what = (f"MTCNN, confidence > {MTCNN_MIN_CONFIDENCE}, {len(results)} candidate(s), "
          f"{rgb.shape[1]}x{rgb.shape[0]} image")
  (_, box, (points, confidence)), note = _choose(found, index, "largest", name, what)
  return Face5(points, box, confidence, note)


def descriptor(image, face: Face68, name: str = "<image>") -> np.ndarray:
  """dlib's 128-d face descriptor (ResNet, 99.38% on LFW) of `face` in `image`, float64 [128]."""
  rgb = rgb_uint8(image, name)
  dlib = _import("dlib")
  shape = dlib.full_object_detection(
      dlib.rectangle(*(int(v) for v in face.box)),
      [dlib.point(int(round(x)), int(round(y))) for x, y in face.points])
  return np.asarray(_dlib_model("descriptor").compute_face_descriptor(rgb, shape), np.float64)


def face_descriptor(image, name: str = "<image>") -> np.ndarray | None:
  """The descriptor of the best-scored face in `image`, or None when there is no face."""
  try:
    face = landmarks68(image, name)
  except FaceNotFoundError:
    return None
  return descriptor(image, face, name)


def identity_distance(a, b) -> float:
  """Euclidean distance of two descriptors; under SAME_PERSON_DISTANCE means the same person."""
  return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
