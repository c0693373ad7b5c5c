"""Apex spotting (frldgt_jax/apex.py) on generated clips written as MP4 and read back.

The clips carry every nuisance at its default (head drift, flicker, sensor noise, JPEG) and blinks
in half of them; each clip is aligned with its true onset landmarks (so the test does not depend
on the face detector) and its spotted apex is compared with the generator's true apex.
"""
import json

import numpy as np
import pytest

from frldgt_jax import apex as apex_lib
from frldgt_jax import video
from frldgt_jax.data import align, synthetic


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("apex_corpus")
  config = synthetic.CorpusConfig(subjects=2, clips_per_subject=5, seed=1, databases=("casme2",),
                                  extra_clips=False, cropped=False, blink_rate=0.5)
  synthetic.generate_corpus(root, config)
  return root, json.loads((root / "manifest.json").read_text())


def test_spotted_apex_of_mp4_clips_with_distractors(corpus, tmp_path):
  root, manifest = corpus
  clips = manifest["clips"]
  assert len(clips) >= 10
  assert sum("blink" in c["distractors"] for c in clips) >= 2
  assert all("noise_sigma" in c["distractors"] and "flicker" in c["distractors"] for c in clips)
  errors = []
  for c in clips:
    frames = video.read_frame_folder(root / c["raw_dir"]).frames
    path = tmp_path / f"{c['sample']}.mp4"
    video.write_video(path, frames, fps=25)
    clip = video.read_video(path)
    assert clip.frames.shape == frames.shape
    matrix = align.similarity_from_landmarks(np.asarray(c["landmarks_onset"]), 128)
    aligned = np.stack([align.align(f, matrix, 128) for f in clip.frames])
    onset = c["onset_index"] - c["first_frame"]
    spotted, curve = apex_lib.spot_apex(aligned, onset)
    assert curve.shape == (len(frames),) and spotted > onset
    errors.append(abs(spotted - (c["apex_index"] - c["first_frame"])))
  errors = np.asarray(errors)
  assert np.median(errors) <= 1, errors
  assert np.mean(errors <= 2) >= 0.9, errors


def test_a_blink_alone_is_not_spotted_as_motion():
  """Closing the eyes changes only the masked eye boxes: the motion energy stays zero."""
  size = 64
  face = np.full((size, size), 120, np.uint8)
  frames = np.repeat(face[None], 5, axis=0)
  mask = apex_lib.motion_mask(size)
  (lx, ly), _, _ = align.TEMPLATE
  y, x = int(ly * size), int(lx * size)
  assert not mask[y, x]  # the eye centre is masked
  frames[2, y - 2:y + 3, x - 3:x + 4] = 30      # an eyelid closing over the eye
  assert np.allclose(apex_lib.motion_curve(frames, 0), 0.0, atol=1e-4)
  frames[3, int(0.78 * size), 20:44] = 200      # the mouth moving is motion
  assert apex_lib.motion_curve(frames, 0)[3] > 1e-3


def test_unreadable_inputs_are_user_errors(tmp_path):
  from frldgt_jax.errors import InputError
  bad = tmp_path / "clip.mp4"
  bad.write_bytes(b"not a video")
  with pytest.raises(InputError, match="clip.mp4"):
    video.read_clip(bad)
  with pytest.raises(InputError, match="neither a frame folder nor a video"):
    video.read_clip(tmp_path / "notes.txt")
  (tmp_path / "frames").mkdir()
  with pytest.raises(InputError, match="fewer than 2 frames"):
    video.read_clip(tmp_path / "frames")
