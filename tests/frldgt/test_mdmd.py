"""MDMD, the MEGC 2020 baseline (frldgt_jax/spotting/mdmd.py): its per-frame feature against a
plain loop transcription of MDMD.m, cmd.m's contrast and thresholding on a hand-made signal, and
the whole method finding a planted motion burst in a small synthetic sequence with TV-L1."""
import math
import types

import cv2
import numpy as np
import pytest

from frldgt_jax.data import databases
from frldgt_jax.errors import InputError
from frldgt_jax.spotting import mdmd, metrics
from frldgt_jax.spotting.intervals import Interval


def _mdmd_m_feature(flow1, flow2, blocks=6):
  """MDMD.m's loop, line by line (1-based ranges become 0-based; find() is column-major)."""
  u, v, u2, v2 = flow1[..., 0], flow1[..., 1], flow2[..., 0], flow2[..., 1]
  with np.errstate(divide="ignore", invalid="ignore"):
    theta = np.rad2deg(np.arctan(u / v))
  height, width = u.shape[0] // blocks, u.shape[1] // blocks
  rset = []
  for row in range(blocks):
    for col in range(blocks):
      window = (slice(row * height, (row + 1) * height), slice(col * width, (col + 1) * width))
      t = theta[window].flatten(order="F")
      orientation = [np.flatnonzero((t >= 0) & (t < 90)), np.flatnonzero((t >= 90) & (t < 180)),
                     np.flatnonzero((t >= -180) & (t < -90)),
                     np.flatnonzero((t >= -90) & (t < 0))]
      o = [len(x) for x in orientation]
      i = o.index(max(o))
      m = o[i]
      r = [math.hypot(u[window].flatten(order="F")[w], v[window].flatten(order="F")[w])
           - math.hypot(u2[window].flatten(order="F")[w], v2[window].flatten(order="F")[w])
           for w in orientation[i]]
      r = sorted(r, reverse=True)[:int(m / 3 + 0.5)]
      rset.append(sum(r) / len(r) if r else 0.0)     # the documented deviation (MATLAB: NaN)
  rset = sorted(rset, reverse=True)[:int(blocks * blocks / 3 + 0.5)]
  return sum(rset) / len(rset)


def test_block_feature_matches_a_transcription_of_mdmd_m():
  rng = np.random.default_rng(0)
  for trial in range(4):
    flow1 = rng.normal(size=(40, 43, 2))
    flow2 = rng.normal(size=(40, 43, 2))
    if trial == 1:                          # v = 0 (theta = +-90), u = v = 0 (NaN), one block
      flow1[:6, :6, 1] = 0.0                # with a single pixel in its main direction
      flow1[:6, :3] = 0.0
      flow1[6:12, :7] = 0.0
      flow1[6, 0] = (1.0, 2.0)
    assert mdmd.block_feature(flow1, flow2) == pytest.approx(_mdmd_m_feature(flow1, flow2),
                                                             rel=1e-12)


def test_contrast_threshold_and_runs_by_hand():
  """k = 2 (m = 1): c(i) = f(i) - (f(i-1) + f(i+1)) / 2 on frames 3..12 of 20; a bump at frames
  8..10 over a flat signal is the only run above mean + 0.01 (max - mean) = 0.01."""
  f = np.zeros(20)
  f[8:11] = (2.0, 3.0, 2.0)
  c = mdmd.contrast(f, 2)
  assert np.isnan(c[:3]).all() and np.isnan(c[13:]).all()
  np.testing.assert_allclose(c[3:13], [0, 0, 0, 0, -1, 0.5, 1, 0.5, -1, 0])
  out = mdmd.intervals_from_contrast(c, "micro", mdmd.KindParams(2, 2, 5),
                                     frame_numbers=np.arange(20) + 1)
  assert out == [Interval(9, 11, "micro", apex=10)]
  assert mdmd.intervals_from_contrast(c, "micro", mdmd.KindParams(2, 4, 5)) == []


def test_parameters():
  assert mdmd.auto_k(400, 39) == 39 and mdmd.auto_k(200, 39) == 20   # MATLAB round(19.5)
  assert mdmd.params_for_fps(200)["micro"].k == mdmd.dataset_params("samm_lv")["micro"].k
  assert mdmd.params_for_fps(200)["macro"].k == mdmd.dataset_params("samm_lv")["macro"].k
  assert mdmd.params_for_fps(30) == mdmd.dataset_params("casme2_lv")
  assert set(mdmd.DATASET_PARAMS) == set(databases.LONG_VIDEO_NAMES)
  for name in databases.LONG_VIDEO_NAMES:     # the frame rate the parameters were made for
    assert mdmd.params_for_fps(databases.get_long_video(name).fps)["micro"].k == \
        mdmd.dataset_params(name)["micro"].k
  with pytest.raises(InputError, match="no parameters for dataset 'smic'"):
    mdmd.dataset_params("smic")
  with pytest.raises(InputError, match="at least 6 frames"):
    mdmd.spot(np.zeros((5, 32, 32), np.uint8), mdmd.dataset_params("casme2_lv"))
  with pytest.raises(InputError, match=r"expected aligned grayscale faces \[T, S, S\]"):
    mdmd.spot(np.zeros((50, 32, 32, 3), np.uint8), mdmd.dataset_params("casme2_lv"))


def _burst_video(frames=64, burst=(24, 31), size=48, seed=0):
  """A still textured face with sensor noise; over `burst` it moves by up to (2, 1) px and back."""
  rng = np.random.default_rng(seed)
  base = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
  base = (base - base.min()) / (base.max() - base.min())
  shift = np.zeros(frames)
  n = burst[1] - burst[0] + 1
  shift[burst[0]:burst[1] + 1] = 2.0 * np.sin(np.pi * (np.arange(n) + 0.5) / n)
  out = []
  for s in shift:
    moved = cv2.warpAffine(base, np.float32([[1, 0, s], [0, 1, s / 2]]), (size, size),
                           borderMode=cv2.BORDER_REFLECT)
    out.append(np.clip(moved * 200 + 20 + rng.normal(0, 1.0, moved.shape), 0, 255))
  return np.stack(out).astype(np.uint8)


def test_mdmd_finds_a_planted_burst():
  """TV-L1 MDMD (over a one-video dataset) with k = 5 spots the planted 8-frame movement at
  IoU >= 0.5 and puts its largest contrast inside it; the still stretches far from it stay
  quiet."""
  frames = _burst_video()
  video = types.SimpleNamespace(subject="s1", name="v1", frames=frames,
                                frame_numbers=np.arange(len(frames)) + 1)
  found = mdmd.spot_videos([video], {"micro": mdmd.KindParams(5, 4, 12)}, kinds=("micro",),
                           progress=False)[("s1", "v1")]
  truth = Interval(25, 32, "micro")
  best = max(found, key=lambda iv: metrics.iou(iv, truth))
  assert metrics.iou(best, truth) >= 0.5 and 25 <= best.apex <= 32
  assert all(iv.offset >= 15 for iv in found)
