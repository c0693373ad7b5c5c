"""launch/common/faces.py: dlib and MTCNN on real photographs (extra [faces]).

Photos: scikit-image's astronaut (Eileen Collins, NASA, public domain) and matplotlib's Grace
Hopper (US Navy, public domain), both shipped inside installed packages.
"""
import numpy as np
import pytest
from PIL import Image

from launch.common import faces
from sat3d_jax import face_crop, face_shape
from tests.faces.test_face_crop import FIXTURES


@pytest.fixture(scope="module")
def astronaut():
  import skimage.data
  return skimage.data.astronaut()


@pytest.fixture(scope="module")
def hopper():
  import matplotlib.cbook
  with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
    return np.asarray(im.convert("RGB"))


def _gradient():
  y, x = np.mgrid[0:160, 0:200]
  return np.stack([x * 255 // 199, y * 255 // 159, np.full_like(x, 90)], -1).astype(np.uint8)


def test_mtcnn_gives_the_official_points(astronaut):
  """batch_mtcnn.py's points (the fixture) from the wrapper, on the same photo."""
  five = faces.mtcnn_five(astronaut, "astronaut")
  np.testing.assert_array_equal(five.points, np.loadtxt(FIXTURES / "astronaut_mtcnn5.txt"))
  assert five.score > 0.99 and five.note == ""


def test_dlib_picks_the_face_not_the_suit(astronaut):
  """HOG (upsampled once) also fires on the suit; the best score is the face, whose eyes
  MTCNN's points confirm; index 1 takes the other box and says so."""
  face = faces.landmarks68(astronaut, "astronaut")
  assert face.points.shape == (68, 2) and "2 faces found" in face.note
  official = np.loadtxt(FIXTURES / "astronaut_mtcnn5.txt")
  # Deep3DFaceRecon's 5 points from dlib's 68 vs MTCNN's: measured at most 3.5 px.
  assert np.abs(face_shape.five_points(face.points) - official).max() < 5
  other = faces.landmarks68(astronaut, "astronaut", index=1)
  assert other.box != face.box and "took #1 (by index)" in other.note
  with pytest.raises(faces.FaceNotFoundError, match="face index 5 asked for, 2 found"):
    faces.landmarks68(astronaut, "astronaut", index=5)


def test_detect_landmarks_contract(astronaut):
  """Eyes and mouth [3, 2] for the micro-expression alignment (and issue 20's videos)."""
  points, source = faces.detect_landmarks(astronaut, "astronaut")
  assert points.shape == (3, 2) and points.dtype == np.float64 and source.startswith("dlib68")
  official = np.loadtxt(FIXTURES / "astronaut_mtcnn5.txt")
  np.testing.assert_allclose(points[:2], official[:2], atol=4)
  np.testing.assert_allclose(points[2], official[3:].mean(0), atol=4)
  with pytest.raises(faces.FaceNotFoundError, match="gradient.png: no face found"):
    faces.detect_landmarks(_gradient(), "gradient.png")


def test_missing_model_names_the_file_and_the_extra(tmp_path, astronaut):
  faces.set_model_dir(tmp_path)
  try:
    with pytest.raises(faces.FaceModelsMissing,
                       match=r"shape_predictor_68_face_landmarks.dat not found in --face_models"
                             r".*\[faces\]"):
      faces.landmarks68(astronaut, "astronaut")
  finally:
    faces.set_model_dir(None)


def test_identity_same_person_and_not(astronaut, hopper):
  """dlib's descriptor distance: the astronaut against her rescaled and mirrored copies is under
  0.6 (same person), against Grace Hopper above it."""
  ref = faces.face_descriptor(astronaut, "astronaut")
  half = np.asarray(Image.fromarray(astronaut).resize((384, 384), Image.Resampling.LANCZOS))
  mirrored = np.ascontiguousarray(astronaut[:, ::-1])
  same = [faces.identity_distance(ref, faces.face_descriptor(im, n))
          for im, n in ((half, "rescaled"), (mirrored, "mirrored"))]
  other = faces.identity_distance(ref, faces.face_descriptor(hopper, "hopper"))
  print(f"identity distances: rescaled {same[0]:.3f}, mirrored {same[1]:.3f}, other {other:.3f}")
  assert max(same) < faces.SAME_PERSON_DISTANCE < other
  assert faces.face_descriptor(_gradient(), "gradient") is None


def test_crop_from_dlib_is_close_to_the_official_crop(astronaut):
  """The crop from dlib's 68 (extract_5p) vs from MTCNN's 5: same scale within 1%, the centre
  within 10 px of 512 (measured 0.08% and 7.6 px)."""
  official = face_crop.crop_in_the_wild(astronaut, np.loadtxt(FIXTURES / "astronaut_mtcnn5.txt"))
  ours = face_crop.crop_in_the_wild(astronaut, faces.landmarks68(astronaut).points)
  assert ours.plan.scale == pytest.approx(official.plan.scale, rel=0.01)
  centre = np.full(2, 255.5)
  photo = np.linalg.solve(official.matrix[:, :2], centre - official.matrix[:, 2])
  assert np.abs(ours.matrix[:, :2] @ photo + ours.matrix[:, 2] - centre).max() < 10


def test_evaluation_identity_counts_faces_not_found(astronaut, hopper):
  """sat3d_jax.evaluation's identity on real photos with dlib's descriptor: the mirrored
  astronaut is the same person, Grace Hopper is not, a face-free image is counted as not
  found (the mean is over the found ones)."""
  from sat3d_jax import evaluation
  images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), hopper, _gradient()]
  describe = lambda row, view: faces.face_descriptor(images[row], f"image {row}")
  d = evaluation.face_distances(describe, [1, 2, 3], 0, 1)
  assert d[0, 0] < 0.6 < d[1, 0] and np.isnan(d[2, 0])
  scores = evaluation.identity_scores(d.reshape(3, 1), faces.SAME_PERSON_DISTANCE)
  assert scores["identity_not_found"] == 1 and scores["identity_measured"] == 2
  assert scores["identity"] == pytest.approx(np.nanmean(d))
  assert scores["identity_same_share"] == 0.5
  assert evaluation.identity_scores(None, 0.6)["identity"] is None


def test_missing_package_names_the_extra(monkeypatch, astronaut):
  """Without dlib (or mtcnn) installed: one clear error naming the extra [faces]."""
  import sys
  monkeypatch.setitem(sys.modules, "dlib", None)
  monkeypatch.setitem(sys.modules, "mtcnn", None)
  faces.set_model_dir(None)  # clears the loaded models
  faces._mtcnn.cache_clear()
  try:
    with pytest.raises(faces.FaceModelsMissing, match=r"needs 'dlib', from the extra \[faces\]"):
      faces.landmarks68(astronaut, "astronaut")
    with pytest.raises(faces.FaceModelsMissing, match=r"needs 'mtcnn', from the extra \[faces\]"):
      faces.mtcnn_five(astronaut, "astronaut")
  finally:
    monkeypatch.undo()
    faces.set_model_dir(None)
    faces._mtcnn.cache_clear()
