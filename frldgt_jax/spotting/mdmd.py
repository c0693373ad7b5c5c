"""MDMD, the MEGC 2020 spotting baseline, re-implemented from its official MATLAB code.

Main Directional Maximal Difference analysis (Wang et al., Neurocomputing 2017) as the MEGC 2020
baseline runs it (He et al., FG 2020; HeyingGithub/Baseline-project-for-MEGC2020_spotting:
MDMD_codes/MDMD.m, cmd.m, RLOF_fun.m; MDMD_results/MDMDmat_to_txt.m, evaluation_all_p.py). For
each expression kind separately, with its own k:

1. Frame i's feature (MDMD.m): dense optical flow F(i-k)->F(i) (u, v) and F(i-k)->F(i+k)
   (u2, v2); direction theta = atan(u / v) in degrees (atan, not atan2, as MDMD.m writes it);
   the face is cut into a 6 x 6 grid of equal blocks (leftover rows/columns dropped); in each
   block the direction bin among [0, 90), [90, 180), [-180, -90), [-90, 0) holding the most
   pixels is the main direction; over its pixels, |(u, v)| - |(u2, v2)|, the largest third
   (MATLAB round(m / 3) of them) averaged; the largest third (round(36 / 3) = 12) of the block
   values averaged is the frame's feature.
2. Contrast (cmd.m): with m = k - 1, c(i) = f(i) - (f(i - m) + f(i + m)) / 2, over the frames
   cmd.m visits (its index range stops 2k frames before the last feature: kept as is).
3. Threshold (cmd.m): frames with c > mean(c) + p (max(c) - mean(c)), p = 0.01 (the baseline's
   choice, README), are expression frames; runs of them are intervals (MDMDmat_to_txt.m), kept
   when their length lies in the kind's range (evaluation_all_p.py).
4. k halves (MATLAB round) while the video is shorter than 6k frames (cmd.m's auto_k).

Deviations (docs/spotting_metric.md lists them with reasons): optical flow is TV-L1
(scikit-image, frldgt_jax/motion.py) instead of RLOF's MEX binary; faces are the project's
aligned crops, not the baseline's Dlib crops; a block with fewer than two pixels in its main
direction contributes 0 where MATLAB would give NaN (which would silence the whole video); every
interval gets an apex (the frame of largest contrast in it) that MDMD does not define; a run of
expression frames touching the end of the scored range is kept (MDMDmat_to_txt.m drops it, but
its range never reaches the last frame, so no run does). Parameters for CAS(ME)^3 (not in the
baseline) are CAS(ME)^2's, both being 30 fps; `params_for_fps` scales CAS(ME)^2's to any rate
(which gives SAMM's k exactly).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from frldgt_jax import motion
from frldgt_jax.errors import InputError
from frldgt_jax.spotting.intervals import KINDS, Interval

BLOCKS = 6                # cmd.m: blocks = [6], a 6 x 6 grid
P = 0.01                  # README: "p is set to 0.01"


@dataclasses.dataclass(frozen=True)
class KindParams:
  """MDMD's parameters for one expression kind: k and the kept interval lengths (inclusive)."""
  k: int
  min_length: int
  max_length: Optional[int] = None


# cmd.m (k) and evaluation_all_p.py (lengths): 'ME2' is CAS(ME)^2, 'SAMM_MEGC' SAMM Long Videos.
DATASET_PARAMS = {
    "casme2_lv": {"micro": KindParams(12, 7, 16), "macro": KindParams(39, 17)},
    "samm_lv": {"micro": KindParams(80, 47, 105), "macro": KindParams(260, 106)},
    "casme3_a": {"micro": KindParams(12, 7, 16), "macro": KindParams(39, 17)},   # our choice
}


