"""Head pose -> EG3D camera (sat3d_jax/head_pose.py) on the mean shape seen by EG3D cameras.

The reference is independent of the estimator: EG3D's own look-at cameras (sat3d_jax.eg3d.camera,
radius 2.7 around the world origin, plus a roll about the view axis) project the standard face's
68 points placed where 3dface2idr_mat.py puts the 3DMM (world = 0.27 x model + (0, 0.006,
0.161)); 1 px Gaussian noise is added; the label estimated from those points must give back the
camera. `python -m tests.faces.test_head_pose` prints the error table of the README.
"""
import math

import numpy as np
import pytest

from sat3d_jax import face_shape, head_pose
from sat3d_jax.eg3d import camera as camera_lib

SIZE = 512
YAWS = (-0.6, -0.3, 0.0, 0.3, 0.6)
PITCHES = (-0.3, 0.0, 0.3)
ROLLS = (-0.3, 0.0, 0.3)


def true_camera(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """cam2world [4, 4]: EG3D's look-at camera at yaw/pitch offsets from frontal, rolled."""
  pose = np.asarray(camera_lib.lookat_pose(math.pi / 2 + yaw, math.pi / 2 + pitch,
                                           (0.0, 0.0, 0.0), 2.7), np.float64)
  c, s = math.cos(roll), math.sin(roll)
  pose[:3, :3] = pose[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
  return pose


def project(cam2world: np.ndarray, rng: np.random.Generator, noise_px: float) -> np.ndarray:
  world = (face_shape.MEAN_SHAPE_68.astype(np.float64) * head_pose.WORLD_SCALE
           + np.asarray(head_pose.CAMERA_OFFSET))
  w2c = np.linalg.inv(cam2world)
  cam = world @ w2c[:3, :3].T + w2c[:3, 3]
  uv = cam @ head_pose.intrinsics_px(SIZE).T
  return uv[:, :2] / uv[:, 2:] + rng.normal(0.0, noise_px, (68, 2))


def angle_errors(yaw, pitch, roll, rng, noise_px=1.0):
  """(rotation error, camera position error as an angle seen from the origin), degrees."""
  truth = true_camera(yaw, pitch, roll)
  label = head_pose.camera_label(head_pose.estimate_pose(project(truth, rng, noise_px), SIZE))
  est = label[:16].reshape(4, 4)
  rel = est[:3, :3].T @ truth[:3, :3]
  rot_err = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rel) - 1) / 2))))
  a, b = est[:3, 3], truth[:3, 3]
  pos_err = math.degrees(math.acos(min(1.0, a @ b / np.linalg.norm(a) / np.linalg.norm(b))))
  return rot_err, pos_err, label


def test_exact_points_give_the_exact_camera():
  rot_err, pos_err, label = angle_errors(0.3, -0.2, 0.1, np.random.default_rng(0), 0.0)
  assert rot_err < 1e-3 and pos_err < 1e-3
  np.testing.assert_allclose(label[16:], [head_pose.FOCAL, 0, 0.5, 0, head_pose.FOCAL, 0.5,
                                          0, 0, 1])


def test_frontal_label_matches_eg3d_frontal_camera():
  """The frontal head gives the official frontal camera (on +z, looking at the origin)."""
  rot_err, _, label = angle_errors(0.0, 0.0, 0.0, np.random.default_rng(0), 0.0)
  frontal = np.asarray(camera_lib.lookat_pose(math.pi / 2, math.pi / 2), np.float64)
  np.testing.assert_allclose(label[:16].reshape(4, 4)[:3, :3], frontal[:3, :3], atol=1e-6)


@pytest.mark.parametrize("yaw", YAWS)
def test_noisy_landmarks_recover_the_camera(yaw):
  rng = np.random.default_rng(int(yaw * 10) + 100)
  errors = np.array([angle_errors(yaw, p, r, rng)[:2] for p in PITCHES for r in ROLLS])
  assert errors[:, 0].max() < 3.0, errors
  assert errors[:, 1].max() < 3.0, errors


def test_angles_round_trip():
  angles = np.array([0.2, -0.4, 0.3])
  np.testing.assert_allclose(head_pose.angles_of(head_pose.rotation(angles)), angles)


def error_table(trials: int = 20) -> str:
  """Markdown table: mean / max rotation error (degrees) per yaw and pitch over rolls, trials."""
  rng = np.random.default_rng(0)
  lines = ["| yaw \\ pitch | " + " | ".join(f"{math.degrees(p):+.0f} deg" for p in PITCHES)
           + " |", "|---" * (len(PITCHES) + 1) + "|"]
  for yaw in YAWS:
    cells = []
    for pitch in PITCHES:
      errs = [angle_errors(yaw, pitch, r, rng)[0] for r in ROLLS for _ in range(trials)]
      cells.append(f"{np.mean(errs):.2f} / {np.max(errs):.2f}")
    lines.append(f"| {math.degrees(yaw):+.0f} deg | " + " | ".join(cells) + " |")
  return "\n".join(lines)


if __name__ == "__main__":
  print(error_table())
