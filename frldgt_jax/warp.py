"""Differentiable bilinear backward warping of NHWC images by a per-pixel displacement field.

Convention (used by the DGM and everything downstream): a displacement field ``flow`` of shape
[B, H, W, 2] holds (dx, dy) in pixels, x to the right (width axis), y down (height axis), and

    warp(image, flow)[b, y, x] = image[b, y + dy[b, y, x], x + dx[b, y, x]]   (bilinear)

i.e. ``flow`` is the backward displacement from the output grid into the source image. If the
content of ``image`` moved right by s pixels to give ``target``, then warp(image, flow) matches
``target`` for dx = -s. Samples that fall outside the image take the value of the nearest border
pixel (coordinates are clamped), so every output pixel is defined and the result is continuous in
``flow``; gradients reach ``flow`` through the bilinear weights.

Horizontal mirroring: with flip(a) = a[:, :, ::-1], warp(flip(image), flip(flow) * (-1, 1)) equals
flip(warp(image, flow)); this is why a mirrored displacement field has dx negated.
"""
import jax
import jax.numpy as jnp


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """Bilinearly samples `image` [B,H,W,C] at (x + dx, y + dy) for `flow` [B,H,W,2] = (dx, dy).

  Returns an array shaped like `image`, in `image`'s dtype promoted with `flow`'s (float32 for
  float32 inputs). Out-of-range coordinates are clamped to the border.
  """
  if image.ndim != 4 or flow.ndim != 4 or flow.shape[-1] != 2:
    raise ValueError(f'warp expects image [B,H,W,C] and flow [B,H,W,2]; got image {image.shape} '
                     f'and flow {flow.shape}')
  if image.shape[:3] != flow.shape[:3]:
    raise ValueError(f'warp: image {image.shape} and flow {flow.shape} differ in [B,H,W]')
  batch, height, width, channels = image.shape
  dtype = jnp.promote_types(image.dtype, flow.dtype)
  image = image.astype(dtype)
  flow = flow.astype(dtype)

  grid_y, grid_x = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype),
                                indexing='ij')
  x = jnp.clip(grid_x[None] + flow[..., 0], 0.0, width - 1.0)
  y = jnp.clip(grid_y[None] + flow[..., 1], 0.0, height - 1.0)
  x0f = jnp.floor(x)
  y0f = jnp.floor(y)
  wx = (x - x0f)[..., None]  # gradients w.r.t. the flow flow through these weights
  wy = (y - y0f)[..., None]
  x0 = x0f.astype(jnp.int32)
  y0 = y0f.astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, width - 1)
  y1 = jnp.minimum(y0 + 1, height - 1)

  flat = image.reshape(batch, height * width, channels)

  def gather(yi, xi):
    index = (yi * width + xi).reshape(batch, height * width, 1)
    return jnp.take_along_axis(flat, index, axis=1).reshape(batch, height, width, channels)

  top = gather(y0, x0) * (1.0 - wx) + gather(y0, x1) * wx
  bottom = gather(y1, x0) * (1.0 - wx) + gather(y1, x1) * wx
  return top * (1.0 - wy) + bottom * wy
