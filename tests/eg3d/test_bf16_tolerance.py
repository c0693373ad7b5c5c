"""compute_dtype='bfloat16' (convolutions, plane sampling and decoder in bf16; parameters and
accumulation f32) against the official fp32 outputs of the EG3D fixtures: the tolerance that
holds, measured (README "bf16: which tolerance holds").

The bounds were set on earlier, wider fixtures of the same names (backbone widths up to 64-128,
z 512, full-precision random weights), measured on the 2-core CPU (bf16 emulated by XLA:CPU):
|bf16 - fp32| image max / mean 0.0255 / 0.0048 (tiny128), 0.0351 / 0.0064 (cars128_tiny),
0.0358 / 0.0067 (ffhq512_small); gradient cosine 0.99875, 0.99726, 0.99817; a 2x margin on the
image errors and ~4x on 1 - cosine. On the committed fixtures (tests/fixtures/eg3d: narrower
backbones, weights on a coarse grid, so exact in bf16, and denser rendering) the same
measurement gives image max / mean 0.0092 / 0.00142 (tiny128), 0.0100 / 0.00186 (cars128_tiny)
and gradient cosine 0.99460 (tiny128). fp32 itself is within 1.1e-5 of the official outputs, so
the bf16 error is the dtype's, not the port's. ffhq512_small is not tested here: too slow to
compile for this test's budget.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sat3d_jax import eg3d

IMAGE_MAX_ERROR = 0.07    # measured 0.0092 (tiny128), 0.0100 (cars128_tiny)
IMAGE_MEAN_ERROR = 0.013  # measured 0.00142 (tiny128), 0.00186 (cars128_tiny)
GRAD_COSINE = 0.99        # measured 0.99460 (tiny128)


def _load(fixture_dir, name):
  with np.load(fixture_dir / f"{name}.npz") as f:
    ref = {k: f[k] for k in ("io/ws", "io/c", "io/image")}
  return ref, fixture_dir / f"{name}.npz"


def _grad(path, dtype, ws, c):
  """d<image, W>/d ws of the generator at `path` in `dtype`, W a fixed projection."""
  G = eg3d.load_generator(path, dtype=dtype)

  def projection(ws):
    image = G.apply_synthesis(G.params, ws, c, noise_mode="const")["image"]
    weights = jax.random.normal(jax.random.key(0), image.shape)
    return jnp.sum(image.astype(jnp.float32) * weights)

  return np.asarray(jax.jit(jax.grad(projection))(ws)).ravel()


@pytest.mark.parametrize("name", ["eg3d_tiny128", "eg3d_cars128_tiny"])
def test_bf16_image_within_tolerance_of_the_official_fp32(eg3d_fixture_dir, name):
  ref, path = _load(eg3d_fixture_dir, name)
  ws, c = jnp.asarray(ref["io/ws"]), jnp.asarray(ref["io/c"])
  G = eg3d.load_generator(path, dtype=jnp.bfloat16)
  image = jax.jit(lambda ws: G.apply_synthesis(G.params, ws, c, noise_mode="const")["image"])(ws)
  error = np.abs(np.asarray(image, np.float32) - ref["io/image"].transpose(0, 2, 3, 1))
  print(f"{name}: bf16 image max {error.max():.4f} mean {error.mean():.5f}")
  assert error.max() <= IMAGE_MAX_ERROR and error.mean() <= IMAGE_MEAN_ERROR
  assert error.max() > 1e-4  # bf16 is in use: the check can tell the dtypes apart


def test_bf16_gradient_to_ws_points_the_same_way(eg3d_fixture_dir):
  ref, path = _load(eg3d_fixture_dir, "eg3d_tiny128")
  ws, c = jnp.asarray(ref["io/ws"]), jnp.asarray(ref["io/c"])
  g32, g16 = _grad(path, jnp.float32, ws, c), _grad(path, jnp.bfloat16, ws, c)
  cosine = float(g16 @ g32 / np.linalg.norm(g16) / np.linalg.norm(g32))
  print(f"tiny128: gradient cosine {cosine:.5f}")
  assert cosine >= GRAD_COSINE
