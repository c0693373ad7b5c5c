"""Mapping network z, c -> ws of TriPlaneGenerator (StyleGAN2's MappingNetwork, camera
conditioned)."""
from __future__ import annotations

from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp

from sat3d_jax.eg3d import ops
from sat3d_jax.eg3d.architecture import Arch

_PREFIX = "backbone.mapping"


def mapping(params: Mapping[str, jax.Array], arch: Arch, z: jax.Array, c: jax.Array,
            truncation_psi: Union[float, jax.Array, None] = 1.0,
            truncation_cutoff: Optional[int] = None) -> jax.Array:
  """ws [B, num_ws, w_dim] from z [B, z_dim] and the conditioning camera c [B, c_dim].

  Official: c is multiplied by rendering_kwargs c_scale (zeroed when c_gen_conditioning_zero);
  x = concat(normalize(z), normalize(embed(c))); fc layers (lrelu, lr multiplier 0.01);
  broadcast to num_ws; ws[:, :cutoff] = w_avg + psi * (ws - w_avg) when psi != 1.
  """
  if z.shape[-1] != arch.z_dim or c.shape[-1] != arch.c_dim:
    raise ValueError(f"mapping expects z [B, {arch.z_dim}] and c [B, {arch.c_dim}], "
                     f"got {z.shape} and {c.shape}")
  c = c.astype(jnp.float32)
  if arch.c_conditioning_zero:
    c = jnp.zeros_like(c)
  c = c * arch.c_scale
  x = ops.normalize_2nd_moment(z.astype(jnp.float32))
  y = ops.fully_connected(c, params[f"{_PREFIX}.embed.weight"], params[f"{_PREFIX}.embed.bias"])
  x = jnp.concatenate([x, ops.normalize_2nd_moment(y)], axis=1)
  for i in range(arch.mapping_layers):
    x = ops.fully_connected(x, params[f"{_PREFIX}.fc{i}.weight"], params[f"{_PREFIX}.fc{i}.bias"],
                            lr_multiplier=arch.mapping_lr_multiplier, activation="lrelu")
  ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], arch.num_ws, x.shape[1]))
  if truncation_psi is None or (isinstance(truncation_psi, (int, float)) and truncation_psi == 1):
    return ws  # the official code skips the lerp for psi == 1
  w_avg = params[f"{_PREFIX}.w_avg"]
  cutoff = arch.num_ws if truncation_cutoff is None else int(truncation_cutoff)
  truncated = w_avg + truncation_psi * (ws[:, :cutoff] - w_avg)
  return jnp.concatenate([truncated, ws[:, cutoff:]], axis=1)
