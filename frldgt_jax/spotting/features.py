"""Motion features of a long video's aligned face: per frame, how much each face region changes.

For frame t and a frame offset k, the feature of region r is the mean absolute change of the
blurred, brightness-normalised face between frames t - k//2 and t - k//2 + k, inside region r:

    D_r,k(t) = mean_{p in r} | g(t - k//2 + k, p) - g(t - k//2, p) |

with g a frame in [0, 1], blurred by a Gaussian of BLUR_SIGMA_PX pixels (sensor noise, blocking)
and shifted so its mean over the face is 0 (illumination flicker). The regions are the project's
AU regions (frldgt_jax/regions.py: brows and eyes left and right, glabella and nose, mouth
corners left and right, mouth and chin) plus the whole face box, whose response to a rigid head
drift lets the model tell drift (every region moves) from an expression (a few do). Two offsets
are taken: a short one, about half a micro-expression's onset-to-offset (MEAN and SoftNet compare
frame t with t + k, k about half a micro-expression), and a long one, about half a
macro-expression. The difference of a blurred image grows linearly with a small displacement,
so D follows the flow's magnitude in the region (frldgt_jax/apex.py uses the same measure for
one apex); docs/spotting.md has what was measured against TV-L1 flow.

Per video the features are divided by their median over the video and taken as log(1 + x): a
spotter then sees how much a region moves relative to that video's own background motion, not
the camera's noise level or the face's contrast.

Batched and jitted over windows: the video is padded (edge frames repeated) to whole chunks of
CHUNK frames (+ the offset margin), and a fixed number of chunks goes through one compiled
program, so a ten-minute 30 fps video (18 000 frames) is 5 calls of one program, not a Python loop
over frames.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from frldgt_jax import regions
from frldgt_jax.errors import InputError

BLUR_SIGMA_PX = 1.0
CHUNK = 512            # frames per chunk
CHUNKS_PER_CALL = 8    # chunks per device program


def feature_names(offsets: tuple[int, ...]) -> list[str]:
  """The name of each feature column: '<region>@<k>'."""
  return [f"{r}@{k}" for k in offsets for r in (*regions.DEFAULT_REGIONS, "face")]


def num_features(offsets: tuple[int, ...]) -> int:
  """Feature columns for these offsets."""
  return len(feature_names(offsets))


def region_weights(size: int) -> np.ndarray:
  """float32 [R + 1, size, size]: each AU region's pixels (regions.region_masks at one patch per
  pixel) and the face box (their union's bounding box), each normalised to sum to 1."""
  masks = regions.region_masks(size).astype(np.float32)
  union = masks.max(0)
  rows, cols = np.nonzero(union)
  face = np.zeros_like(union)
  face[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = 1
  masks = np.concatenate([masks, face[None]])
  return masks / masks.sum((1, 2), keepdims=True)


def _gaussian_kernel(sigma: float) -> np.ndarray:
  radius = max(1, int(np.ceil(2.5 * sigma)))
  x = np.arange(-radius, radius + 1, dtype=np.float32)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


@functools.partial(jax.jit, static_argnames=("offsets",))
def chunk_features(chunks: jax.Array, weights: jax.Array, offsets: tuple[int, ...]) -> jax.Array:
  """Raw features of a batch of chunks (no per-video normalisation).

  Args:
    chunks: uint8 [B, C + max(offsets), S, S]; chunk b's frame j is video frame
      b * C + j - max(offsets) // 2 (edge-padded).
    weights: float32 [R + 1, S, S] (`region_weights`).
    offsets: the frame offsets k.

  Returns:
    float32 [B, C, len(offsets) * (R + 1)]: D_r,k at the chunk's C frames (module docstring).
  """
  margin = max(offsets)
  length = chunks.shape[1] - margin
  g = chunks.astype(jnp.float32) / 255.0
  kernel = jnp.asarray(_gaussian_kernel(BLUR_SIGMA_PX))
  pad = len(kernel) // 2
  g = jnp.pad(g, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
  g = sum(kernel[i] * g[:, :, i:i + g.shape[2] - 2 * pad, :] for i in range(len(kernel)))
  g = sum(kernel[i] * g[:, :, :, i:i + g.shape[3] - 2 * pad] for i in range(len(kernel)))
  g = g - jnp.einsum("btxy,xy->bt", g, weights[-1])[..., None, None]
  out = []
  for k in offsets:
    first = margin // 2 - k // 2
    change = jnp.abs(g[:, first + k:first + k + length] - g[:, first:first + length])
    out.append(jnp.einsum("btxy,rxy->btr", change, weights))
  return jnp.concatenate(out, axis=-1)


def raw_features(frames: np.ndarray, offsets: tuple[int, ...], *, chunk: int = CHUNK,
                 chunks_per_call: int = CHUNKS_PER_CALL) -> np.ndarray:
  """float32 [T, F] un-normalised features of aligned frames uint8 [T, S, S] (module docstring);
  every call runs the one program of shape [chunks_per_call, chunk + max(offsets), S, S]."""
  frames = np.asarray(frames)
  if frames.ndim != 3 or frames.shape[1] != frames.shape[2] or frames.dtype != np.uint8:
    raise InputError(f"motion features need aligned uint8 frames [T, S, S], got "
                     f"{frames.dtype} {frames.shape}")
  if len(frames) == 0:
    raise InputError("motion features of a video with no frame")
  offsets = tuple(int(k) for k in offsets)
  if not offsets or min(offsets) < 1:
    raise ValueError(f"offsets must be positive frame counts, got {offsets}")
  margin, total = max(offsets), len(frames)
  n_chunks = -(-total // chunk)
  n_calls = -(-n_chunks // chunks_per_call)
  n_chunks = n_calls * chunks_per_call
  index = np.clip(np.arange(n_chunks)[:, None] * chunk + np.arange(chunk + margin)[None]
                  - margin // 2, 0, total - 1)
  weights = jnp.asarray(region_weights(frames.shape[1]))
  out = []
  for c in range(n_calls):
    rows = index[c * chunks_per_call:(c + 1) * chunks_per_call]
    out.append(np.asarray(chunk_features(jnp.asarray(frames[rows]), weights, offsets)))
  return np.concatenate(out).reshape(-1, len(offsets) * weights.shape[0])[:total]


def normalise(raw: np.ndarray) -> np.ndarray:
  """Per-video normalisation: log(1 + x / median over the video) per column."""
  raw = np.asarray(raw, np.float32)
  median = np.median(raw, axis=0, keepdims=True)
  return np.log1p(raw / np.maximum(median, 1e-6)).astype(np.float32)


def motion_features(frames: np.ndarray, offsets: tuple[int, ...], **kwargs) -> np.ndarray:
  """float32 [T, F]: the normalised motion features of aligned frames uint8 [T, S, S]."""
  return normalise(raw_features(frames, offsets, **kwargs))


def motion_signal(features: np.ndarray) -> np.ndarray:
  """float32 [T]: one curve to draw, the largest short-offset feature over the AU regions (how
  much the most-moving region changes, relative to its own median)."""
  r = len(regions.DEFAULT_REGIONS)
  return np.asarray(features)[:, :r].max(1).astype(np.float32)
