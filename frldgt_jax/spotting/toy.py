"""Aligned-face toy videos with planted expressions: what the spotter's unit tests and its tiny
committed model train and test on.

These are drawn straight into the aligned crop (no raw frame, no alignment, no files), so a test
gets a long video in about a second. The dataset-layout corpus the readers and builders are
tested on is frldgt_jax/data/synthetic_long.py; this is its small in-memory cousin, built from
the same procedural faces and AU fields (frldgt_jax/data/faces.py).

A video: one subject's face at `size` x `size`, `fps` frames per second, with
  micro-expressions: 0.2-0.45 s onset->offset, peak AU displacement 1-2.5 px of a 128-px crop;
  macro-expressions: 0.8-2.5 s, 3-6 px;
both as raised-cosine ramps (0 at onset, 1 at apex, 0 at offset) of one AU pattern each, at
random non-overlapping times; and nuisances: a slow rigid head drift (translation up to
`drift_px` crop pixels, a sum of two slow sines), blinks (0.15-0.3 s, about one every 4 s),
illumination flicker (gain 1 +- 1%) and sensor noise (sigma 1.5 grey levels).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from frldgt_jax.data import faces
from frldgt_jax.spotting.intervals import Interval

PATTERNS = ("AU4", "AU1+2", "AU12", "AU15", "AU6", "AU26")


@dataclasses.dataclass(frozen=True)
class ToyVideo:
  """A generated aligned video: frames uint8 [T, S, S], its intervals (frames from 0), fps."""
  frames: np.ndarray
  intervals: list[Interval]
  fps: float
  subject: str


def _ramp(t: np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
  up = 0.5 - 0.5 * np.cos(np.pi * (t - onset) / max(1, apex - onset))
  down = 0.5 + 0.5 * np.cos(np.pi * (t - apex) / max(1, offset - apex))
  return np.where((t <= onset) | (t >= offset), 0.0, np.where(t <= apex, up, down))


def _plan(rng, num_frames: int, fps: float, n_micro: int, n_macro: int):
  """Non-overlapping (onset, apex, offset, kind, pattern, amplitude), 0.5 s apart at least."""
  wanted = ["macro"] * n_macro + ["micro"] * n_micro
  placed: list[tuple] = []
  gap = int(0.5 * fps)
  for kind in wanted:
    seconds = rng.uniform(0.2, 0.45) if kind == "micro" else rng.uniform(0.8, 2.5)
    length = max(4, int(round(seconds * fps)))
    for _ in range(200):
      onset = int(rng.integers(gap, max(gap + 1, num_frames - length - gap)))
      offset = onset + length - 1
      if all(offset + gap < a or onset - gap > b for a, _, b, *_ in placed):
        apex = onset + int(round(rng.uniform(0.35, 0.6) * (length - 1)))
        amp = rng.uniform(1.0, 2.5) if kind == "micro" else rng.uniform(3.0, 6.0)
        placed.append((onset, apex, offset, kind, str(rng.choice(PATTERNS)), float(amp)))
        break
  return sorted(placed)


def toy_video(seed: int, num_frames: int = 600, *, size: int = 64, fps: float = 30.0,
              n_micro: int = 4, n_macro: int = 2, drift_px: float = 1.0,
              subject: str = "") -> ToyVideo:
  """One generated aligned video (module docstring); deterministic for `seed`."""
  rng = np.random.default_rng([seed, num_frames, size])
  identity = faces.random_identity(rng)
  drawing = faces.draw_face(identity)
  plan = _plan(rng, num_frames, fps, n_micro, n_macro)
  t = np.arange(num_frames)
  # Blinks: closure per frame.
  closure = np.zeros(num_frames)
  for centre in np.cumsum(rng.uniform(2.0, 6.0, size=num_frames // int(2 * fps) + 1) * fps):
    half = rng.uniform(0.08, 0.15) * fps
    closure = np.maximum(closure, np.clip(1 - np.abs(t - centre) / half, 0, 1)
                         * rng.uniform(0.5, 1.0))
  phases, freqs = rng.uniform(0, 2 * np.pi, (2, 2)), rng.uniform(0.02, 0.12, (2, 2))
  drift = drift_px * 0.5 * sum(np.sin(2 * np.pi * freqs[i][:, None] * t[None] / fps
                                      + phases[i][:, None]) for i in range(2)).T   # [T, 2]
  gain = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(1, 5) * t / fps) + rng.normal(0, 0.003,
                                                                               num_frames)
  expressions = []
  for onset, apex, offset, _, pattern, amp in plan:
    comps = faces.au_components(identity, pattern, (amp * rng.uniform(0.8, 1.0), amp))
    expressions.append((onset, apex, offset, comps, faces.field_box(comps)))
  # Canvas -> crop: canvas pixel c maps to unit (c + 0.5) / PPU + CANVAS_X[0]; crop pixel =
  # unit * size - 0.5.
  k = size / faces.PIXELS_PER_UNIT
  base = np.array([[k, 0, (0.5 / faces.PIXELS_PER_UNIT + faces.CANVAS_X[0]) * size - 0.5],
                   [0, k, (0.5 / faces.PIXELS_PER_UNIT + faces.CANVAS_Y[0]) * size - 0.5]])
  lids: dict[int, np.ndarray] = {}
  frames = np.empty((num_frames, size, size), np.uint8)
  for i in range(num_frames):
    key = int(round(closure[i] * 16))
    if key not in lids:
      d = faces.add_eyelids(drawing, identity, key / 16)
      gray = cv2.cvtColor(d.image, cv2.COLOR_BGR2GRAY) * d.alpha + 0.25 * (1 - d.alpha)
      lids[key] = gray.astype(np.float32)
    canvas = lids[key]
    for onset, apex, offset, comps, box in expressions:
      scale = float(_ramp(np.asarray(i), onset, apex, offset))
      if scale > 0:
        canvas = faces.warp_forward(canvas, faces.displacement_field(comps, scale, box), box)
    matrix = base.copy()
    matrix[:, 2] += drift[i] * size / faces.AU_PIXELS
    crop = cv2.warpAffine(canvas, matrix, (size, size), flags=cv2.INTER_AREA
                          if k < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    frames[i] = np.clip(crop * 255 * gain[i] + rng.normal(0, 1.5, crop.shape), 0, 255)
  intervals = [Interval(onset, offset, kind, apex=apex, emotion=pattern)
               for onset, apex, offset, kind, pattern, _ in plan]
  return ToyVideo(frames, intervals, fps, subject or f"toy{seed}")
