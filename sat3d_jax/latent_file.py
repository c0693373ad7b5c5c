"""Latent files: the `.npz` photos are inverted into and SAT3D sources/references can be read from.

`ws` [N, num_ws, w_dim] float32, optional `c` [N, 25] (the camera each image was taken from:
cam2world 4x4 + normalised intrinsics 3x3, EG3D's label) and optional `generator` (a path to
pivotal-tuned generator params). Object arrays are never unpickled, and an array's claimed size
is checked against the bytes in the file before anything is allocated.
"""
from __future__ import annotations

import math
import os
import pathlib
import zipfile
import zlib

import numpy as np

from sat3d_jax.errors import InputError

# DEFLATE's largest expansion is 1032:1 (a run of zeros); a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1032
# What np.load raises on a damaged .npz (zip structure, CRC, compressed stream, .npy header);
# zipfile raises NotImplementedError for zip features it does not support (a version, a method).
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _check_members(path: str) -> None:
  """Refuses an .npz whose members are not plain .npy arrays of the size the zip holds."""
  archive_size = os.path.getsize(path)
  with zipfile.ZipFile(path) as zf:
    for info in zf.infolist():
      if info.header_offset + info.compress_size > archive_size:
        raise InputError(f"{path}: member {info.filename!r} claims {info.compress_size} "
                         "compressed bytes, past the end of the file")
      if not info.filename.endswith(".npy"):
        raise InputError(f"{path}: member {info.filename!r} is not an .npy array")
      if info.flag_bits & 0x1:
        raise InputError(f"{path}: member {info.filename!r} is encrypted")
      if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputError(f"{path}: member {info.filename!r} uses zip compression method "
                         f"{info.compress_type} (np.savez writes stored or deflated members)")
      if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
        raise InputError(f"{path}: member {info.filename!r} claims {info.file_size} bytes "
                         f"from {info.compress_size} compressed (more than DEFLATE can expand)")
      with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:  # 3.0 is only for non-latin-1 field names
          raise InputError(f"{path}: {info.filename!r} is .npy format {version}, not 1.0/2.0")
        shape, _, dtype = _HEADER_READERS[version](f)
        header_bytes = f.tell()
      if dtype.hasobject:
        raise InputError(f"{path}: {info.filename!r} is an object array (pickled objects are "
                         "never loaded)")
      claimed = math.prod(shape) * dtype.itemsize
      if header_bytes + claimed != info.file_size:
        raise InputError(f"{path}: {info.filename!r} claims shape {shape} of {dtype} "
                         f"({claimed} bytes) but holds {info.file_size - header_bytes}")


def _numeric(data: dict, name: str, path: str) -> np.ndarray:
  array = data[name]
  if array.dtype.kind not in "fiu":
    raise InputError(f"{path}: {name!r} has dtype {array.dtype}, not a real number type")
  if not np.all(np.isfinite(array)):
    raise InputError(f"{path}: {name!r} contains non-finite values")
  return array.astype(np.float32)


def generator_path(value: np.ndarray, path: str) -> str:
  """The absolute path of the pivotal-tuned generator a file at `path` (a latent or style file)
  names: an absolute path as written, a relative one taken from the file's folder and not
  allowed to leave it; it must exist."""
  if value.shape != () or value.dtype.kind != "U" or not str(value):
    raise InputError(f"{path}: 'generator' must be one non-empty path string, got "
                     f"{value.dtype} {value.shape}")
  text = str(value)
  if "\0" in text:
    raise InputError(f"{path}: 'generator' path contains a NUL character")
  folder = pathlib.Path(path).absolute().parent
  generator = pathlib.Path(text)
  if not generator.is_absolute():
    generator = (folder / generator).resolve()
    if not generator.is_relative_to(folder.resolve()):
      raise InputError(f"{path}: 'generator' {text!r} leaves the file's folder (a "
                       "relative path is read from that folder; give an absolute path instead)")
  if not generator.exists():
    raise InputError(f"{path}: its pivotal-tuned generator {text!r} does not exist "
                     f"(looked for {generator})")
  return str(generator)


def read_latent_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a latent file: `.npz` with `ws` [N, num_ws, w_dim], optional `c` [N, 25] (the camera
  each image was taken from) and optional `generator` (path of pivotal-tuned params; returned
  absolute, see `generator_path`).

  Raises an InputError naming the file and the check that failed for anything else.
  """
  path = str(path)
  try:
    _check_members(path)
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except InputError:
    raise
  except FileNotFoundError as e:
    raise InputError(f"{path}: no such latent file") from e
  except _NPZ_ERRORS as e:
    raise InputError(f"{path}: not a readable latent .npz file ({type(e).__name__}: {e})") from e
  if "ws" not in data:
    raise InputError(f"{path}: latent file has no 'ws' array (found: {sorted(data)})")
  unknown = set(data) - {"ws", "c", "generator"}
  if unknown:
    raise InputError(f"{path}: unexpected arrays {sorted(unknown)} (allowed: ws, c, generator)")
  ws = data["ws"]
  if ws.ndim != 3 or 0 in ws.shape:
    raise InputError(f"{path}: 'ws' must be [N, num_ws, w_dim] with no empty axis, got shape "
                     f"{ws.shape}")
  out = {"ws": _numeric(data, "ws", path)}
  if "c" in data:
    if data["c"].shape != (ws.shape[0], 25):
      raise InputError(f"{path}: 'c' must be [N, 25] with N={ws.shape[0]}, got "
                       f"{data['c'].shape}")
    out["c"] = _numeric(data, "c", path)
  if "generator" in data:
    out["generator"] = generator_path(data["generator"], path)
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
