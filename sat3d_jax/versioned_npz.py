"""Versioned `.npz` files (mask files, style files): a 'format' tag and a 'format_version'
beside the arrays, read without unpickling anything."""
from __future__ import annotations

import os
import zipfile
from typing import Sequence

import numpy as np

from sat3d_jax.errors import InputError


def read_versioned_npz(path: str | os.PathLike, fmt: str, version: int,
                       fields: Sequence[str], what: str, hint: str = "") -> dict:
  """{name: array} of an `.npz` tagged `format` = fmt with every one of `fields`, written at a
  format version <= `version`; an InputError naming the file (`what`: e.g. 'mask file')
  otherwise."""
  if not os.path.isfile(path):
    raise InputError(f"{path}: no such {what}")
  if not zipfile.is_zipfile(path):  # np.load would talk of pickles
    raise InputError(f"{path}: not a readable {what} (not an .npz file)")
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError) as e:
    raise InputError(f"{path}: not a readable {what} .npz ({e})") from None
  if str(data.get("format", "")) != fmt:
    raise InputError(f"{path}: not a SAT3D {what} (no format '{fmt}'{hint})")
  missing = [k for k in ("format_version", *fields) if k not in data]
  if missing:
    raise InputError(f"{path}: {what} lacks {', '.join(missing)}")
  found = int(data["format_version"])
  if found > version:
    raise InputError(f"{path}: {what} format version {found} is newer than this code reads "
                     f"({version})")
  return data
