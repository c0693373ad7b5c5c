"""A face photograph made ready for EG3D: the face found (launch/common/faces.py), cut out with
EG3D's in-the-wild recipe (sat3d_jax/face_crop.py) and, if asked, its camera estimated from the
head pose (sat3d_jax/head_pose.py). Shared by launch/invert.py and the studio.
"""
from __future__ import annotations

import numpy as np

from launch.common import faces
from sat3d_jax import face_crop, head_pose
from sat3d_jax.errors import InputError

DETECTORS = ("mtcnn", "dlib")


def five_points(photo: np.ndarray, name: str, detector: str = "mtcnn",
                index: int | None = None) -> tuple[np.ndarray, str]:
  """(the 5 points [5, 2] EG3D's crop takes, where they came from) of the chosen face.

  Raises faces.FaceNotFoundError (an InputError naming the photo) when there is no face.
  """
  if detector == "mtcnn":
    found, source = faces.mtcnn_five(photo, name, index=index), "mtcnn"
  elif detector == "dlib":
    found, source = faces.landmarks68(photo, name, index=index), "dlib68 (extract_5p)"
  else:
    raise ValueError(f"face detector must be one of {DETECTORS}, got {detector!r}")
  if found.note:
    source += f"; {found.note}"
  return found.points, source


def crop(photo: np.ndarray, points, size: int, name: str) -> face_crop.FaceCrop:
  """EG3D's in-the-wild crop at `size`; landmarks of the wrong shape or order are an
  InputError."""
  try:
    return face_crop.crop_in_the_wild(photo, points, size, name)
  except ValueError as e:
    raise InputError(str(e)) from e


def pose_camera(crop_image: np.ndarray, name: str) -> dict:
  """The head pose of the face in an EG3D-style crop and its EG3D camera label.

  Fit it on EG3D's own 512 crop (`crop(photo, points, face_crop.OUTPUT_SIZE, name)`): the pose
  fit assumes the crop's camera, and landmarks at a generator's lower resolution are coarser.
  Returns {'head_pose_degrees', 'head_pose_rms_px', 'pose_camera' (25 floats)}; an InputError
  when dlib finds no face there.
  """
  try:
    face = faces.landmarks68(crop_image, f"{name} (crop)")
  except faces.FaceNotFoundError as e:
    raise InputError(f"{e}: no head pose") from e
  pose = head_pose.estimate_pose(face.points, crop_image.shape[0])
  return {"head_pose_degrees": dict(zip(("pitch", "yaw", "roll"),
                                        np.degrees(pose.angles).round(2).tolist())),
          "head_pose_rms_px": round(pose.rms_px, 3),
          "pose_camera": head_pose.camera_label(pose).round(6).tolist()}
