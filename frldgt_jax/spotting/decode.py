"""Interval decoding: per-frame (none, micro, macro) probabilities -> spotted intervals.

    1. Each kind's probability curve is smoothed by a centred moving average of `smooth` frames.
    2. A frame is *active* for a kind where its smoothed probability is at least `threshold`.
    3. Active runs of one kind separated by at most `max_gap` inactive frames are joined.
    4. A run shorter than that kind's `min_length` frames is dropped (a flicker of score).
    5. Where a micro and a macro run overlap, the one with the higher mean probability over its
       own frames is kept (an expression is one or the other; MEGC scores each against the
       annotation of its own type).
    6. Onset and offset are the run's first and last frames; the apex is the frame of the largest
       `apex_signal` inside the run (the motion signal, features.motion_signal) or, without one,
       of the largest probability.

Frames are returned in the video's own numbering (`frame_numbers[i]` for position i), both ends
inclusive, as frldgt_jax/spotting/intervals.py defines. The network's forward pass over the whole
video is the jitted part (frldgt_jax/spotting/inference.py); the runs are a few dozen per
video and are found with NumPy on the host, where a jitted version would only add a compile.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from frldgt_jax.spotting.intervals import Interval


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """Decoding thresholds (module docstring); lengths in frames of the scored sequence."""
  threshold: float = 0.5
  smooth: int = 3
  max_gap: int = 2
  min_length_micro: int = 3
  min_length_macro: int = 8


def smooth_curve(curve: np.ndarray, width: int) -> np.ndarray:
  """Centred moving average of `width` frames (edges averaged over the frames that exist)."""
  curve = np.asarray(curve, np.float64)
  if width <= 1:
    return curve
  kernel = np.ones(width)
  total = np.convolve(curve, kernel, mode="same")
  count = np.convolve(np.ones_like(curve), kernel, mode="same")
  return total / count


def active_runs(active: np.ndarray, max_gap: int, min_length: int) -> list[tuple[int, int]]:
  """[(first, last)] inclusive runs of True, gaps of at most `max_gap` False joined, runs
  shorter than `min_length` dropped."""
  active = np.asarray(active, bool)
  edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
  starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
  runs: list[list[int]] = []
  for a, b in zip(starts, stops):
    if runs and a - runs[-1][1] - 1 <= max_gap:
      runs[-1][1] = int(b)
    else:
      runs.append([int(a), int(b)])
  return [(a, b) for a, b in runs if b - a + 1 >= min_length]


def decode(probs: np.ndarray, options: DecodeOptions = DecodeOptions(), *,
           frame_numbers: Optional[Sequence[int]] = None,
           apex_signal: Optional[np.ndarray] = None) -> list[Interval]:
  """Spotted intervals of probabilities [T, 3] (module docstring), sorted by onset."""
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[1] != 3:
    raise ValueError(f"decode expects probabilities [T, 3], got {probs.shape}")
  numbers = np.arange(len(probs)) if frame_numbers is None else np.asarray(frame_numbers)
  candidates = []
  for c, kind in ((1, "micro"), (2, "macro")):
    curve = smooth_curve(probs[:, c], options.smooth)
    min_length = options.min_length_micro if kind == "micro" else options.min_length_macro
    for a, b in active_runs(curve >= options.threshold, options.max_gap, min_length):
      candidates.append((float(curve[a:b + 1].mean()), a, b, kind, curve))
  kept: list[tuple] = []
  for cand in sorted(candidates, key=lambda x: -x[0]):
    if all(cand[2] < k[1] or cand[1] > k[2] for k in kept):
      kept.append(cand)
  out = []
  for _, a, b, kind, curve in sorted(kept, key=lambda x: x[1]):
    signal = curve if apex_signal is None else np.asarray(apex_signal)
    apex = a + int(np.argmax(signal[a:b + 1]))
    out.append(Interval(int(numbers[a]), int(numbers[b]), kind, apex=int(numbers[apex])))
  return out
