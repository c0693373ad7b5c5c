"""How close a displacement field is to the true one: end-point error and direction agreement.

The generated corpus knows the onset -> apex motion it drew (frldgt_jax/data/synthetic.py,
`true_motion`), so the DGM's field, TV-L1's and zero can be scored against it
(launch/dgm_truth.py; docs/frldgt.md, "Does the DGM learn the motion?"). All fields are (dx, dy)
in stored pixels in the DGM's convention (frldgt_jax.warp).

Per clip, two regions: the action-unit region (where the AUs alone move a pixel by at least
`AU_THRESHOLD_PX`) and the rest of the frame. In each:
  epe        mean end-point error |pred - true| (pixels);
  cosine     mean cosine of the angle between pred and true over the pixels where the true motion
             is at least AU_THRESHOLD_PX (0 where pred is zero: no direction is no agreement);
  gain       sum(pred . t) / sum(|t|^2) with t the true field: the least-squares scale of the true
             field that best explains pred's projection onto it (1: right size; 0: no motion
             found; < 0: backwards).
Clip means are averaged over clips, each clip weighing the same.
"""
from __future__ import annotations

import numpy as np

# Pixels of the stored frame: the AU region is where the AUs' own displacement reaches this.
# The generated AUs peak at 0.5-1.5 px at 64 x 64, so 0.1 px keeps their extent without the
# Gaussian tails.
AU_THRESHOLD_PX = 0.1
REGIONS = ("au", "outside")
MEASURES = ("epe", "cosine", "gain")


def au_region(au_field: np.ndarray, threshold: float = AU_THRESHOLD_PX) -> np.ndarray:
  """bool [..., S, S]: where the AUs' displacement [..., S, S, 2] is at least `threshold` px."""
  return np.linalg.norm(np.asarray(au_field, np.float64), axis=-1) >= threshold


def _clip_measures(pred: np.ndarray, true: np.ndarray, mask: np.ndarray,
                   threshold: float) -> dict[str, float]:
  if not mask.any():
    return {m: float("nan") for m in MEASURES}
  p, t = pred[mask], true[mask]
  epe = float(np.mean(np.linalg.norm(p - t, axis=-1)))
  t_norm = np.linalg.norm(t, axis=-1)
  moving = t_norm >= threshold
  if moving.any():
    p_norm = np.linalg.norm(p[moving], axis=-1)
    dot = np.sum(p[moving] * t[moving], axis=-1)
    cosine = float(np.mean(np.where(p_norm > 0, dot / np.maximum(p_norm * t_norm[moving], 1e-12),
                                    0.0)))
  else:
    cosine = float("nan")
  energy = float(np.sum(t * t))
  gain = float(np.sum(p * t) / energy) if energy > 0 else float("nan")
  return {"epe": epe, "cosine": cosine, "gain": gain}


def flow_errors(pred, true, region, threshold: float = AU_THRESHOLD_PX) -> dict[str, float]:
  """Scores fields `pred` against `true`, both [N, S, S, 2], inside `region` [N, S, S] and out.

  Returns {'au_epe', 'au_cosine', 'au_gain', 'outside_epe', 'outside_cosine', 'outside_gain'}:
  means over clips (module docstring); NaN where no clip has a pixel of that kind.
  """
  pred = np.asarray(pred, np.float64)
  true = np.asarray(true, np.float64)
  region = np.asarray(region, bool)
  if pred.shape != true.shape or pred.ndim != 4 or pred.shape[-1] != 2:
    raise ValueError(f"pred and true must both be [N, S, S, 2]; got {pred.shape} and "
                     f"{true.shape}")
  if region.shape != pred.shape[:-1]:
    raise ValueError(f"region must be [N, S, S] = {pred.shape[:-1]}, got {region.shape}")
  out = {}
  for name, masks in (("au", region), ("outside", ~region)):
    per_clip = [_clip_measures(p, t, m, threshold) for p, t, m in zip(pred, true, masks)]
    for measure in MEASURES:
      values = np.array([c[measure] for c in per_clip])
      values = values[np.isfinite(values)]
      out[f"{name}_{measure}"] = float(values.mean()) if values.size else float("nan")
  return out
