"""Latent files: the `.npz` photos are inverted into and SAT3D sources/references can be read from.

`ws` [N, num_ws, w_dim] float32, optional `c` [N, 25] (the camera each image was taken from:
cam2world 4x4 + normalised intrinsics 3x3, EG3D's label) and optional `generator` (a path to
pivotal-tuned generator params). Object arrays are never unpickled.
"""
from __future__ import annotations

import numpy as np

from sat3d_jax.errors import InputError


def read_latent_file(path: str) -> dict[str, np.ndarray]:
  """Reads a latent file: `.npz` with `ws` [N, num_ws, w_dim], optional `c` [N, 25] (the camera
  each image was taken from) and optional `generator` (path of pivotal-tuned params).

  Raises an InputError naming the file and the problem for anything else.
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a readable latent .npz file ({e})") from e
  if "ws" not in data:
    raise InputError(f"{path}: latent file has no 'ws' array (found: {sorted(data)})")
  ws = data["ws"]
  if ws.ndim != 3:
    raise InputError(f"{path}: 'ws' must be [N, num_ws, w_dim], got shape {ws.shape}")
  if not np.all(np.isfinite(ws)):
    raise InputError(f"{path}: 'ws' contains non-finite values")
  if "c" in data and data["c"].shape != (ws.shape[0], 25):
    raise InputError(f"{path}: 'c' must be [N, 25] with N={ws.shape[0]}, got {data['c'].shape}")
  unknown = set(data) - {"ws", "c", "generator"}
  if unknown:
    raise InputError(f"{path}: unexpected arrays {sorted(unknown)} (allowed: ws, c, generator)")
  out = {"ws": ws.astype(np.float32)}
  if "c" in data:
    out["c"] = data["c"].astype(np.float32)
  if "generator" in data:
    out["generator"] = str(data["generator"])
  return out


def write_latent_file(path: str, ws: np.ndarray, c: np.ndarray | None = None,
                      generator: str | None = None) -> None:
  """Writes a latent file in the format `read_latent_file` reads."""
  arrays = {"ws": np.asarray(ws, np.float32)}
  if c is not None:
    arrays["c"] = np.asarray(c, np.float32)
  if generator is not None:
    arrays["generator"] = np.asarray(str(generator))
  np.savez(path, **arrays)
