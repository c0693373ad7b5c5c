"""StyleGAN2 synthesis layers and blocks (EG3D's networks_stylegan2 / superresolution), NHWC.

Each modulated layer is driven by its StyleSpace vector (the affine output), so the same code
runs the generator from ws (styles computed here) or from edited styles.
"""
from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax.eg3d import ops
from sat3d_jax.eg3d.architecture import BlockSpec, LayerSpec

NOISE_MODES = ("const", "random", "none")


def affine_style(params: Mapping[str, jax.Array], layer: LayerSpec, w: jax.Array) -> jax.Array:
  """StyleSpace vector of a layer: its affine FC of w. The stored bias already holds the +1."""
  return ops.fully_connected(w, params[f"{layer.name}.affine.weight"],
                             params[f"{layer.name}.affine.bias"])


def _noise(params, layer: LayerSpec, batch: int, noise_mode: str,
           key: Optional[jax.Array]) -> Optional[jax.Array]:
  strength = params[f"{layer.name}.noise_strength"]
  if noise_mode == "const":
    return (params[f"{layer.name}.noise_const"] * strength)[None, :, :, None]
  if noise_mode == "random":
    if key is None:
      raise ValueError("noise_mode='random' needs an rng key")
    r = layer.resolution
    return jax.random.normal(key, (batch, r, r, 1), jnp.float32) * strength
  if noise_mode == "none":
    return None
  raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")


def synthesis_layer(params, layer: LayerSpec, x: jax.Array, style: jax.Array, *,
                    noise_mode: str, key: Optional[jax.Array], fused: bool,
                    dtype) -> jax.Array:
  """SynthesisLayer: modulated 3x3 conv (up 1 or 2), noise, bias, lrelu * sqrt 2, clamp."""
  noise = _noise(params, layer, x.shape[0], noise_mode, key)
  bias = params[f"{layer.name}.bias"]

  def bias_lrelu(y):
    return ops.bias_act(y, bias, act="lrelu", clamp=layer.conv_clamp).astype(dtype)

  return ops.modulated_conv2d(x, params[f"{layer.name}.weight"], style, demodulate=True,
                              up=layer.up, noise=noise, fused=fused, dtype=dtype,
                              epilogue=bias_lrelu)


def torgb_layer(params, layer: LayerSpec, x: jax.Array, style: jax.Array, *, fused: bool,
                dtype) -> jax.Array:
  """ToRGBLayer: styles * 1/sqrt(in_channels), 1x1 modulated conv without demodulation, bias,
  clamp. Returns float32 (the image path stays float32 as in the official code)."""
  weight = params[f"{layer.name}.weight"]
  gain = 1.0 / np.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
  y = ops.modulated_conv2d(x, weight, style * gain, demodulate=False, fused=fused, dtype=dtype)
  return ops.bias_act(y, params[f"{layer.name}.bias"], clamp=layer.conv_clamp)


def synthesis_block(params, block: BlockSpec, x: Optional[jax.Array], img: Optional[jax.Array],
                    styles: Mapping[str, jax.Array], *, noise_mode: str,
                    key: Optional[jax.Array], fused: bool, dtype):
  """SynthesisBlock ('skip' architecture) or SynthesisBlockNoUp (block.up False).

  Returns (x, img). The first backbone block (in_channels 0) starts from the learned const.
  In a SynthesisBlock the incoming img is up-sampled (upsample2d) before the toRGB output is
  added; SynthesisBlockNoUp adds to it as is.
  """
  batch = next(iter(styles.values())).shape[0]
  if block.in_channels == 0:
    const = params[f"{block.name}.const"].transpose(1, 2, 0)  # [C,H,W] -> [H,W,C]
    x = jnp.broadcast_to(const[None], (batch,) + const.shape).astype(dtype)
  for i, layer in enumerate(block.layers):
    layer_key = None if key is None else jax.random.fold_in(key, i)
    if layer.kind == "conv":
      x = synthesis_layer(params, layer, x, styles[layer.name], noise_mode=noise_mode,
                          key=layer_key, fused=fused, dtype=dtype)
    else:
      if img is not None and block.up:
        img = ops.upsample2d(img)
      y = torgb_layer(params, layer, x, styles[layer.name], fused=fused, dtype=dtype)
      img = y if img is None else img + y
  return x, img
