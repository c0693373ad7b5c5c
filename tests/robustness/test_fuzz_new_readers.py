"""Fuzzing the readers that prediction, the studio and the face wrapper added: users' videos and
frame folders (frldgt_jax/video.py, launch/predict.py's input), the studio's photo uploads
(launch/studio_app/uploads.py) and --face_models folders (launch/common/faces.py)."""
import io
import pathlib
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from frldgt_jax import video
from frldgt_jax.errors import InputError as FrlInputError
from launch.common import faces
from launch.studio_app import uploads
from sat3d_jax.errors import InputError as Sat3dInputError
from tests.robustness import harness
from tests.robustness.test_fuzz_images import PIL_DECODE, images


def _valid_clip(clip):
  assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 3 and len(clip.frames) >= 1
  assert len(clip.frame_numbers) == len(clip.frames)


def _valid_rgb(rgb):
  assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
  assert rgb.shape[0] * rgb.shape[1] <= uploads.MAX_PIXELS


# A frame folder's frames are read by the datasets' frame reader, which names the decoder's error.
CLIPS = harness.Reader("videos and frame folders (predict.py)", video.read_clip, FrlInputError,
                       _valid_clip, PIL_DECODE)
UPLOADS = harness.Reader("studio photo uploads", lambda p: uploads.read_photo(p, 2 << 20),
                         Sat3dInputError, _valid_rgb)


def _models(path: pathlib.Path):
  faces.set_model_dir(path)
  try:
    faces.ensure_models("predictor68", "descriptor", "cnn")
  finally:
    faces.set_model_dir(None)


# dlib's loaders raise RuntimeError for a file they cannot deserialize; faces.py names it.
FACE_MODELS = harness.Reader("--face_models folders", _models, faces.FaceModelsMissing,
                             wrapped=(RuntimeError,))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
  frames = (np.random.RandomState(0).rand(6, 32, 48) * 255).astype(np.uint8)
  path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
  video.write_video(path, frames, 10)
  return path.read_bytes()


@harness.fuzz(25)
@given(data=st.data())
def test_mutated_videos(recorder, mp4, data):
  recorder.check_bytes(CLIPS, data.draw(harness.mutated(mp4)), "clip.mp4")


@pytest.mark.parametrize("name,content", [
    ("empty.mp4", b""), ("text.mov", b"not a video\n" * 50), ("clip.txt", b"x"),
    ("png.avi", None)])
def test_special_videos(recorder, name, content):
  if content is None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    content = out.getvalue()
  recorder.check_bytes(CLIPS, content, name)


_FRAME_NAMES = ("img{}.jpg", "reg_img{}.jpg", "006_{:05d}.jpg", "image{:06d}.bmp", "x{}.png")


@harness.fuzz(20)
@given(frames=st.lists(st.tuples(st.sampled_from(_FRAME_NAMES), st.integers(0, 99999),
                                 images(), st.booleans()), max_size=5), data=st.data())
def test_frame_folders(recorder, tmp_path_factory, frames, data):
  sandbox = tmp_path_factory.mktemp("frames")
  folder = sandbox / "clip"
  folder.mkdir()
  for pattern, number, (raw, _, _), mutate in frames:
    (folder / pattern.format(number)).write_bytes(data.draw(harness.mutated(raw)) if mutate
                                                  else raw)
  recorder.check(CLIPS, folder, sandbox)


@harness.fuzz(40)
@given(image=images(), data=st.data(), mutate=st.booleans())
def test_studio_uploads(recorder, image, data, mutate):
  raw, name, _ = image
  recorder.check_bytes(UPLOADS, data.draw(harness.mutated(raw)) if mutate else raw, name)


@harness.fuzz(15)
@given(present=st.lists(st.sampled_from(sorted(faces.MODEL_FILES)), unique=True),
       content=st.binary(max_size=256), data=st.data())
def test_face_model_folders(recorder, tmp_path_factory, present, content, data):
  """Folders holding some of dlib's model files, each a mutated prefix of the real file or
  random bytes (the real ones load: test_faces)."""
  sandbox = tmp_path_factory.mktemp("models")
  for kind in present:
    if data.draw(st.booleans()):
      with open(faces.model_path(kind), "rb") as f:
        prefix = f.read(4096)
      content = data.draw(harness.mutated(prefix))
    (sandbox / faces.MODEL_FILES[kind]).write_bytes(content)
  recorder.check(FACE_MODELS, sandbox, sandbox)


def test_real_face_models_folder_loads(tmp_path):
  """The package's own model files, copied into a --face_models folder, load."""
  for kind in ("predictor68", "descriptor", "cnn"):
    shutil.copy(faces.model_path(kind), tmp_path / faces.MODEL_FILES[kind])
  _models(tmp_path)
