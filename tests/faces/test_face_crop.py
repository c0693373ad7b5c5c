"""EG3D's in-the-wild crop (sat3d_jax/face_crop.py) against the official scripts' own output.

tests/fixtures/faces/README.md says how the fixture was made: EG3D's batch_mtcnn.py and
crop_images_in_the_wild.py, unmodified, on scikit-image's astronaut photograph.
"""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sat3d_jax import face_crop, face_shape

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def astronaut():
  import skimage.data
  return skimage.data.astronaut()


@pytest.fixture(scope="module")
def official():
  points = np.loadtxt(FIXTURES / "astronaut_mtcnn5.txt")
  return points, np.asarray(Image.open(FIXTURES / "astronaut_eg3d_crop512.png").convert("RGB"))


def test_crop_matches_the_official_scripts(astronaut, official):
  """Same photo and points: measured max 1 grey level, on 0.02% of the values."""
  points, crop = official
  ours = face_crop.crop_in_the_wild(astronaut, points, 512, "astronaut")
  diff = np.abs(ours.image.astype(np.int64) - crop)
  assert ours.image.shape == crop.shape == (512, 512, 3)
  assert diff.max() <= 2 and (diff > 0).mean() < 0.005, (diff.max(), (diff > 0).mean())


def _official_style(photo: np.ndarray, points, size: int) -> np.ndarray:
  """crop_images_in_the_wild.py's steps written out literally: the whole photo resized, then
  the 1024 window (zeros outside), its centre 700, Lanczos to `size`."""
  plan = face_crop.crop_plan(points, (photo.shape[1], photo.shape[0]), size)
  big = Image.fromarray(photo).resize(plan.resized, resample=Image.Resampling.BICUBIC)
  window = big.crop((plan.left, plan.up, plan.left + 1024, plan.up + 1024))
  return np.asarray(window.crop((162, 162, 862, 862)).resize(
      (size, size), resample=Image.Resampling.LANCZOS))


def test_partial_resize_equals_the_whole_resize_also_at_the_border(astronaut, official):
  """The crop resizes only what it shows; a face near the photo's corner (the window leaves
  the photo) and another output size give what the literal recipe gives."""
  points, _ = official
  corner = np.ascontiguousarray(astronaut[90:300, 180:420])
  moved = points - [180, 90]
  for photo, pts, size in ((corner, moved, 128), (astronaut, points, 200)):
    ours = face_crop.crop_in_the_wild(photo, pts, size).image.astype(np.int64)
    diff = np.abs(ours - _official_style(photo, pts, size))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
  cut = face_crop.crop_in_the_wild(corner, moved, 128).image
  assert (cut[:10] == 0).all() and (cut[:, :10] == 0).all()  # outside the photo: black


def test_matrix_maps_an_exact_projection_onto_the_standard_face():
  """Points that ARE an orthographic view of the standard face (scale 40 px per unit): the
  crop matrix puts them where the recipe says, 300 px per unit at 1024 -> 700 -> size, around
  the 3D origin. The recipe's half pixels (y flipped as H - 1 - y, the window placed at
  t * k) leave the origin 0.5 k resized pixels right of and above the window's centre; its
  int() truncations move it by up to one more."""
  size, scale, origin = 512, 40.0, np.array([210.0, 140.0])
  std = face_shape.STANDARD_FIVE.astype(np.float64)
  photo_points = origin + scale * std[:, :2] * [1, -1]
  plan = face_crop.crop_plan(photo_points, (400, 300), size)
  assert plan.scale == pytest.approx(300 / scale, rel=1e-6)
  matrix = plan.matrix((400, 300))
  mapped = photo_points @ matrix[:, :2].T + matrix[:, 2]
  centre = (size / 2 - 0.5) + np.array([0.5, -0.5]) * plan.scale * size / 700
  expected = centre + std[:, :2] * [1, -1] * 300 * size / 700
  np.testing.assert_allclose(mapped, expected, atol=1.05 * size / 700)


def test_pos_recovers_scale_and_translation():
  rng = np.random.default_rng(0)
  x3 = rng.normal(size=(7, 3))
  angle = 0.3
  rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0]])
  t, s = face_crop.pos_fit(2.5 * x3 @ rot.T + [10.0, -4.0], x3)
  np.testing.assert_allclose(t, [10.0, -4.0], atol=1e-9)
  assert s == pytest.approx(2.5, rel=1e-9)


def test_68_landmarks_and_bad_points(astronaut):
  lm68 = face_shape.MEAN_SHAPE_68[:, :2] * [100, -100] + [256, 256]
  a = face_crop.crop_in_the_wild(astronaut, lm68, 64)
  b = face_crop.crop_in_the_wild(astronaut, face_shape.five_points(lm68), 64)
  np.testing.assert_array_equal(a.image, b.image)
  five = face_shape.five_points(lm68)
  with pytest.raises(ValueError, match="image-left"):
    face_crop.crop_in_the_wild(astronaut, five[[1, 0, 2, 3, 4]], 64, "photo.png")
  with pytest.raises(ValueError, match="photo.png: expected 5"):
    face_crop.crop_in_the_wild(astronaut, five[:3], 64, "photo.png")


def test_five_points_are_deep3dfacerecons():
  """load_lm3d's numbers as its docstrings and many ports print them."""
  np.testing.assert_allclose(face_shape.STANDARD_FIVE, [
      [-0.31148657, 0.29036078, 0.13377953], [0.30979887, 0.28972036, 0.13179526],
      [0.0032535, -0.04617932, 0.55244243], [-0.25216928, -0.38133916, 0.22405732],
      [0.2484662, -0.38128236, 0.22235769]], atol=1e-7)


def test_geometry_modules_need_no_other_package():
  """sat3d_jax's face geometry takes landmarks: it imports neither frldgt_jax, launch, dlib nor
  mtcnn."""
  code = ("import sys, sat3d_jax.face_crop, sat3d_jax.head_pose; print(sorted({m.split('.')[0] "
          "for m in sys.modules} & {'frldgt_jax', 'launch', 'dlib', 'mtcnn'}))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                        cwd=pathlib.Path(__file__).resolve().parents[2])
  assert done.stdout.strip() == "[]", done.stdout
