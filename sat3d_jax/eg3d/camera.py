"""EG3D camera utilities (camera_utils.py of the official code), batched and jittable.

Cameras are OpenCV cam2world matrices (x right, y down, z forward); intrinsics are normalised by
the image size. A camera label is the 25-vector [cam2world.flatten(), intrinsics.flatten()].
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import jax.numpy as jnp
import numpy as np

ArrayLike = Union[float, Sequence[float], np.ndarray, jnp.ndarray]

# FOV of the FFHQ generation scripts (gen_samples.py / gen_videos.py).
DEFAULT_FOV_DEGREES = 18.837


def fov_to_intrinsics(fov_degrees: ArrayLike = DEFAULT_FOV_DEGREES) -> jnp.ndarray:
  """Normalised intrinsics [..., 3, 3] (official FOV_to_intrinsics, including its 3.14159 and
  1.414 constants): f = 1 / (tan(fov * 3.14159 / 360) * 1.414), principal point (0.5, 0.5)."""
  fov = jnp.asarray(fov_degrees, jnp.float32)
  f = 1.0 / (jnp.tan(fov * 3.14159 / 360) * 1.414)
  zero, one, half = jnp.zeros_like(f), jnp.ones_like(f), jnp.full_like(f, 0.5)
  rows = [jnp.stack([f, zero, half], -1), jnp.stack([zero, f, half], -1),
          jnp.stack([zero, zero, one], -1)]
  return jnp.stack(rows, -2)


def _normalize(v: jnp.ndarray) -> jnp.ndarray:
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def create_cam2world(forward: jnp.ndarray, origin: jnp.ndarray) -> jnp.ndarray:
  """cam2world [..., 4, 4] looking along `forward` from `origin` with world up (0, 1, 0)."""
  forward = _normalize(forward)
  up_world = jnp.broadcast_to(jnp.asarray([0.0, 1.0, 0.0], forward.dtype), forward.shape)
  right = -_normalize(jnp.cross(up_world, forward))
  up = _normalize(jnp.cross(forward, right))
  rot = jnp.stack([right, up, forward], axis=-1)  # columns
  top = jnp.concatenate([rot, origin[..., :, None]], axis=-1)  # [..., 3, 4]
  bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], forward.dtype),
                            top.shape[:-2] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def lookat_pose(yaw: ArrayLike, pitch: ArrayLike, lookat: ArrayLike = (0.0, 0.0, 0.0),
                radius: ArrayLike = 2.7) -> jnp.ndarray:
  """LookAtPoseSampler.sample without noise: cam2world [..., 4, 4].

  yaw (horizontal) and pitch (vertical) are the official angles: pi/2, pi/2 is the frontal
  camera on the +z axis. theta = yaw, phi = arccos(1 - 2 * clip(pitch, 1e-5, pi - 1e-5) / pi);
  the origin lies on the sphere of `radius` around the world origin and looks at `lookat`.
  """
  h = jnp.asarray(yaw, jnp.float32)
  v = jnp.clip(jnp.asarray(pitch, jnp.float32), 1e-5, math.pi - 1e-5)
  h, v = jnp.broadcast_arrays(h, v)
  phi = jnp.arccos(1 - 2 * (v / math.pi))
  radius = jnp.asarray(radius, jnp.float32)
  origin = jnp.stack([radius * jnp.sin(phi) * jnp.cos(math.pi - h),
                      radius * jnp.cos(phi),
                      radius * jnp.sin(phi) * jnp.sin(math.pi - h)], axis=-1)
  lookat = jnp.asarray(lookat, jnp.float32)
  return create_cam2world(_normalize(lookat - origin), origin)


def camera_label(cam2world: jnp.ndarray, intrinsics: jnp.ndarray) -> jnp.ndarray:
  """Conditioning / rendering label [..., 25] = [cam2world (16), intrinsics (9)]."""
  cam2world = jnp.asarray(cam2world, jnp.float32)
  intrinsics = jnp.broadcast_to(jnp.asarray(intrinsics, jnp.float32),
                                cam2world.shape[:-2] + (3, 3))
  return jnp.concatenate([cam2world.reshape(cam2world.shape[:-2] + (16,)),
                          intrinsics.reshape(intrinsics.shape[:-2] + (9,))], axis=-1)


def orbit_labels(yaws: ArrayLike, pitches: ArrayLike, lookat: ArrayLike, radius: float,
                 fov_degrees: float = DEFAULT_FOV_DEGREES) -> jnp.ndarray:
  """Labels [N, 25] of cameras at angle offsets (radians) from the frontal view
  (yaw = pi/2 + yaws, pitch = pi/2 + pitches), as the generation scripts build them."""
  pose = lookat_pose(math.pi / 2 + jnp.asarray(yaws, jnp.float32),
                     math.pi / 2 + jnp.asarray(pitches, jnp.float32), lookat, radius)
  return camera_label(pose, fov_to_intrinsics(fov_degrees))
