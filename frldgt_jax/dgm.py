"""Displacement Generation Module (DGM): a small U-Net predicting onset -> target displacement.

docs/frldgt.md (project decision, the paper's exact network is unknown): a convolutional U-Net on
concat(onset, target) grayscale frames predicts a 2-channel field (dx, dy) in pixels with a
zero-initialised head, so training starts from the identity warp. It is trained
self-supervised: warp(onset, flow) (frldgt_jax.warp convention: the output at p samples the onset
at p + flow(p)) should match the target under a photometric L1 or Charbonnier penalty, plus a
first-order smoothness term on the field (optionally edge-aware on the target image).

Inputs are grayscale float frames in [0, 1], [B, S, S, 1] (the uint8 TFDS frames divided by 255).
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from frldgt_jax.warp import warp

# The DGM's photometric terms (config model.dgm.photometric): a robust penalty of the intensity
# difference, or of the census distance (census_distance).
PHOTOMETRIC = ('charbonnier', 'l1', 'census')


class ConvBlock(nn.Module):
  """`num_convs` 3x3 convolutions with leaky ReLU; the first one may stride by 2."""
  features: int
  num_convs: int = 2
  stride: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_convs):
      stride = self.stride if i == 0 else 1
      x = nn.Conv(self.features, (3, 3), strides=(stride, stride), padding='SAME',
                  dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.leaky_relu(x, 0.1)
    return x


def space_to_depth(x, factor: int):
  """[B,H,W,C] -> [B,H/f,W/f,C*f*f]: each f x f block of pixels becomes one pixel's channels."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // factor, factor, w // factor, factor, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, factor * factor * c)


class DGM(nn.Module):
  """U-Net: (onset, target) [B,S,S,1] each -> displacement [B,S,S,2] float32, (dx, dy) pixels.

  The two frames are stacked and folded by space-to-depth (`input_stride` f: every f x f block
  becomes 2 f^2 channels, losslessly), so the U-Net runs at S/f, S/2f, ... with `widths`
  channels per level; the field it predicts at S/f is bilinearly upsampled to S (its values are
  already in full-resolution pixels). Micro-expression motion is smooth over a few pixels, and
  the fold makes the convolutions cheap on CPU. S must be divisible by f * 2**(len(widths) - 1).
  """
  widths: Sequence[int] = (16, 32, 32)
  convs_per_level: int = 2
  input_stride: int = 4
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, onset, target):
    if onset.shape != target.shape or onset.ndim != 4 or onset.shape[-1] != 1:
      raise ValueError(f'DGM expects grayscale onset and target [B,S,S,1] of equal shape; got '
                       f'{onset.shape} and {target.shape}')
    levels = len(self.widths)
    batch, height, width, _ = onset.shape
    multiple = self.input_stride * 2 ** (levels - 1)
    if height % multiple or width % multiple:
      raise ValueError(f'DGM with input_stride {self.input_stride} and {levels} levels needs '
                       f'image sides divisible by {multiple}; got {(height, width)}')
    # Centre [0, 1] frames around zero, then fold f x f pixel blocks into channels.
    x = jnp.concatenate([onset, target], axis=-1).astype(self.dtype) * 2.0 - 1.0
    x = space_to_depth(x, self.input_stride)
    skips = []
    for i, features in enumerate(self.widths):
      x = ConvBlock(features, self.convs_per_level, stride=1 if i == 0 else 2, dtype=self.dtype,
                    name=f'down_{i}')(x)
      skips.append(x)
    for i in reversed(range(levels - 1)):
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method='nearest')
      x = jnp.concatenate([x, skips[i]], axis=-1)
      x = ConvBlock(self.widths[i], self.convs_per_level, dtype=self.dtype, name=f'up_{i}')(x)
    # Zero-initialised head: the initial field is exactly zero (identity warp).
    flow = nn.Conv(2, (3, 3), padding='SAME', dtype=self.dtype, param_dtype=jnp.float32,
                   kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros,
                   name='head')(x).astype(jnp.float32)
    if self.input_stride > 1:
      flow = jax.image.resize(flow, (batch, height, width, 2), method='bilinear')
    return flow


def dgm_from_config(config: ml_collections.ConfigDict, dtype=jnp.float32, **kwargs) -> DGM:
  """Builds the DGM from the `model.dgm` section of an FRL-DGT config (kwargs: e.g. name)."""
  return DGM(widths=tuple(config.widths), convs_per_level=config.convs_per_level,
             input_stride=config.input_stride, dtype=dtype, **kwargs)


def photometric_penalty(residual, kind: str, eps: float = 1e-3, alpha: float = 0.45):
  """Elementwise robust penalty: 'l1' = |r|; 'charbonnier' = (r^2 + eps^2)^alpha.

  alpha = 0.45 is the generalised Charbonnier of Sun, Roth & Black (CVPR 2010).
  """
  if kind == 'l1':
    return jnp.abs(residual)
  if kind == 'charbonnier':
    return (residual ** 2 + eps ** 2) ** alpha
  raise ValueError(f"unknown photometric penalty {kind!r}; use 'l1' or 'charbonnier'")


