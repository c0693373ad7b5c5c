"""Style files: faces as flat StyleSpace vectors, e.g. an edited face, to use as a source again.

    write_style_file("face.npz", styles, generator, labels=["result"])
    data = read_style_file("face.npz")      # {'styles' [N, C], 'layers', 'dims', ...}

An `.npz` (no pickled objects) with
  format 'sat3d-styles', format_version 1
  styles                 [N, C] float32, the layers' styles concatenated in the official order
  layers, dims           [L] layer names and their widths (sum(dims) = C)
  generator_fingerprint  sat3d_jax.fingerprint of the weights the styles render with
  generator              '' for the run's generator, else the path of pivotal-tuned params
  labels                 [N] what each row is (e.g. 'source', 'reference', 'result')
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from sat3d_jax import latent_file
from sat3d_jax.errors import InputError
from sat3d_jax.versioned_npz import read_versioned_npz

FORMAT = "sat3d-styles"
FORMAT_VERSION = 1


def write_style_file(path: str | os.PathLike, styles: np.ndarray, style_layers,
                     fingerprint: str, labels: Sequence[str], generator: Optional[str] = None
                     ) -> None:
  """Writes flat styles [N, C] of a generator with `style_layers` [(name, dim)] whose weights
  have `fingerprint` (sat3d_jax.fingerprint), one label per row; `generator`: the path of
  pivotal-tuned params the styles render with (None: the run's generator)."""
  styles = np.asarray(styles, np.float32)
  if styles.ndim != 2 or len(labels) != len(styles):
    raise ValueError(f"need styles [N, C] and N labels, got {styles.shape} and {len(labels)}")
  np.savez(path, format=np.asarray(FORMAT), format_version=np.int32(FORMAT_VERSION),
           styles=styles, layers=np.asarray([n for n, _ in style_layers], dtype=str),
           dims=np.asarray([d for _, d in style_layers], np.int64),
           generator_fingerprint=np.asarray(fingerprint),
           generator=np.asarray(generator or ""), labels=np.asarray(list(labels), dtype=str))


def read_style_file(path: str | os.PathLike) -> dict:
  """{'styles' [N, C] float32, 'layers' [(name, dim)], 'generator_fingerprint', 'generator'
  (None, or the absolute path of existing pivotal-tuned params, read as latent files read it:
  latent_file.generator_path), 'labels'}; an InputError names the file and what is wrong."""
  data = read_versioned_npz(path, FORMAT, FORMAT_VERSION, ("styles", "layers", "dims",
                                                          "generator_fingerprint", "generator",
                                                          "labels"), "style file")
  styles, dims = np.asarray(data["styles"]), np.atleast_1d(data["dims"])
  layers = [(str(n), int(d)) for n, d in zip(np.atleast_1d(data["layers"]), dims)]
  if styles.ndim != 2 or styles.shape[1] != int(dims.sum()) or \
      not np.issubdtype(styles.dtype, np.floating) or not np.all(np.isfinite(styles)):
    raise InputError(f"{path}: 'styles' must be finite floats [N, sum(dims) = {int(dims.sum())}]"
                     f", got {styles.dtype} {styles.shape}")
  return {"styles": styles.astype(np.float32), "layers": layers,
          "generator_fingerprint": str(data["generator_fingerprint"]),
          "generator": (latent_file.generator_path(np.asarray(str(data["generator"])), str(path))
                        if str(data["generator"]) else None),
          "labels": [str(x) for x in np.atleast_1d(data["labels"])]}
