"""SAT3D's objective terms (docs/sat3d.md): QMM target / preserve losses, mask sparsity, identity.

    L_target   = sum_{a in T}     D(q_a(x_edit), q_a(x_ref))
    L_preserve = sum_{a not in T} D(q_a(x_edit), q_a(x_src))
with D the symmetric KL or L1 distance between the two group distributions (sat3d_jax.qmm).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp


def attribute_losses(q_edit: Mapping[str, jax.Array], q_src: Mapping[str, jax.Array],
                     q_ref: Mapping[str, jax.Array], targets: jax.Array,
                     attributes: Sequence[str], distance: Callable[[jax.Array, jax.Array],
                                                                   jax.Array]
                     ) -> tuple[jax.Array, jax.Array]:
  """(L_target [B], L_preserve [B]) for multi-hot `targets` [B, A] over `attributes`."""
  to_ref = jnp.stack([distance(q_edit[a], q_ref[a]) for a in attributes], axis=-1)
  to_src = jnp.stack([distance(q_edit[a], q_src[a]) for a in attributes], axis=-1)
  return jnp.sum(targets * to_ref, axis=-1), jnp.sum((1.0 - targets) * to_src, axis=-1)


def sparsity(probabilities: jax.Array) -> jax.Array:
  """Mean attribute mass per channel (1 - P["other"]): small when few channels are edited."""
  return jnp.mean(jnp.sum(probabilities[:-1], axis=0))


def assignment_entropy(probabilities: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Mean entropy of each channel's control distribution: small when channels commit."""
  return jnp.mean(-jnp.sum(probabilities * jnp.log(probabilities + eps), axis=0))


def identity_loss(embed_src: jax.Array, embed_edit: jax.Array) -> jax.Array:
  """1 - cos(e_src, e_edit) per example, for unit-norm image embeddings [B, D]."""
  return 1.0 - jnp.sum(embed_src * embed_edit, axis=-1)
