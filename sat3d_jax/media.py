"""What the rendering entry points write: uint8 images, PNG grids, H.264 MP4s, turntable cameras.

    images = media.to_uint8(out["image"])                # [-1, 1] -> uint8, as EG3D's scripts
    media.write_png(path, media.image_grid([row_a, row_b]))
    views = media.turntable_views(60)                    # [60, 2] (yaw, pitch) offsets, radians
    media.write_mp4(path, frames, fps=30)

One home for these, so every command that renders (generate, transfer, invert) writes the same
bytes the same way.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np


# The turntable of EG3D's gen_videos.py: at t = 2 pi k / frames,
#   yaw = pi/2 + 0.35 sin(t),  pitch = pi/2 - 0.05 + 0.25 cos(t).
VIDEO_YAW_RANGE, VIDEO_PITCH_RANGE, VIDEO_PITCH_OFFSET = 0.35, 0.25, -0.05


def to_uint8(images) -> np.ndarray:
  """[-1, 1] images -> uint8, as the official scripts (x * 127.5 + 128, clamped)."""
  return np.clip(np.asarray(images) * 127.5 + 128, 0, 255).astype(np.uint8)


def depth_to_uint8(depth, size: int, lo: float, hi: float) -> np.ndarray:
  """Depth [N, r, r, 1] -> grey RGB uint8 [N, size, size, 3]: resized bilinearly, then [lo, hi]
  mapped to bright..dark (near = bright)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  d = jax.image.resize(jnp.asarray(depth), (depth.shape[0], size, size, 1), "linear")
  d = 1.0 - (np.asarray(d) - lo) / max(hi - lo, 1e-8)
  return np.repeat(np.clip(d * 255.0 + 0.5, 0, 255).astype(np.uint8), 3, axis=-1)


def image_row(images) -> np.ndarray:
  """Images [N, H, W, C] (or a sequence of [H, W, C]) side by side -> [H, N * W, C]."""
  return np.concatenate(list(images), axis=1)


def image_grid(rows: Sequence) -> np.ndarray:
  """Rows of images (each [N, H, W, C] or a sequence of [H, W, C], all of one size) -> one
  image [rows * H, N * W, C], row by row."""
  return np.concatenate([image_row(r) for r in rows], axis=0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes a uint8 image [H, W, 3] (or [H, W]) as a PNG."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  iio.imwrite(path, np.asarray(image))


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int) -> None:
  """Writes uint8 frames [T, H, W, 3] as an H.264 MP4 with imageio-ffmpeg's bundled ffmpeg
  (quality 8; any frame size, no macro-block padding)."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  h, w = frames.shape[1:3]
  # ffmpeg is started with fork+exec at once; JAX's warning about fork() does not apply.
  warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
  writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264",
                                       quality=8, macro_block_size=1)
  writer.send(None)
  for frame in frames:
    writer.send(np.ascontiguousarray(frame))
  writer.close()


def turntable_views(frames: int) -> np.ndarray:
  """(yaw, pitch) offsets from the frontal camera, float64 [frames, 2], of the turntable of
  EG3D's gen_videos.py (one full turn; see VIDEO_*). Turn them into cameras with
  sat3d_jax.eg3d.orbit_labels or a model's / rig's camera function."""
  t = 2 * math.pi * np.arange(frames) / max(frames, 1)
  return np.stack([VIDEO_YAW_RANGE * np.sin(t),
                   VIDEO_PITCH_OFFSET + VIDEO_PITCH_RANGE * np.cos(t)], -1)