def matlab_round(x: float) -> int:
  """MATLAB's round: halves away from zero (Python's round takes them to even)."""
  return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def params_for_fps(fps: float) -> dict[str, KindParams]:
  """CAS(ME)^2's parameters (30 fps) scaled to `fps` (at 200 fps: k = 80 and 260 as SAMM's)."""
  s = fps / 30.0
  return {"micro": KindParams(max(1, matlab_round(12 * s)), max(1, matlab_round(7 * s)),
                              max(1, matlab_round(16 * s))),
          "macro": KindParams(max(1, matlab_round(39 * s)), max(1, matlab_round(17 * s)))}


def dataset_params(dataset: str) -> dict[str, KindParams]:
  """The parameters of a long-video dataset by its registry name."""
  if dataset not in DATASET_PARAMS:
    raise InputError(f"MDMD has no parameters for dataset {dataset!r}; known: "
                     f"{', '.join(DATASET_PARAMS)} (or use params_for_fps)")
  return DATASET_PARAMS[dataset]


def tvl1(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
  """RLOF_fun's convention with TV-L1: [S, S, 2] (u, v) moving image1's pixel p to image2."""
  # motion.tvl1_flow(onset, apex) is the flow on apex's grid towards onset: pass them swapped.
  return motion.tvl1_flow(image2, image1, match_brightness=False)


def block_feature(flow1: np.ndarray, flow2: np.ndarray, blocks: int = BLOCKS) -> float:
  """MDMD.m's feature of one frame from its two flows [H, W, 2] (module docstring, step 1)."""
  h, w = flow1.shape[0] // blocks, flow1.shape[1] // blocks
  def cut(x):                                    # [H, W] -> [blocks * blocks, h * w]
    x = x[:blocks * h, :blocks * w].reshape(blocks, h, blocks, w)
    return x.transpose(0, 2, 1, 3).reshape(blocks * blocks, h * w)
  u, v, u2, v2 = (cut(f[..., c]) for f in (flow1, flow2) for c in (0, 1))
  with np.errstate(divide="ignore", invalid="ignore"):
    theta = np.degrees(np.arctan(u / v))           # NaN where u = v = 0, +-90 where v = 0
  bins = np.stack([(theta >= 0) & (theta < 90), (theta >= 90) & (theta < 180),
                   (theta >= -180) & (theta < -90), (theta >= -90) & (theta < 0)])
  main = np.argmax(bins.sum(-1), axis=0)           # first largest, as MATLAB's max
  chosen = bins[main, np.arange(blocks * blocks)]  # [blocks^2, h * w]
  diff = np.where(chosen, np.hypot(u, v) - np.hypot(u2, v2), -np.inf)
  top = -np.sort(-diff, axis=-1)                   # descending; unchosen (-inf) last
  n = np.floor(chosen.sum(-1) / 3 + 0.5).astype(int)   # MATLAB round(m / 3), m / 3 never x.5
  csum = np.cumsum(np.where(np.isfinite(top), top, 0.0), axis=-1)
  per_block = np.where(n > 0, csum[np.arange(len(n)), np.maximum(n - 1, 0)] / np.maximum(n, 1),
                       0.0)
  keep = matlab_round(blocks * blocks / 3)
  return float(np.sort(per_block)[::-1][:keep].mean())


def features(frames: np.ndarray, k: int, blocks: int = BLOCKS,
             flow: Callable[[np.ndarray, np.ndarray], np.ndarray] = tvl1,
             progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """f [T] float64: MDMD.m's feature of the frames cmd.m's contrast reads (k..T-3k-1; MDMD.m
  computes k..T-k-1 and cmd.m never reads the last 2k of them), NaN elsewhere."""
  frames = np.asarray(frames)
  out = np.full(len(frames), np.nan)
  todo = range(k, len(frames) - 3 * k)
  for n, i in enumerate(todo):
    out[i] = block_feature(flow(frames[i - k], frames[i]), flow(frames[i - k], frames[i + k]),
                           blocks)
    if progress:
      progress(n + 1, len(todo))
  return out


def auto_k(n_frames: int, k: int) -> int:
  """cmd.m's auto_k: halve k (MATLAB round) while the video is shorter than 6k frames."""
  if n_frames < 6:
    raise InputError(f"MDMD needs at least 6 frames; the video has {n_frames}")
  while n_frames - 6 * k < 0:
    k = matlab_round(k / 2)
  return k


def contrast(f: np.ndarray, k: int) -> np.ndarray:
  """c [T]: cmd.m's f(i) - (f(i - m) + f(i + m)) / 2, m = k - 1, NaN where cmd.m has none."""
  n, m = len(f), k - 1
  c = np.full(n, np.nan)
  i = np.arange(k + m, n - 3 * k - m)              # cmd.m: zz = 1+k+m .. l-k-m, l = T - 2k
  c[i] = f[i] - (f[i - m] + f[i + m]) / 2
  return c


def intervals_from_contrast(c: np.ndarray, kind: str, params: KindParams, p: float = P,
                            frame_numbers: Optional[Sequence[int]] = None) -> list[Interval]:
  """The thresholded runs of expression frames (module docstring, step 3) as Intervals."""
  valid = np.isfinite(c)
  scored = c[valid]
  if not len(scored):
    return []
  threshold = scored.mean() + p * (scored.max() - scored.mean())
  hot = np.zeros(len(c) + 2, bool)
  hot[1:-1] = valid & (np.where(valid, c, -np.inf) > threshold)
  edges = np.flatnonzero(np.diff(hot.astype(np.int8)))
  numbers = np.arange(len(c)) if frame_numbers is None else np.asarray(frame_numbers)
  out = []
  for start, stop in zip(edges[::2], edges[1::2]):      # run start..stop-1
    length = stop - start
    if length < params.min_length or (params.max_length and length > params.max_length):
      continue
    apex = start + int(np.argmax(c[start:stop]))
    out.append(Interval(int(numbers[start]), int(numbers[stop - 1]), kind,
                        apex=int(numbers[apex])))
  return out


def spot(frames: np.ndarray, params: dict[str, KindParams], kinds: Sequence[str] = KINDS,
         frame_numbers: Optional[Sequence[int]] = None, p: float = P,
         flow: Callable[[np.ndarray, np.ndarray], np.ndarray] = tvl1,
         progress: Optional[Callable[[int, int], None]] = None) -> list[Interval]:
  """MDMD's intervals of one video's aligned faces uint8 [T, S, S], kinds in `kinds` order.

  params: {kind: KindParams}, from `dataset_params` or `params_for_fps`. frame_numbers: the
  frames' numbers as the annotation counts them (default 0..T-1).
  """
  frames = np.asarray(frames)
  if frames.ndim != 3 or frames.shape[1] < BLOCKS or frames.shape[2] < BLOCKS:
    raise InputError(f"MDMD: expected aligned grayscale faces [T, S, S], got {frames.shape}")
  if frame_numbers is not None and len(frame_numbers) != len(frames):
    raise InputError(f"MDMD: {len(frame_numbers)} frame numbers for {len(frames)} frames")
  out = []
  for kind in kinds:
    kp = params[kind]
    k = auto_k(len(frames), kp.k)
    c = contrast(features(frames, k, flow=flow, progress=progress), k)
    out += intervals_from_contrast(c, kind, kp, p, frame_numbers)
  return out


def spot_videos(videos: Iterable, params: dict[str, KindParams], kinds: Sequence[str] = KINDS,
                progress: bool = True) -> dict[tuple[str, str], list[Interval]]:
  """MDMD over a dataset: {(subject, name): intervals} of videos with `subject`, `name`,
  `frames` and `frame_numbers` (frldgt_jax/spotting/corpus.py's Video); a progress bar over
  the frames whose feature is computed, with ETA."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  videos = list(videos)
  total = 0
  for video in videos:
    for kind in kinds:
      k = auto_k(len(video.frames), params[kind].k)
      total += max(0, len(video.frames) - 4 * k)
  out = {}
  with tqdm(total=total, desc="MDMD", unit="frame", disable=not progress) as bar:
    for video in videos:
      out[(video.subject, video.name)] = spot(video.frames, params, kinds, video.frame_numbers,
                                              progress=lambda done, _: bar.update(1))
  return out
