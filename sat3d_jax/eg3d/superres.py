"""Super-resolution modules of EG3D (training/superresolution.py), NHWC."""
from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from sat3d_jax.eg3d import layers, ops
from sat3d_jax.eg3d.architecture import Arch


def superresolution(params: Mapping[str, jax.Array], arch: Arch, feature_image: jax.Array,
                    styles: Mapping[str, jax.Array], *, key: Optional[jax.Array] = None,
                    fused: bool = False, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """(image [B, H, W, 3], image_raw [B, r, r, 3]) from the neural feature image [B, r, r, 32].

  The rgb input is the first 3 feature channels. Both are resized (bilinear, antialias per
  rendering_kwargs sr_antialias) to the module's input resolution when needed, then run through
  block0 and block1, whose six layers all use ws[:, -1]. Noise follows rendering_kwargs
  superresolution_noise_mode ('none' for the released models).

  image_raw is the rgb input, except in one official quirk reproduced here: when block0 is a
  SynthesisBlockNoUp and no resize happened, the official code adds block0's toRGB output in
  place into `rgb`, a view of the returned image_raw (Hybrid2X at neural resolution 64, i.e.
  the released ShapeNet-cars model), so image_raw = rgb + toRGB(block0).
  """
  spec = arch.sr_spec
  r = feature_image.shape[1]
  image_raw = feature_image[..., :3]
  resize = (r != spec.input_resolution) if spec.resize_if == "ne" else (r < spec.input_resolution)
  if resize:
    feature_image = ops.resize_bilinear(feature_image, spec.input_resolution,
                                        antialias=arch.sr_antialias)
  elif r != spec.input_resolution:
    raise ValueError(f"{arch.sr_module} needs a {spec.input_resolution} px neural image, got {r}")
  x, img = feature_image, feature_image[..., :3]
  noise_mode = arch.render.superresolution_noise_mode
  for i, block in enumerate(arch.sr_blocks):
    block_key = None if key is None else jax.random.fold_in(key, i)
    x, img = layers.synthesis_block(params, block, x, img, styles, noise_mode=noise_mode,
                                    key=block_key, fused=fused, dtype=dtype)
    if i == 0 and not block.up and not resize:
      image_raw = img  # the in-place add_ into the image_raw view (see docstring)
  return img, image_raw
