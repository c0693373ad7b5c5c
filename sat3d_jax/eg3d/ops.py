"""Array ops of the StyleGAN2 / EG3D generator, NHWC, written for XLA.

Every op reproduces the official PyTorch op (torch_utils/ops in the EG3D code) to float32 rounding;
/work/shared/design/eg3d.md lists the facts used here. Resampling with the [1, 3, 3, 1] filter is
written as polyphase slices and shifted adds instead of zero-insertion convolutions, which does
the same arithmetic without multiplying by the inserted zeros.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SQRT2 = float(np.sqrt(2.0))
LRELU_ALPHA = 0.2  # bias_act's 'lrelu' default slope.

# The [1, 3, 3, 1] resampling filter every EG3D block registers (upfirdn2d.setup_filter): the
# outer product normalised to sum 1. Used to check stored buffers; the ops below apply it in
# separable polyphase form.
RESAMPLE_FILTER_2D = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64.0


def precision_for(dtype) -> lax.Precision:
  """float32 compute means float32 arithmetic (HIGHEST: no TF32 / bf16 passes on GPU / TPU);
  lower compute dtypes use the backend default."""
  return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
  """x * rsqrt(mean(x^2) + eps) over `axis` (StyleGAN2's normalize_2nd_moment)."""
  return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def bias_act(x: jax.Array, b: Optional[jax.Array] = None, *, act: str = "linear",
             gain: Optional[float] = None, clamp: Optional[float] = None) -> jax.Array:
  """bias_act: x + b, activation, times gain (sqrt 2 for lrelu by default), clamp to +-clamp.

  The bias is added along the last (channel) axis.
  """
  if b is not None:
    x = x + b.astype(x.dtype)
  if act == "linear":
    default_gain = 1.0
  elif act == "lrelu":
    x = jnp.where(x >= 0, x, x * LRELU_ALPHA)
    default_gain = SQRT2
  else:
    raise ValueError(f"unsupported activation {act!r} (EG3D uses 'linear' and 'lrelu')")
  gain = default_gain if gain is None else gain
  if gain != 1:
    x = x * gain
  if clamp is not None and clamp >= 0:
    x = jnp.clip(x, -clamp, clamp)
  return x


def fully_connected(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array], *,
                    lr_multiplier: float = 1.0, activation: str = "linear",
                    dtype=jnp.float32) -> jax.Array:
  """StyleGAN2 FullyConnectedLayer with its equalized-learning-rate gains applied at run time.

  y = act(x @ (W * lr_mul / sqrt(fan_in))^T + b * lr_mul) * act_gain.

  Args:
    x: [..., in_features].
    weight: [out_features, in_features] (the stored torch layout).
    bias: [out_features] or None.
    lr_multiplier: the layer's learning-rate multiplier.
    activation: 'linear' or 'lrelu'.
    dtype: compute dtype of the matmul (accumulation is float32).
  """
  weight_gain = lr_multiplier / np.sqrt(weight.shape[1])
  w = weight * weight_gain
  y = jnp.matmul(x.astype(dtype), w.T.astype(dtype), preferred_element_type=jnp.float32,
                 precision=precision_for(dtype))
  b = None if bias is None else bias * lr_multiplier
  return bias_act(y, b, act=activation)


def _polyphase_2x(phases: dict, row_taps: tuple, col_taps: tuple, n: int, m: int) -> jax.Array:
  """Interleaves 2x2 output phases, each a weighted sum of shifted input arrays (NHWC).

  Output pixel (2i + a, 2j + b) = sum over (src_r, off_r, c_r) in row_taps[a] and
  (src_c, off_c, c_c) in col_taps[b] of c_r * c_c * phases[src_r + src_c][i + off_r, j + off_c].
  One elementwise expression, so XLA fuses it into a single pass.
  """
  out = []
  for a in range(2):
    row = []
    for b in range(2):
      acc = None
      for src_r, off_r, c_r in row_taps[a]:
        for src_c, off_c, c_c in col_taps[b]:
          term = phases[src_r + src_c][:, off_r:off_r + n, off_c:off_c + m] * (c_r * c_c)
          acc = term if acc is None else acc + term
      row.append(acc)
    out.append(jnp.stack(row, axis=3))  # [B, n, m, 2, C]
  y = jnp.stack(out, axis=2)  # [B, n, 2, m, 2, C]
  bsz, _, _, _, _, c = y.shape
  return y.reshape(bsz, 2 * n, 2 * m, c)


