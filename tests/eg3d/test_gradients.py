"""The hand-written gradients of the EG3D ops (custom VJPs written for backward-pass speed) against
autodiff of independent reference formulations: the official zero-insertion + FIR form of the
up-sampling ops, and jax.scipy's map_coordinates for the tri-plane sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sat3d_jax.eg3d import ops, renderer

_FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64.0


def _upfirdn_up2(x: jax.Array) -> jax.Array:
  """Official upfirdn2d.upsample2d on NHWC: zero insertion, pad (2, 1), [1,3,3,1] FIR gain 4."""
  c = x.shape[-1]
  k = jnp.asarray(np.tile((_FIR * 4)[:, :, None, None], (1, 1, 1, c)))
  return lax.conv_general_dilated(x, k, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=c, precision=lax.Precision.HIGHEST)


def _official_upconv(x: jax.Array, w: jax.Array) -> jax.Array:
  """conv2d_resample(up=2, padding=1): conv_transpose2d(stride 2) then the FIR (pad 1, gain 4)."""
  # conv_transpose2d(x, W) == correlation of the zero-inserted x (padded by k - 1) with the
  # flipped kernel; output 2n + 1.
  k = jnp.flip(w, (2, 3)).transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> HWIO, flipped
  t = lax.conv_general_dilated(x, k, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
                               dimension_numbers=("NHWC", "HWIO", "NHWC"),
                               precision=lax.Precision.HIGHEST)
  c = t.shape[-1]
  fir = jnp.asarray(np.tile((_FIR * 4)[:, :, None, None], (1, 1, 1, c)))
  return lax.conv_general_dilated(t, fir, (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=c, precision=lax.Precision.HIGHEST)


def _assert_close(a, b, rtol=2e-5):
  a, b = np.asarray(a), np.asarray(b)
  scale = np.max(np.abs(b))
  assert scale > 0
  np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def _value_and_vjp(fn, args, cotangent):
  """fn(*args) and its VJP of `cotangent`, compiled as one program (op-by-op dispatch of the
  unrolled phase sums is what would make these tests slow)."""
  def run(args, cotangent):
    y, vjp = jax.vjp(fn, *args)
    return y, vjp(cotangent)
  return jax.jit(run)(args, cotangent)


def _random(key, shape):
  return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def test_upsample2d_value_and_gradient_match_the_official_form():
  x, dy = _random(0, (2, 5, 7, 3)), _random(1, (2, 10, 14, 3))
  y, (dx,) = _value_and_vjp(ops.upsample2d, (x,), dy)
  y_ref, (dx_ref,) = _value_and_vjp(_upfirdn_up2, (x,), dy)
  _assert_close(y, y_ref)
  _assert_close(dx, dx_ref)


@pytest.mark.parametrize("groups", [1, 2])
def test_upsampling_conv_gradients_match_the_official_form(groups):
  batch = 2
  x, w = _random(0, (batch, 6, 5, 4)), _random(1, (3, 4, 3, 3)) * 0.3
  dy = _random(2, (batch, 12, 10, 3))

  def ours(x, w):
    if groups == 1:
      return ops._conv_or_upconv(x, w, 2, 1, jnp.float32)
    # the grouped path with one group per sample (the fused modconv's layout)
    _, h, wd, i = x.shape
    xg = x.transpose(1, 2, 0, 3).reshape(1, h, wd, batch * i)
    yg = ops._conv_or_upconv(xg, jnp.broadcast_to(w, (batch,) + w.shape), 2, batch, jnp.float32)
    return yg.reshape(2 * h, 2 * wd, batch, -1).transpose(2, 0, 1, 3)

  y, grads = _value_and_vjp(ours, (x, w), dy)
  y_ref, grads_ref = _value_and_vjp(_official_upconv, (x, w), dy)
  _assert_close(y, y_ref)
  for got, want in zip(grads, grads_ref):
    _assert_close(got, want)


@pytest.mark.parametrize("out_channels", [3, 6])
def test_pointwise_conv_gradients_match_autodiff_of_the_matmul(out_channels):
  """1x1 convolutions: a hand-written input gradient for few output channels (toRGB),
  autodiff's for more."""
  x, w = _random(0, (2, 5, 4, 7)), _random(1, (out_channels, 7))
  dy = _random(2, (2, 5, 4, out_channels))

  def matmul(x, w):
    return jnp.einsum("bhwi,oi->bhwo", x, w, precision=lax.Precision.HIGHEST)

  y, grads = _value_and_vjp(
      lambda x, w: ops._conv_or_upconv(x, w[..., None, None], 1, 1, jnp.float32), (x, w), dy)
  y_ref, grads_ref = _value_and_vjp(matmul, (x, w), dy)
  _assert_close(y, y_ref)
  for got, want in zip(grads, grads_ref):
    _assert_close(got, want)