def census_transform(image, patch: int = 7):
  """Soft census signature of every pixel: [B,H,W,1] in [0, 1] -> [B,H,W,patch^2].

  Each channel compares the pixel with one neighbour of its patch x patch window (grey levels,
  d / sqrt(0.81 + d^2), the soft ternary census of Meister, Hur & Roth, UnFlow, AAAI 2018).
  It depends on local intensity *differences*, so a brightness change of the whole frame leaves
  it unchanged, and each channel responds to a sub-pixel shift with the full local gradient
  instead of the small residual a plain intensity difference leaves.
  """
  kernel = jnp.eye(patch * patch, dtype=jnp.float32).reshape(patch, patch, 1, patch * patch)
  grey = image.astype(jnp.float32) * 255.0
  neighbours = jax.lax.conv_general_dilated(grey, kernel, (1, 1), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  diff = neighbours - grey
  return diff / jnp.sqrt(0.81 + diff * diff)


def census_distance(a, b, patch: int = 7):
  """Per-pixel soft Hamming distance [B,H,W,1] between the census signatures of a and b;
  pixels within patch // 2 of the border (whose windows leave the image) count zero."""
  d = (census_transform(a, patch) - census_transform(b, patch)) ** 2
  dist = jnp.mean(d / (0.1 + d), axis=-1, keepdims=True)
  r = patch // 2
  mask = jnp.zeros(a.shape[1:3], jnp.float32).at[r:-r, r:-r].set(1.0)
  return dist * mask[None, :, :, None]


def smoothness_penalty(flow, image=None, edge_alpha: float = 0.0):
  """Per-example mean absolute first-order difference of `flow` [B,H,W,2] along x and y.

  With edge_alpha > 0 and `image` [B,H,W,C] given, each difference is weighted by
  exp(-edge_alpha * |image difference|) (channel mean), so the field may change at image edges.
  Returns [B].
  """
  flow = flow.astype(jnp.float32)
  dx = jnp.abs(flow[:, :, 1:] - flow[:, :, :-1])
  dy = jnp.abs(flow[:, 1:] - flow[:, :-1])
  if edge_alpha > 0:
    if image is None:
      raise ValueError('edge-aware smoothness needs the image')
    image = image.astype(jnp.float32)
    wx = jnp.exp(-edge_alpha * jnp.mean(jnp.abs(image[:, :, 1:] - image[:, :, :-1]), -1,
                                        keepdims=True))
    wy = jnp.exp(-edge_alpha * jnp.mean(jnp.abs(image[:, 1:] - image[:, :-1]), -1,
                                        keepdims=True))
    dx, dy = dx * wx, dy * wy
  return 0.5 * (jnp.mean(dx, axis=(1, 2, 3)) + jnp.mean(dy, axis=(1, 2, 3)))


def dgm_loss_terms(onset, target, flow, config: ml_collections.ConfigDict):
  """Self-supervised DGM loss terms per example, float32.

  Args:
    onset, target: [B,S,S,1] frames in [0, 1].
    flow: [B,S,S,2] displacement (dx, dy) in pixels, warp(onset, flow) ~ target.
    config: the `dgm` sub-config (photometric, charbonnier_eps, charbonnier_alpha,
      smooth_weight, edge_alpha).
  Returns:
    dict of [B] arrays: 'photometric', 'smoothness' and 'dgm_loss' =
    photometric + smooth_weight * smoothness.
  """
  onset = onset.astype(jnp.float32)
  target = target.astype(jnp.float32)
  warped = warp(onset, flow.astype(jnp.float32))
  if config.photometric == 'census':  # Charbonnier of the (non-negative) census distance
    residual, penalty = census_distance(warped, target), 'charbonnier'
  else:
    residual, penalty = warped - target, config.photometric
  photometric = jnp.mean(photometric_penalty(residual, penalty, config.charbonnier_eps,
                                             config.charbonnier_alpha), axis=(1, 2, 3))
  smoothness = smoothness_penalty(flow, target, config.edge_alpha)
  return {'photometric': photometric, 'smoothness': smoothness,
          'dgm_loss': photometric + config.smooth_weight * smoothness}


def pretrain_loss(params, dgm: DGM, onset, target, config: ml_collections.ConfigDict):
  """Stage-1 self-supervised loss on frame pairs (i < j inside training clips only).

  `params` are the DGM's variables ({'params': ...}); returns (scalar loss, dict of scalar
  batch means). Loading the result into the full model: see model.with_pretrained_dgm.
  """
  flow = dgm.apply(params, onset, target)
  terms = dgm_loss_terms(onset, target, flow, config)
  means = {k: jnp.mean(v) for k, v in terms.items()}
  return means['dgm_loss'], means
