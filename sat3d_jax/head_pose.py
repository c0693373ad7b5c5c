"""Head pose from 68 landmarks of an EG3D crop, and the EG3D camera label it implies.

EG3D's in-the-wild camera comes from Deep3DFaceRecon's 3DMM fit (its `angle` and `trans`),
turned into a label by dataset_preprocessing/ffhq/3dface2idr_mat.py and preprocess_face_cameras.py
(mode 'orig'). The 3DMM network's weights are not available here, so the rotation and translation
are estimated instead from dlib's 68 landmarks: a perspective-n-point fit (OpenCV's iterative
solvePnP) of the standard face's 68 points (face_shape.MEAN_SHAPE_68) in Deep3DFaceRecon's camera
(10 model units from the face, EG3D's focal length 2985.29 / 700 of the crop side), then the same
conversion as the official scripts:
  R = rotation(angles)^T (bfm.compute_rotation), c = -R (trans - (0, 0, 10)), c *= 0.27,
  c += (0, 0.006, 0.161), cam2world = [R diag(1, -1, -1) | c / |c| * 2.7], intrinsics
  [[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]].
Angles follow Deep3DFaceRecon: the face is rotated by Rz(roll) Ry(yaw) Rx(pitch) (x right, y up,
z to the camera), so a camera orbiting to yaw offset +a (EG3D's orbit_labels) sees head yaw -a.
tests/sat3d/test_head_pose.py projects the mean shape through EG3D cameras (with 1 px noise) and
measures the angular error of the recovered cameras.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sat3d_jax import face_shape

__all__ = ["CAMERA_DISTANCE", "FOCAL", "HeadPose", "camera_label", "estimate_pose", "rotation",
           "angles_of"]

FOCAL = 2985.29 / 700          # preprocess_face_cameras.fix_intrinsics, in crop sides
CAMERA_DISTANCE = 10.0         # Deep3DFaceRecon's camera, in model units from the origin
WORLD_SCALE = 0.27             # 3dface2idr_mat.py: model units -> EG3D world units
CAMERA_OFFSET = (0.0, 0.006, 0.161)
RADIUS = 2.7                   # fix_pose_orig
_FLIP = np.diag([1.0, -1.0, -1.0])


def rotation(angles) -> np.ndarray:
  """Rz(roll) @ Ry(yaw) @ Rx(pitch) for angles (pitch, yaw, roll) radians: [3, 3] taking the
  face's model coordinates to camera-aligned ones (bfm.compute_rotation transposed)."""
  x, y, z = (float(a) for a in angles)
  rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
  ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
  rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
  return rz @ ry @ rx


def angles_of(rot) -> np.ndarray:
  """(pitch, yaw, roll) radians with rotation(angles) == rot (yaw in [-pi/2, pi/2])."""
  r = np.asarray(rot, np.float64)
  yaw = math.asin(max(-1.0, min(1.0, -r[2, 0])))
  pitch = math.atan2(r[2, 1], r[2, 2])
  roll = math.atan2(r[1, 0], r[0, 0])
  return np.array([pitch, yaw, roll])


class HeadPose(NamedTuple):
  """angles: (pitch, yaw, roll) radians (Deep3DFaceRecon's); rot: [3, 3] rotation(angles);
  trans: [3] the face's translation in model units (Deep3DFaceRecon's `trans`); rms_px: the
  fit's root-mean-square landmark residual in crop pixels."""
  angles: np.ndarray
  rot: np.ndarray
  trans: np.ndarray
  rms_px: float


def intrinsics_px(size: int) -> np.ndarray:
  """The crop's pinhole matrix in pixels (pixel centres at integers, as EG3D's ray sampler)."""
  f, c = FOCAL * size, size / 2 - 0.5
  return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def estimate_pose(points68, size: int) -> HeadPose:
  """Head pose of the face whose 68 landmarks (iBUG order, crop pixels, y down) are `points68`
  in an EG3D-style crop of side `size` (sat3d_jax.face_crop's, any resolution).

  Raises:
    ValueError: not 68 finite points, or a fit that puts the face behind the camera.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  image = np.asarray(points68, np.float64)
  if image.shape != (68, 2) or not np.all(np.isfinite(image)):
    raise ValueError(f"expected 68 finite (x, y) landmarks, got shape {image.shape}")
  model = face_shape.MEAN_SHAPE_68.astype(np.float64)
  k = intrinsics_px(size)
  # Start from the frontal pose at the official distance; the iterative fit refines it.
  rvec0 = cv2.Rodrigues(_FLIP)[0]
  tvec0 = np.array([[0.0], [0.0], [CAMERA_DISTANCE]])
  ok, rvec, tvec = cv2.solvePnP(model, image, k, None, rvec0, tvec0, useExtrinsicGuess=True,
                                flags=cv2.SOLVEPNP_ITERATIVE)
  if not ok or tvec[2, 0] <= 0:
    raise ValueError("head pose: the landmark fit failed (face behind the camera)")
  rot_cv = cv2.Rodrigues(rvec)[0]
  projected = cv2.projectPoints(model, rvec, tvec, k, None)[0].reshape(-1, 2)
  rms = float(np.sqrt(np.mean(np.sum((projected - image) ** 2, axis=1))))
  # OpenCV camera (x right, y down, z forward) = diag(1, -1, -1) Deep3DFaceRecon's camera
  # space (y up, z to the viewer) + (0, 0, 10).
  rot = _FLIP @ rot_cv
  trans = _FLIP @ (tvec[:, 0] - np.array([0.0, 0.0, CAMERA_DISTANCE]))
  return HeadPose(angles_of(rot), rot, trans, rms)


def camera_label(pose: HeadPose) -> np.ndarray:
  """EG3D's 25-value camera label (cam2world 4x4 row-major, normalised intrinsics) of a head
  pose, computed as 3dface2idr_mat.py + preprocess_face_cameras.py (mode 'orig') do."""
  r = np.asarray(pose.rot, np.float64).T        # compute_rotation(angle)[0]
  trans = np.asarray(pose.trans, np.float64).copy()
  trans[2] += -CAMERA_DISTANCE
  c = -r @ trans * WORLD_SCALE + np.asarray(CAMERA_OFFSET)
  cam2world = np.eye(4)
  cam2world[:3, :3] = r @ _FLIP
  cam2world[:3, 3] = c / np.linalg.norm(c) * RADIUS
  intrinsics = np.array([[FOCAL, 0.0, 0.5], [0.0, FOCAL, 0.5], [0.0, 0.0, 1.0]])
  return np.concatenate([cam2world.reshape(-1), intrinsics.reshape(-1)])