def test_modulated_conv_epilogue_per_phase_equals_epilogue_after():
  """The epilogue runs on each output phase of an up-sampling conv before the interleave: the
  same values and gradients as applying it to the interleaved output."""
  x, w, s = _random(0, (2, 6, 6, 4)), _random(1, (5, 4, 3, 3)), _random(2, (2, 4)) + 1
  noise, b = _random(3, (1, 12, 12, 1)), _random(4, (5,))
  dy = _random(5, (2, 12, 12, 5))

  def act(y, b):
    return ops.bias_act(y, b, act="lrelu", clamp=0.5)

  def per_phase(x, s, b):
    return ops.modulated_conv2d(x, w, s, up=2, noise=noise, epilogue=lambda y: act(y, b))

  def after(x, s, b):
    return act(ops.modulated_conv2d(x, w, s, up=2, noise=noise), b)

  y, grads = _value_and_vjp(per_phase, (x, s, b), dy)
  y_ref, grads_ref = _value_and_vjp(after, (x, s, b), dy)
  assert 0 < float(jnp.mean(jnp.abs(y) >= 0.5)) < 1  # the clamp is active somewhere
  _assert_close(y, y_ref, rtol=1e-6)
  for got, want in zip(grads, grads_ref):
    _assert_close(got, want, rtol=1e-6)


def _map_coordinates_planes(planes, coordinates, box_warp):
  """sample_from_planes with jax.scipy's map_coordinates (order 1, zero outside)."""
  _, p, h, w, c = planes.shape
  x = coordinates * (2.0 / box_warp)
  out = 0.0
  for plane, (u, v) in enumerate(((x[..., 0], x[..., 1]), (x[..., 0], x[..., 2]),
                                  (x[..., 2], x[..., 0]))):
    ix, iy = (u + 1) * (w / 2) - 0.5, (v + 1) * (h / 2) - 0.5

    def one(img, iy, ix):  # img [H, W, C], points [N] -> [N, C]
      return jax.vmap(lambda ch: jax.scipy.ndimage.map_coordinates(
          ch, [iy, ix], order=1, mode="constant", cval=0.0), in_axes=2, out_axes=1)(img)
    out = out + jax.vmap(one)(planes[:, plane], iy, ix)
  return out / p


def test_plane_sampler_gradients_match_map_coordinates():
  planes = _random(0, (2, 3, 8, 8, 4))
  # points inside and outside the box (zero padding), away from texel edges
  coordinates = jax.random.uniform(jax.random.key(1), (2, 40, 3), minval=-0.6, maxval=0.6)
  d_features = _random(2, (2, 40, 4))
  y, (d_planes, d_coordinates) = _value_and_vjp(
      lambda p, c: renderer.sample_from_planes(p, c, 1.0), (planes, coordinates), d_features)
  y_ref, (d_planes_ref, d_coordinates_ref) = _value_and_vjp(
      lambda p, c: _map_coordinates_planes(p, c, 1.0), (planes, coordinates), d_features)
  _assert_close(y, y_ref)
  _assert_close(d_planes, d_planes_ref)
  _assert_close(d_coordinates, d_coordinates_ref, rtol=1e-4)
