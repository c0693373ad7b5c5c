"""Array ops of the StyleGAN2 / EG3D generator, NHWC, written for XLA.

Every op reproduces the official PyTorch op (torch_utils/ops in the EG3D code) to float32 rounding;
docs/eg3d.md lists the facts used here. Resampling with the [1, 3, 3, 1] filter is
written as polyphase slices and shifted adds instead of zero-insertion convolutions, which does
the same arithmetic without multiplying by the inserted zeros.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

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


def custom_first_gradient(forward: Callable, first_gradient: Callable) -> Callable:
  """forward(a, b, static) with a hand-written gradient for `a`: first_gradient(a, b, dy,
  static). The gradient for `b` stays autodiff's of `forward`, and XLA drops it when it is not
  used (the weights' and coordinates' gradients: pivotal tuning, camera fitting)."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def fn(a, b, static):
    return forward(a, b, static)

  def fn_fwd(a, b, static):
    return forward(a, b, static), (a, b)

  def fn_bwd(static, residuals, dy):
    a, b = residuals
    _, b_vjp = jax.vjp(lambda b: forward(a, b, static), b)
    return first_gradient(a, b, dy, static).astype(a.dtype), b_vjp(dy)[0]

  fn.defvjp(fn_fwd, fn_bwd)
  return fn


def _fir_phases(src: dict, row_taps: tuple, col_taps: tuple, n: int, m: int) -> dict:
  """The 2x2 output phases {'ee', 'eo', 'oe', 'oo'} of a 2x up-sampling, each [B, n, m, C] and
  a weighted sum of shifted input arrays (NHWC): phase ab holds output pixel (2i + a, 2j + b)
  (e = 0, o = 1) = sum over (src_r, off_r, c_r) in row_taps[a] and (src_c, off_c, c_c) in
  col_taps[b] of c_r * c_c * src[src_r + src_c][i + off_r, j + off_c]. One elementwise
  expression per phase, so XLA fuses each into a single pass."""
  out = {}
  for a, ra in enumerate("eo"):
    for b, rb in enumerate("eo"):
      acc = None
      for src_r, off_r, c_r in row_taps[a]:
        for src_c, off_c, c_c in col_taps[b]:
          term = src[src_r + src_c][:, off_r:off_r + n, off_c:off_c + m] * (c_r * c_c)
          acc = term if acc is None else acc + term
      out[ra + rb] = acc
  return out


def interleave(phases: dict) -> jax.Array:
  """[B, 2n, 2m, C] whose pixel (2i + a, 2j + b) is phases[ab][:, i, j] (the inverse of
  deinterleave)."""
  rows = [jnp.stack([phases[r + "e"], phases[r + "o"]], axis=3) for r in "eo"]  # [B, n, m, 2, C]
  y = jnp.stack(rows, axis=2)  # [B, n, 2, m, 2, C]
  bsz, n, _, m, _, c = y.shape
  return y.reshape(bsz, 2 * n, 2 * m, c)


def deinterleave(y: jax.Array) -> dict:
  """The phases {'ee', 'eo', 'oe', 'oo'} of y [B, 2n, 2m, C]: phase ab = y[:, a::2, b::2]."""
  bsz, h2, w2, c = y.shape
  par = y.reshape(bsz, h2 // 2, 2, w2 // 2, 2, c)
  return {ra + rb: par[:, :, a, :, b] for a, ra in enumerate("eo") for b, rb in enumerate("eo")}


# upsample2d per axis, on x padded by 1:
# y[2i] = (x[i-1] + 3x[i]) / 4, y[2i+1] = (3x[i] + x[i+1]) / 4.
_UPSAMPLE_TAPS = ((("", 0, 0.25), ("", 1, 0.75)), (("", 1, 0.75), ("", 2, 0.25)))


@jax.custom_vjp
def upsample2d(x: jax.Array) -> jax.Array:
  """upfirdn2d.upsample2d(x, [1,3,3,1]) of the skip (image) path, NHWC, 2x.

  Official: zero insertion after each sample, pad [2, 1, 2, 1], filter with gain 4. Per axis that
  is y[2i] = (x[i-1] + 3 x[i]) / 4 and y[2i+1] = (3 x[i] + x[i+1]) / 4 with zero padding. Its
  gradient is written out (_upsample2d_bwd) instead of autodiff's transpose of the shifted
  slices (one padded copy of the gradient per term).
  """
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return interleave(_fir_phases({"": xp}, _UPSAMPLE_TAPS, _UPSAMPLE_TAPS, h, w))


# Per axis, the transpose of "up-sample by 2, then the [1,3,3,1]/4 FIR" maps dy (2n samples) to
# phases of dt[j] = (dy[j-2] + 3dy[j-1] + 3dy[j] + dy[j+1]) / 4 by the parity of j: E[q] = dt[2q]
# (q = 0..n, n+1 values) and O[q] = dt[2q+1] (n values), each a 4-tap sum of dy's even (e) and
# odd (o) samples; (source, offset, coefficient) with offset k meaning sample q + k - 1.
_TRANSPOSED_FIR_TAPS = {"e": (("e", 0, 0.25), ("o", 0, 0.75), ("e", 1, 0.75), ("o", 1, 0.25)),
                        "o": (("o", 0, 0.25), ("e", 1, 0.75), ("o", 1, 0.75), ("e", 2, 0.25))}


def _pad_phases(dy: dict) -> dict:
  """The phases {'ee', ...: [B, n, m, C]} of a gradient, each zero-padded by 1 on both axes."""
  return {k: jnp.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0))) for k, v in dy.items()}


