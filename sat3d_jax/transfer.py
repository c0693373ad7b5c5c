"""The meta attribute mask matrix and the style edit (SAT3D; docs/sat3d.md, "What this project
decides").

    M        [A + 1, C]  learnable logits: A attributes plus one "other" row (last) that absorbs
                         channels no attribute owns; C = flat StyleSpace channels in the official
                         layer order of `Generator.styles()`.
    P        = softmax(M / tau, axis=attributes): each channel's control probabilities.
    m_T      = sum_{a in T} P[a]               (a target set T as a multi-hot row)
    s_edit   = s_src + delta * m_T * (s_ref - s_src)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax.errors import UnknownNameError


def init_mask_logits(num_attributes: int, num_channels: int, other_logit: float = 0.0
                     ) -> jax.Array:
  """M at initialisation: every attribute row 0 and the "other" row `other_logit`.

  A positive `other_logit` starts training from small edits (most of each channel's probability
  on "other"), so early steps do not repaint the whole face.
  """
  m = jnp.zeros((num_attributes + 1, num_channels), jnp.float32)
  return m.at[-1].set(other_logit)


def mask_probabilities(mask_logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """P = softmax(M / tau) over the attribute axis (axis 0): [A + 1, C], columns sum to 1."""
  return jax.nn.softmax(mask_logits / temperature, axis=0)


def target_mask(probabilities: jax.Array, targets: jax.Array) -> jax.Array:
  """m_T [B, C] = targets [B, A] (multi-hot) @ P[:A]; the "other" row never edits."""
  return jnp.matmul(targets.astype(probabilities.dtype), probabilities[:-1],
                    precision=jax.lax.Precision.HIGHEST)


def edit_styles(s_src: jax.Array, s_ref: jax.Array, mask: jax.Array, delta=1.0) -> jax.Array:
  """s_edit = s_src + delta * m_T * (s_ref - s_src), on flat styles [B, C]."""
  return s_src + delta * mask * (s_ref - s_src)


def targets_from_names(names, attributes) -> np.ndarray:
  """Multi-hot [A] row for attribute names; an unknown name is an error listing the known ones."""
  attributes = list(attributes)
  row = np.zeros(len(attributes), np.float32)
  for name in names:
    if name not in attributes:
      raise UnknownNameError(f"unknown attribute {name!r}; this model knows: "
                             f"{', '.join(attributes)}")
    row[attributes.index(name)] = 1.0
  return row
