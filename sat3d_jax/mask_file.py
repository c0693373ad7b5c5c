"""Mask files: a trained SAT3D mask on its own, usable instead of the run's workdir.

    write_mask_file("mask.npz", MaskFile(...))     # launch/studio.py's download
    mask = read_mask_file("mask.npz")              # launch/transfer.py --mask, the studio

An `.npz` (no pickled objects) with
  format           'sat3d-mask'          format_version   1
  attributes       [A] names             mask_logits      [A + 1, C_editable] float32 (M; the
                                                          last row is "other")
  temperature      tau of P = softmax(M / tau)            include_torgb  whether toRGB channels
                                                          are editable (C_editable = C if so)
  generator        the run's config.generator (where the weights were read from)
  generator_seed   the run's config.seed (the weights of a 'preset:NAME' generator)
  generator_fingerprint  sat3d_jax.fingerprint of those weights
  truncation_psi, truncation_cutoff   the run's seed mapping (cutoff 0 = none)
  step             the checkpoint step the mask comes from
A reader checks every field and refuses a newer format version, naming the file.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from sat3d_jax.errors import InputError
from sat3d_jax.versioned_npz import read_versioned_npz

FORMAT = "sat3d-mask"
FORMAT_VERSION = 1
_FIELDS = ("format", "format_version", "attributes", "mask_logits", "temperature",
           "include_torgb", "generator", "generator_seed", "generator_fingerprint",
           "truncation_psi", "truncation_cutoff", "step")


@dataclasses.dataclass(frozen=True)
class MaskFile:
  """The contents of a mask file (module docstring)."""
  attributes: tuple[str, ...]
  mask_logits: np.ndarray
  temperature: float
  include_torgb: bool
  generator: str
  generator_seed: int
  generator_fingerprint: str
  truncation_psi: float
  truncation_cutoff: int
  step: int


def write_mask_file(path: str | os.PathLike, mask: MaskFile) -> None:
  """Writes `mask` in the format `read_mask_file` reads."""
  np.savez(path, format=np.asarray(FORMAT), format_version=np.int32(FORMAT_VERSION),
           attributes=np.asarray(mask.attributes, dtype=str),
           mask_logits=np.asarray(mask.mask_logits, np.float32),
           temperature=np.float64(mask.temperature), include_torgb=np.bool_(mask.include_torgb),
           generator=np.asarray(mask.generator), generator_seed=np.int64(mask.generator_seed),
           generator_fingerprint=np.asarray(mask.generator_fingerprint),
           truncation_psi=np.float64(mask.truncation_psi),
           truncation_cutoff=np.int32(mask.truncation_cutoff), step=np.int64(mask.step))


def read_mask_file(path: str | os.PathLike) -> MaskFile:
  """Reads a mask file; an InputError names the file and what is wrong with it."""
  data = read_versioned_npz(path, FORMAT, FORMAT_VERSION, _FIELDS[2:], "mask file",
                            "; a run's mask is written by the studio's 'mask file' button")
  attributes = tuple(str(a) for a in np.atleast_1d(data["attributes"]))
  logits = np.asarray(data["mask_logits"])
  if logits.ndim != 2 or logits.shape[0] != len(attributes) + 1 or \
      not np.issubdtype(logits.dtype, np.floating) or not np.all(np.isfinite(logits)):
    raise InputError(f"{path}: mask_logits must be finite floats [A + 1, C] with A = "
                     f"{len(attributes)} attributes, got {logits.dtype} {logits.shape}")
  temperature = float(data["temperature"])
  if not temperature > 0:
    raise InputError(f"{path}: temperature must be > 0, got {temperature}")
  return MaskFile(attributes=attributes, mask_logits=logits.astype(np.float32),
                  temperature=temperature, include_torgb=bool(data["include_torgb"]),
                  generator=str(data["generator"]), generator_seed=int(data["generator_seed"]),
                  generator_fingerprint=str(data["generator_fingerprint"]),
                  truncation_psi=float(data["truncation_psi"]),
                  truncation_cutoff=int(data["truncation_cutoff"]), step=int(data["step"]))