def _transposed_fir_phase(padded: dict, ry: str, rx: str) -> jax.Array:
  """Phase (ry, rx) in {e, o}^2 of the transposed up-sampling FIR of a gradient given by its
  padded phases (_pad_phases): [B, n or n+1, m or m+1, C], one fused weighted sum of 16
  shifted phases."""
  _, n2, m2, _ = padded["ee"].shape
  n, m = n2 - 2, m2 - 2
  rows, cols = n + (ry == "e"), m + (rx == "e")
  acc = None
  for src_r, off_r, c_r in _TRANSPOSED_FIR_TAPS[ry]:
    for src_c, off_c, c_c in _TRANSPOSED_FIR_TAPS[rx]:
      term = padded[src_r + src_c][:, off_r:off_r + rows, off_c:off_c + cols] * (c_r * c_c)
      acc = term if acc is None else acc + term
  return acc


def _upsample2d_fwd(x):
  return upsample2d(x), None


def _upsample2d_bwd(_, dy):
  # Per axis dx[i] = (dy[2i-1] + 3dy[2i] + 3dy[2i+1] + dy[2i+2]) / 4: the O phase.
  return (_transposed_fir_phase(_pad_phases(deinterleave(dy)), "o", "o"),)


upsample2d.defvjp(_upsample2d_fwd, _upsample2d_bwd)


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


def _upconv_phases(x: jax.Array, w: jax.Array, groups: int, dtype) -> dict:
  """conv2d_resample(up=2, padding=1, 3x3 kernel): transposed conv stride 2, then FIR gain 4,
  as the output's phases (see interleave)."""
  if w.shape[-2:] != (3, 3):
    raise ValueError(f"up-sampling modulated conv expects a 3x3 kernel, got {w.shape}")
  if groups == 1:
    return _upconv_phases_lean_grad(x, w, jnp.dtype(dtype))
  return _upconv_phases_polyphase(x, w, groups, dtype)


def _upconv_phases_polyphase(x: jax.Array, w: jax.Array, groups: int, dtype) -> dict:
  _, h, wd, _ = x.shape
  phases = {}
  for ry, (rows, pad_y) in _PHASE_TAPS.items():
    for rx, (cols, pad_x) in _PHASE_TAPS.items():
      k = w[..., rows, :][..., cols]
      phases[ry + rx] = _conv_nhwc(x, _to_hwio(k), (pad_y, pad_x), groups, dtype)
  return _fir_phases(phases, _UPCONV_FIR_TAPS, _UPCONV_FIR_TAPS, h, wd)


# The input gradient of the up-sampling conv: its transpose is the transposed FIR above then a
# stride-2 correlation with the 3x3 kernel, per axis dx[q] = dt[2q] W[0] + dt[2q+1] W[1] +
# dt[2q+2] W[2] = E[q] W[0] + E[q+1] W[2] + O[q] W[1]: four stride-1 convolutions (2x2, 2x1, 1x2,
# 1x1 taps) of the four phases of dt.
_GRAD_KERNEL_TAPS = {"e": slice(0, 3, 2), "o": slice(1, 2)}


def _upconv_input_grad(x: jax.Array, w: jax.Array, dy: dict, dtype) -> jax.Array:
  """d(_upconv_phases)/dx (groups 1) applied to the output phases' gradient dy: [B, n, m, I]."""
  _, n, m, _ = x.shape
  padded = _pad_phases(dy)
  dx = None
  for ry in "eo":
    for rx in "eo":
      k = w[:, :, _GRAD_KERNEL_TAPS[ry], :][..., _GRAD_KERNEL_TAPS[rx]]  # [O, I, kh, kw]
      # Valid correlations, computed with a border of 1 that is sliced off again: XLA:CPU runs a
      # convolution without padding about 3x slower (jax 0.10, measured), and these small
      # kernels fastest with padding on both axes.
      y = _conv_nhwc(_transposed_fir_phase(padded, ry, rx), k.transpose(2, 3, 0, 1),
                     ((1, 1), (1, 1)),
                     1, dtype)[:, 1:n + 1, 1:m + 1]
      dx = y if dx is None else dx + y
  return dx