# upsample2d per axis, on x padded by 1:
# y[2i] = (x[i-1] + 3x[i]) / 4, y[2i+1] = (3x[i] + x[i+1]) / 4.
_UPSAMPLE_TAPS = ((("", 0, 0.25), ("", 1, 0.75)), (("", 1, 0.75), ("", 2, 0.25)))


def upsample2d(x: jax.Array) -> jax.Array:
  """upfirdn2d.upsample2d(x, [1,3,3,1]) of the skip (image) path, NHWC, 2x.

  Official: zero insertion after each sample, pad [2, 1, 2, 1], filter with gain 4. Per axis that
  is y[2i] = (x[i-1] + 3 x[i]) / 4 and y[2i+1] = (3 x[i] + x[i+1]) / 4 with zero padding.
  """
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return _polyphase_2x({"": xp}, _UPSAMPLE_TAPS, _UPSAMPLE_TAPS, h, w)


# FIR [1,3,3,1]/4 with padding 1 over t = interleave(e, o), the 2n+1 outputs of a stride-2
# transposed conv with a 3-tap kernel (even phase e: n+1 values, odd phase o: n values, zero
# padded to n+2 so o_p[k] = o[k-1]): y[m] = (t[m-1] + 3t[m] + 3t[m+1] + t[m+2]) / 4, i.e.
# y[2i] = (o[i-1] + 3e[i] + 3o[i] + e[i+1]) / 4, y[2i+1] = (e[i] + 3o[i] + 3e[i+1] + o[i+1]) / 4.
_UPCONV_FIR_TAPS = ((("o", 0, 0.25), ("e", 0, 0.75), ("o", 1, 0.75), ("e", 1, 0.25)),
                    (("e", 0, 0.25), ("o", 1, 0.75), ("e", 1, 0.75), ("o", 2, 0.25)))


def _conv_nhwc(x: jax.Array, w_hwio: jax.Array, padding, groups: int, dtype) -> jax.Array:
  return lax.conv_general_dilated(
      x.astype(dtype), w_hwio.astype(dtype), window_strides=(1, 1), padding=padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
      preferred_element_type=jnp.float32, precision=precision_for(dtype))


def _to_hwio(w: jax.Array) -> jax.Array:
  """[..., O, I, kh, kw] torch layout -> HWIO; a leading group axis G is folded into O (G-major)."""
  if w.ndim == 4:
    return w.transpose(2, 3, 1, 0)
  g, o, i, kh, kw = w.shape
  return w.transpose(3, 4, 2, 0, 1).reshape(kh, kw, i, g * o)


# Polyphase decomposition of torch's conv_transpose2d(stride 2) with a 3x3 kernel (no flip): along
# one axis t[2q + k] += x[q] * W[k], so the even outputs are a 2-tap correlation of x padded by 1
# with [W[2], W[0]] (n+1 values) and the odd outputs a 1-tap one with [W[1]]; padding x by 1 for
# the odd phase too gives its n values plus a zero at each end, the layout the FIR taps above use.
# Per axis: (kernel taps, input padding).
_PHASE_TAPS = {"e": (slice(None, None, -2), (1, 1)), "o": (slice(1, 2), (1, 1))}


def _upconv_fir(x: jax.Array, w: jax.Array, groups: int, dtype) -> jax.Array:
  """conv2d_resample(up=2, padding=1, 3x3 kernel): transposed conv stride 2, then FIR gain 4."""
  if w.shape[-2:] != (3, 3):
    raise ValueError(f"up-sampling modulated conv expects a 3x3 kernel, got {w.shape}")
  _, h, wd, _ = x.shape
  phases = {}
  for ry, (rows, pad_y) in _PHASE_TAPS.items():
    for rx, (cols, pad_x) in _PHASE_TAPS.items():
      k = w[..., rows, :][..., cols]
      phases[ry + rx] = _conv_nhwc(x, _to_hwio(k), (pad_y, pad_x), groups, dtype)
  return _polyphase_2x(phases, _UPCONV_FIR_TAPS, _UPCONV_FIR_TAPS, h, wd)


