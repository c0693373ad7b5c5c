"""Long videos: face tracks (frldgt_jax/data/tracks.py).

References: the single-frame similarity of align.py (a track whose frames share one set of
landmarks must use exactly it) and transforms whose effect is known in closed form (a head shifted
by a known number of pixels).
"""
import numpy as np
import pytest

from frldgt_jax.data import align, tracks

SIZE = 64
FACE = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 90.0]])


def _frames(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 120, 140), dtype=np.uint8)


def test_tracks_split_where_the_head_jumps_and_where_the_face_is_lost():
  # 0-9 steady (sub-threshold jitter), 10-11 no face, 12-19 steady, 20-29 head 15 px right.
  rng = np.random.default_rng(1)
  marks = [FACE + rng.normal(0, 0.3, FACE.shape) for _ in range(10)] + [None, None]
  marks += [FACE] * 8 + [FACE + [15.0, 0.0]] * 10
  found, gaps = tracks.split_tracks(marks, SIZE)
  assert [(t.start, t.stop) for t in found] == [(0, 10), (12, 20), (20, 30)]
  assert [(g.start, g.stop) for g in gaps] == [(10, 12)]
  # One similarity per track, fitted on all its frames; equal frames give the one-frame fit.
  np.testing.assert_allclose(found[1].matrix, align.similarity_from_landmarks(FACE, SIZE),
                             atol=1e-9)
  shifted = align.similarity_from_landmarks(FACE + [15.0, 0.0], SIZE)
  np.testing.assert_allclose(found[2].matrix, shifted, atol=1e-9)
  # The mouth moving alone (speech) does not start a track.
  speech = [FACE + [[0, 0], [0, 0], [0, 6.0 * (i % 2)]] for i in range(6)]
  assert len(tracks.split_tracks(speech, SIZE)[0]) == 1
  with pytest.raises(ValueError):
    tracks.split_tracks(marks, SIZE, drift=0.0)


def test_align_video_warps_each_track_and_fills_gaps_without_motion():
  frames = _frames(8)
  marks = [None, FACE, FACE, None, FACE + [20.0, 0.0], FACE + [20.0, 0.0], None, None]
  out = tracks.align_video(frames, marks, SIZE)
  assert out.frames.shape == (8, SIZE, SIZE) and out.frames.dtype == np.uint8
  assert out.has_face.tolist() == [False, True, True, False, True, True, False, False]
  m1 = align.similarity_from_landmarks(FACE, SIZE)
  m2 = align.similarity_from_landmarks(FACE + [20.0, 0.0], SIZE)
  np.testing.assert_array_equal(out.frames[1], align.align(frames[1], m1, SIZE))
  np.testing.assert_array_equal(out.frames[5], align.align(frames[5], m2, SIZE))
  np.testing.assert_array_equal(out.frames[0], out.frames[1])  # leading gap: next frame
  np.testing.assert_array_equal(out.frames[3], out.frames[2])  # gap: last frame before it
  np.testing.assert_array_equal(out.frames[7], out.frames[5])
  assert tracks.gap_messages(out.gaps, fps=2.0, frame_numbers=np.arange(8) + 1) == [
      "no face in frames 1-1 (0.00-0.50 s, 1 frame)",
      "no face in frames 4-4 (1.50-2.00 s, 1 frame)",
      "no face in frames 7-8 (3.00-4.00 s, 2 frames)"]
  none = tracks.align_video(frames[:3], [None] * 3, SIZE)
  assert none.tracks == () and not none.has_face.any() and not none.frames.any()