# _upconv_phases_polyphase (groups 1) whose input gradient is _upconv_input_grad instead of
# autodiff's transpose of the polyphase forward (convolutions with negative or zero padding and a
# scattered FIR: twice the forward's time on XLA:CPU).
_upconv_phases_lean_grad = custom_first_gradient(
    lambda x, w, dtype: _upconv_phases_polyphase(x, w, 1, dtype), _upconv_input_grad)


def _pointwise_conv(x: jax.Array, w: jax.Array, dtype) -> jax.Array:
  """1x1 convolution x [B, H, W, I] by w [O, I]."""
  return jnp.einsum("bhwi,oi->bhwo", x.astype(dtype), w.astype(dtype),
                    preferred_element_type=jnp.float32, precision=precision_for(dtype))


def _pointwise_input_grad_few_outputs(x, w, dy, dtype):
  del x, dtype
  return sum(dy[..., o, None] * w[o].astype(jnp.float32) for o in range(w.shape[0]))


# toRGB's 1x1 convolution (O = 3) with its input gradient written as O broadcast products:
# autodiff's is a matmul with a contraction of 3, which XLA:CPU ran at a fraction of the memory
# bandwidth.
_pointwise_conv_few_outputs = custom_first_gradient(_pointwise_conv,
                                                    _pointwise_input_grad_few_outputs)


def _conv_or_upconv(x, w, up: int, groups: int, dtype):
  if up == 2:
    return interleave(_upconv_phases(x, w, groups, dtype))
  if up != 1:
    raise ValueError(f"unsupported up-sampling factor {up}")
  kh = w.shape[-2]
  if kh == 1:
    if groups != 1:
      raise ValueError("1x1 grouped conv is written as a batched matmul, not here")
    w = w[..., 0, 0]
    conv = _pointwise_conv_few_outputs if w.shape[0] <= 4 else _pointwise_conv
    return conv(x, w, jnp.dtype(dtype))
  p = kh // 2
  return _conv_nhwc(x, _to_hwio(w), ((p, p), (p, p)), groups, dtype)


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, *,
                     demodulate: bool = True, up: int = 1, noise: Optional[jax.Array] = None,
                     fused: bool = False, dtype=jnp.float32,
                     epilogue: Optional[Callable[[jax.Array], jax.Array]] = None) -> jax.Array:
  """StyleGAN2 modulated_conv2d, NHWC, returning float32 (or what `epilogue` returns).

  Args:
    x: [B, H, W, I] activations.
    weight: [O, I, kh, kw] (torch layout; kh = kw = 3 for conv layers, 1 for toRGB).
    styles: [B, I] per-sample styles (already scaled by the toRGB weight gain where applicable).
    demodulate: divide each output channel by the norm of its modulated weights (conv layers).
    up: 1, or 2 for conv2d_resample's transposed conv + [1,3,3,1] FIR (padding 1).
    noise: added after demodulation; broadcastable to the output ([B or 1, H, W, 1 or O]).
    fused: one grouped convolution with per-sample weights (the official inference path) when
      True; otherwise x * styles -> shared convolution -> * dcoefs (the official training path).
      Same maths, very different speed per backend.
    dtype: compute dtype of the convolution; accumulation and the result are float32.
    epilogue: an elementwise function applied to the result (bias and activation). In the
      non-fused up-sampling path it runs on each output phase before they are interleaved, so
      that neither pass materialises the interleaved pre-activation (under autodiff XLA:CPU kept
      two copies of it, and the backward never needs it interleaved).
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

  def finish(y, noise, scale):
    if scale is not None:
      y = y * scale[:, None, None, :]
    if noise is not None:
      y = y + noise
    return y if epilogue is None else epilogue(y)

  if not fused:
    xs = x * styles[:, None, None, :].astype(x.dtype)
    if up == 2:
      phases = _upconv_phases(xs, weight, 1, dtype)
      noises = None
      if noise is not None:  # [B or 1, H, W, 1 or O]
        _, n, m, _ = phases["ee"].shape
        noises = deinterleave(jnp.broadcast_to(noise, (noise.shape[0], 2 * n, 2 * m,
                                                       noise.shape[-1])))
      return interleave({k: finish(v, None if noises is None else noises[k], dcoefs)
                         for k, v in phases.items()})
    return finish(_conv_or_upconv(xs, weight, up, 1, dtype), noise, dcoefs)

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
  return finish(y, noise, None)


def resize_bilinear(x: jax.Array, size: int, *, antialias: bool) -> jax.Array:
  """torch interpolate(mode='bilinear', align_corners=False[, antialias]) of NHWC x to size^2.

  jax.image.resize's 'linear' kernel uses half-pixel centres and renormalises the weights at the
  border, which equals torch's border clamp for up-sampling; with antialias it widens the
  triangle kernel when down-sampling as torch's antialias path does.
  """
  b, _, _, c = x.shape
  return jax.image.resize(x, (b, size, size, c), method="linear", antialias=antialias)