def _conv_or_upconv(x, w, up: int, groups: int, dtype):
  if up == 2:
    return _upconv_fir(x, w, groups, dtype)
  if up != 1:
    raise ValueError(f"unsupported up-sampling factor {up}")
  kh = w.shape[-2]
  if kh == 1:
    if groups != 1:
      raise ValueError("1x1 grouped conv is written as a batched matmul, not here")
    return jnp.einsum("bhwi,oi->bhwo", x.astype(dtype), w[..., 0, 0].astype(dtype),
                      preferred_element_type=jnp.float32, precision=precision_for(dtype))
  p = kh // 2
  return _conv_nhwc(x, _to_hwio(w), ((p, p), (p, p)), groups, dtype)


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, *,
                     demodulate: bool = True, up: int = 1, noise: Optional[jax.Array] = None,
                     fused: bool = False, dtype=jnp.float32) -> jax.Array:
  """StyleGAN2 modulated_conv2d, NHWC, returning float32.

  Args:
    x: [B, H, W, I] activations.
    weight: [O, I, kh, kw] (torch layout; kh = kw = 3 for conv layers, 1 for toRGB).
    styles: [B, I] per-sample styles (already scaled by the toRGB weight gain where applicable).
    demodulate: divide each output channel by the norm of its modulated weights (conv layers).
    up: 1, or 2 for conv2d_resample's transposed conv + [1,3,3,1] FIR (padding 1).
    noise: added after demodulation; broadcastable to the output.
    fused: one grouped convolution with per-sample weights (the official inference path) when
      True; otherwise x * styles -> shared convolution -> * dcoefs (the official training path).
      Same maths, very different speed per backend.
    dtype: compute dtype of the convolution; accumulation and the result are float32.
  """
  batch = x.shape[0]
  o, i, kh, kw = weight.shape
  styles = styles.astype(jnp.float32)
  dcoefs = None
  if demodulate:
    # sum_{i,kh,kw} (W[o,i,kh,kw] * s[b,i])^2 == sum_i s[b,i]^2 * sum_{kh,kw} W[o,i,kh,kw]^2.
    wsq = jnp.sum(jnp.square(weight), axis=(2, 3))  # [O, I]
    dcoefs = lax.rsqrt(jnp.matmul(jnp.square(styles), wsq.T, precision=lax.Precision.HIGHEST)
                       + 1e-8)  # [B, O]

  if not fused:
    y = _conv_or_upconv(x * styles[:, None, None, :].astype(x.dtype), weight, up, 1, dtype)
    if dcoefs is not None:
      y = y * dcoefs[:, None, None, :]
    if noise is not None:
      y = y + noise
    return y

  w = weight[None] * styles[:, None, :, None, None]  # [B, O, I, kh, kw]
  if dcoefs is not None:
    w = w * dcoefs[:, :, None, None, None]
  if kh == 1 and kw == 1 and up == 1:
    y = jnp.einsum("bhwi,boi->bhwo", x.astype(dtype), w[..., 0, 0].astype(dtype),
                   preferred_element_type=jnp.float32, precision=precision_for(dtype))
  else:
    _, h, wd, _ = x.shape
    xg = x.transpose(1, 2, 0, 3).reshape(1, h, wd, batch * i)  # samples as channel groups
    yg = _conv_or_upconv(xg, w, up, batch, dtype)
    ho, wo = yg.shape[1:3]
    y = yg.reshape(ho, wo, batch, o).transpose(2, 0, 1, 3)
  if noise is not None:
    y = y + noise
  return y


def resize_bilinear(x: jax.Array, size: int, *, antialias: bool) -> jax.Array:
  """torch interpolate(mode='bilinear', align_corners=False[, antialias]) of NHWC x to size^2.

  jax.image.resize's 'linear' kernel uses half-pixel centres and renormalises the weights at the
  border, which equals torch's border clamp for up-sampling; with antialias it widens the
  triangle kernel when down-sampling as torch's antialias path does.
  """
  b, _, _, c = x.shape
  return jax.image.resize(x, (b, size, size, c), method="linear", antialias=antialias)
