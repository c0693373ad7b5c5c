"""StyleSpace and the tri-plane backbone (StyleGAN2 synthesis network at 256 px, 96 channels)."""
from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from sat3d_jax.eg3d import layers
from sat3d_jax.eg3d.architecture import PLANE_CHANNELS, Arch


def styles_from_ws(params: Mapping[str, jax.Array], arch: Arch,
                   ws: jax.Array) -> dict[str, jax.Array]:
  """{layer name: [B, dim]} StyleSpace vectors of every modulated layer, official order.

  Backbone block b{res} reads ws[i : i + num_conv + 1] (its toRGB shares a w with the next
  block's conv0); all super-resolution layers read ws[:, -1].
  """
  if ws.ndim != 3 or ws.shape[1:] != (arch.num_ws, arch.w_dim):
    raise ValueError(f"ws must be [B, {arch.num_ws}, {arch.w_dim}], got {ws.shape}")
  ws = ws.astype(jnp.float32)
  return {l.name: layers.affine_style(params, l, ws[:, l.w_index]) for l in arch.layers}


def backbone_planes(params: Mapping[str, jax.Array], arch: Arch,
                    styles: Mapping[str, jax.Array], *, noise_mode: str = "const",
                    key: Optional[jax.Array] = None, fused: bool = False,
                    dtype=jnp.float32) -> jax.Array:
  """Tri-planes [B, 3, R, R, 32] (R = 256) from the backbone styles.

  Plane p holds backbone output channels [32p, 32p + 32) (the official view(N, 3, 32, H, W)).
  """
  x = img = None
  for i, block in enumerate(arch.backbone_blocks):
    block_key = None if key is None else jax.random.fold_in(key, i)
    x, img = layers.synthesis_block(params, block, x, img, styles, noise_mode=noise_mode,
                                    key=block_key, fused=fused, dtype=dtype)
  b, h, w, _ = img.shape
  return img.reshape(b, h, w, 3, PLANE_CHANNELS).transpose(0, 3, 1, 2, 4)
