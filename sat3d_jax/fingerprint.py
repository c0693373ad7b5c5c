"""A generator's fingerprint: which weights a mask file or a style file was made with.

    fingerprint = generator_fingerprint(G)        # 'eg3d-' + 16 hex digits

SHA-256 over the sorted parameter names, shapes and float32 bytes, so two loads of the same
weights (a converted directory, its pickle, a preset with the same seed) agree and any other
weights, a pivotal-tuned copy included, differ.
"""
from __future__ import annotations

import hashlib

import numpy as np

_cache: dict[int, tuple[object, str]] = {}


def params_fingerprint(params) -> str:
  """'eg3d-' + the first 16 hex digits of SHA-256 over the params (module docstring)."""
  digest = hashlib.sha256()
  for name in sorted(params):
    value = np.ascontiguousarray(np.asarray(params[name], np.float32))
    digest.update(f"{name}:{value.shape};".encode())
    digest.update(value.tobytes())
  return "eg3d-" + digest.hexdigest()[:16]


def generator_fingerprint(generator) -> str:
  """The fingerprint of a Generator's params (computed once per params object)."""
  params = generator.params
  cached = _cache.get(id(params))
  if cached is None or cached[0] is not params:
    cached = (params, params_fingerprint(params))
    _cache[id(params)] = cached
  return cached[1]
