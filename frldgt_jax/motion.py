"""Which motion the fusion transformers see (config.model.motion), and TV-L1 optical flow.

  'dgm'       the DGM's learned onset->apex displacement (the paper's model);
  'tvl1'      TV-L1 optical flow between onset and apex (no DGM: stage-1 steps are idle, so the
              stage-2 budget is the same);
  'dgm+tvl1'  both, as two token inputs fused per patch;
  'none'      no motion: the transformers see only what config.model.inputs names besides the
              displacement (the apex frame).

TV-L1 is `skimage.registration.optical_flow_tvl1`, computed on the CPU from the stored onset and
apex frames when the clips are loaded (`clip_flows`), not stored in the TFDS records: it is a
deterministic function of frames the records already hold, so storing it would mean a new builder
version and rebuilding every prepared dataset (the licensed downloads and the face detection
again) for a few seconds of work per load (64 x 64: about 10 ms a clip; 128 x 128: about 40 ms).
Computed at load time, the same function serves launch/predict.py on a user's clip.

The flow is returned in the DGM's convention (frldgt_jax.warp): (dx, dy) pixels with
warp(onset, flow) ~ apex, i.e. the apex pixel p shows the onset at p + flow(p).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from frldgt_jax.errors import InputError

MOTIONS = ("dgm", "tvl1", "dgm+tvl1", "none")


def check_motion(motion: str) -> None:
  """Raises InputError unless `motion` is one of MOTIONS."""
  if motion not in MOTIONS:
    raise InputError(f"model.motion must be one of {list(MOTIONS)}, got {motion!r}")


def uses_dgm(motion: str) -> bool:
  """Whether the model has a DGM branch for `motion` (before the 'zero' control)."""
  return motion in ("dgm", "dgm+tvl1")


def uses_flow(motion: str) -> bool:
  """Whether the model reads a TV-L1 flow input for `motion`."""
  return motion in ("tvl1", "dgm+tvl1")


def token_inputs(motion: str, inputs) -> tuple[str, ...]:
  """The per-patch token inputs of the model: config.model.inputs with 'displacement' replaced
  by the motion's sources ('displacement' = the DGM's field, 'flow' = TV-L1)."""
  replacement = {"dgm": ("displacement",), "tvl1": ("flow",),
                 "dgm+tvl1": ("displacement", "flow"), "none": ()}[motion]
  out = []
  for name in inputs:
    out += list(replacement) if name == "displacement" else [name]
  return tuple(out)


def tvl1_flow(onset: np.ndarray, apex: np.ndarray, match_brightness: bool = True,
              **tvl1_kwargs) -> np.ndarray:
  """TV-L1 flow [S, S, 2] float32 (dx, dy) with warp(onset, flow) ~ apex (module docstring).

  onset, apex: grayscale [S, S] or [S, S, 1], uint8 or float in [0, 1]. `match_brightness`
  shifts the apex's mean to the onset's first, as the model's inputs are (training.py).
  """
  try:
    from skimage.registration import optical_flow_tvl1  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise InputError("TV-L1 optical flow needs scikit-image: pip install -e '.[motion]'"
                     ) from None
  def gray(x):
    x = np.asarray(x)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x.reshape(x.shape[0], x.shape[1])
  a, b = gray(onset), gray(apex)
  if match_brightness:
    b = b + (a.mean() - b.mean())
  # skimage: warp(moving, p + v(p)) ~ reference, v = (rows, cols). Reference = apex, moving =
  # onset gives the DGM's convention.
  v = optical_flow_tvl1(b, a, **tvl1_kwargs)
  return np.stack([v[1], v[0]], axis=-1).astype(np.float32)


def clip_flows(frames: np.ndarray, match_brightness: bool = True,
               progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """TV-L1 flows [N, S, S, 2] of stored clips frames [N, T, S, S, 1] (onset frames[:, 0], apex
  frames[:, -1])."""
  frames = np.asarray(frames)
  if frames.ndim != 5 or frames.shape[-1] != 1:
    raise InputError(f"clip_flows: expected frames [N, T, S, S, 1], got {frames.shape}")
  out = np.zeros(frames.shape[:1] + frames.shape[2:4] + (2,), np.float32)
  for i in range(len(frames)):
    out[i] = tvl1_flow(frames[i, 0], frames[i, -1], match_brightness)
    if progress:
      progress(i + 1, len(frames))
  return out
