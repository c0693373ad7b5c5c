"""Apex spotting: the frame of maximal facial motion from the onset within a clip.

Method (chosen to be robust to the nuisances of real recordings and of the generated corpus):
every frame is aligned with the onset's transform (one per clip, as the training data), blurred
(Gaussian, sigma SIGMA_PX of the crop: sensor noise, JPEG blocks), its mean brightness set to
the onset's (illumination flicker), and its motion energy is the mean absolute difference to the
onset inside the action-unit areas of the face (brows, glabella, cheeks, nose, mouth and chin) with
both eyes masked out (`motion_mask`), so a blink, which moves only the eyelids, adds nothing. The
curve is smoothed over time (a centred moving average of SMOOTH_FRAMES frames) and the apex is its
argmax after the onset. A rigid head drift of a fraction of a pixel moves every edge of the face
a little; it adds a slowly varying term that the AU motion, several times larger, dominates.

For small displacements the difference of a blurred image grows linearly with the displacement,
so the curve follows the AU intensity (0 at the onset, maximal at the apex).
"""
from __future__ import annotations

import numpy as np

from frldgt_jax.data.align import TEMPLATE
from frldgt_jax.errors import InputError

SIGMA_PX = 1.0 / 128           # spatial blur, in crop units (1 px of a 128-px crop)
SMOOTH_FRAMES = 3              # temporal moving average
# Eye boxes left out of the motion energy, about each template eye centre (crop units): wide
# enough for the eyelids of a blink, narrow enough to keep the brows (about 0.085 above).
EYE_HALF_WIDTH, EYE_ABOVE, EYE_BELOW = 0.10, 0.05, 0.055


def motion_mask(size: int) -> np.ndarray:
  """bool [size, size]: the face's action-unit areas on a crop aligned to TEMPLATE, eyes out.

  The face area is the ellipse through the brows and the chin around the template's centre.
  """
  c = (np.arange(size) + 0.5) / size
  y, x = np.meshgrid(c, c, indexing="ij")
  (lx, ly), (rx, ry), (mx, my) = TEMPLATE
  cx, cy = (lx + rx) / 2, (ly + my) / 2
  face = ((x - cx) / 0.36) ** 2 + ((y - cy) / 0.46) ** 2 <= 1.0
  mask = face
  for ex, ey in ((lx, ly), (rx, ry)):
    eye = (np.abs(x - ex) <= EYE_HALF_WIDTH) & (y >= ey - EYE_ABOVE) & (y <= ey + EYE_BELOW)
    mask = mask & ~eye
  return mask


def motion_curve(frames: np.ndarray, onset: int = 0) -> np.ndarray:
  """Motion energy [N] float32 of aligned grayscale frames [N, S, S] (or [N, S, S, 1]) against
  frame `onset` (module docstring); 0 at the onset, unsmoothed."""
  import cv2  # pylint: disable=g-import-not-at-top
  frames = np.asarray(frames)
  if frames.ndim == 4 and frames.shape[-1] == 1:
    frames = frames[..., 0]
  if frames.ndim != 3 or frames.shape[1] != frames.shape[2]:
    raise InputError(f"motion_curve: expected aligned frames [N, S, S], got {frames.shape}")
  if not 0 <= onset < len(frames):
    raise InputError(f"onset {onset} is not a frame of this clip (0..{len(frames) - 1})")
  size = frames.shape[1]
  scale = 1.0 / 255.0 if frames.dtype == np.uint8 else 1.0
  sigma = SIGMA_PX * size
  blurred = np.stack([cv2.GaussianBlur(f.astype(np.float32) * scale, (0, 0), sigma)
                      for f in frames])
  mask = motion_mask(size)
  reference = blurred[onset]
  blurred = np.stack([_register(f, reference, mask) for f in blurred])
  shift = reference[mask].mean() - blurred[:, mask].mean(axis=1)
  return np.abs(blurred[:, mask] + shift[:, None] - reference[mask]).mean(axis=1)


def _register(frame: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """`frame` moved rigidly (rotation + translation, ECC on the face area) onto `reference`:
  removes head drift, which a local AU motion barely changes. Unchanged if ECC fails."""
  import cv2  # pylint: disable=g-import-not-at-top
  warp = np.eye(2, 3, dtype=np.float32)
  criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
  try:
    _, warp = cv2.findTransformECC(reference, frame, warp, cv2.MOTION_EUCLIDEAN, criteria,
                                   mask.astype(np.uint8), 1)
  except cv2.error:
    return frame
  size = frame.shape[::-1]
  return cv2.warpAffine(frame, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)


def smooth(curve: np.ndarray, frames: int = SMOOTH_FRAMES) -> np.ndarray:
  """Centred moving average over `frames` frames (edges: the mean of what is there)."""
  curve = np.asarray(curve, np.float64)
  half = frames // 2
  out = np.empty_like(curve)
  for i in range(len(curve)):
    out[i] = curve[max(0, i - half):i + half + 1].mean()
  return out


def spot_apex(frames: np.ndarray, onset: int = 0) -> tuple[int, np.ndarray]:
  """(apex index, smoothed motion curve [N]) of aligned frames [N, S, S]: the frame of maximal
  smoothed motion energy after `onset` (module docstring)."""
  curve = smooth(motion_curve(frames, onset))
  if len(curve) - onset < 2:
    raise InputError(f"the clip has no frame after the onset ({len(curve)} frames, onset "
                     f"{onset}): nothing to spot")
  return onset + 1 + int(np.argmax(curve[onset + 1:])), curve
