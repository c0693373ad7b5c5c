"""Tri-plane volume rendering of EG3D (RaySampler, ImportanceRenderer, MipRayMarcher2, OSGDecoder).

Deterministic when no rng key is given (the fixtures' protocol: coarse depths without jitter,
importance u = linspace(0, 1, N), the official det=True branch); with a key it draws the official
random quantities (stratified jitter, importance u, density noise when configured). All random
numbers are drawn for the full ray set before any chunking, so `ray_chunk` changes memory use,
never the result.
"""
from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
from jax import lax

from sat3d_jax.eg3d import ops
from sat3d_jax.eg3d.architecture import Arch, RenderSpec


def ray_sampler(cam2world: jax.Array, intrinsics: jax.Array,
                resolution: int) -> tuple[jax.Array, jax.Array]:
  """Rays (origins, unit directions) [B, R*R, 3] through the pixel centres, row-major (i, j).

  cam2world [B, 4, 4] (OpenCV: x right, y down, z forward); intrinsics [B, 3, 3] normalised by
  the image size. Pixel (i, j) looks through ((j + 0.5) / R, (i + 0.5) / R).
  """
  ar = jnp.arange(resolution, dtype=jnp.float32) * (1.0 / resolution) + (0.5 / resolution)
  y_cam, x_cam = jnp.meshgrid(ar, ar, indexing="ij")
  x_cam, y_cam = x_cam.reshape(1, -1), y_cam.reshape(1, -1)
  fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
  cx, cy, sk = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None], intrinsics[:, 0, 1, None]
  x_lift = (x_cam - cx + cy * sk / fy - sk * y_cam / fy) / fx
  y_lift = (y_cam - cy) / fy
  ones = jnp.ones_like(x_lift)
  cam_rel = jnp.stack([x_lift, y_lift, ones, ones], axis=-1)  # [B, M, 4]
  world = jnp.einsum("bij,bmj->bmi", cam2world, cam_rel,
                     precision=lax.Precision.HIGHEST)[..., :3]
  origin = cam2world[:, None, :3, 3]
  dirs = world - origin
  dirs = dirs / jnp.maximum(jnp.linalg.norm(dirs, axis=-1, keepdims=True), 1e-12)
  return jnp.broadcast_to(origin, dirs.shape), dirs


def _plane_taps(planes_shape, coordinates: jax.Array, box_warp: float) -> list:
  """The bilinear taps of sample_from_planes: per plane, four (row of the [B*3*H*W, C] table
  [B, N] int32, weight [B, N] float32) pairs in the order nw, ne, sw, se."""
  b, p, h, w, _ = planes_shape
  x = coordinates * (2.0 / box_warp)
  px, py, pz = x[..., 0], x[..., 1], x[..., 2]
  taps = []
  for plane, (u, v) in enumerate(((px, py), (px, pz), (pz, px))):  # grid (x = width, y = height)
    # torch's CPU grid sampler arithmetic: (coord + 1) * size / 2 - 0.5, weights from floor.
    ix = (u + 1) * (w / 2) - 0.5
    iy = (v + 1) * (h / 2) - 0.5
    # Materialise ix, iy once: otherwise XLA may recompute them in several fusions, one with a
    # fused multiply-add and one without, and a point on a texel edge would get corner indices
    # from one rounding and weights from the other (a jump, not a rounding error).
    ix, iy = lax.optimization_barrier((ix, iy))
    ix0, iy0 = jnp.floor(ix), jnp.floor(iy)
    wx1, wy1 = ix - ix0, iy - iy0
    wx0, wy0 = 1 - wx1, 1 - wy1
    ix0, iy0 = ix0.astype(jnp.int32), iy0.astype(jnp.int32)
    base = (jnp.arange(b, dtype=jnp.int32)[:, None] * p + plane) * (h * w)
    corners = []
    for dy, wy in ((0, wy0), (1, wy1)):
      for dx, wx in ((0, wx0), (1, wx1)):
        cx, cy = ix0 + dx, iy0 + dy
        valid = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        idx = base + jnp.clip(cy, 0, h - 1) * w + jnp.clip(cx, 0, w - 1)
        corners.append((idx, jnp.where(valid, wy * wx, 0.0)))
    taps.append(corners)
  return taps


def _sample_from_planes(planes: jax.Array, coordinates: jax.Array, box_warp: float) -> jax.Array:
  b, p, h, w, c = planes.shape
  table = planes.reshape(b * p * h * w, c)
  per_plane = []
  for corners in _plane_taps(planes.shape, coordinates, box_warp):
    acc = None
    for idx, weight in corners:  # summed in the order nw, ne, sw, se
      term = jnp.take(table, idx, axis=0, mode="clip").astype(jnp.float32) * weight[..., None]
      acc = term if acc is None else acc + term
    per_plane.append(acc)
  return (per_plane[0] + per_plane[1] + per_plane[2]) / p


def _planes_gradient(planes, coordinates, d_features, box_warp):
  b, p, h, w, c = planes.shape
  d_mean = d_features.astype(jnp.float32) / p
  d_table = jnp.zeros((b * p * h * w, c), jnp.float32)
  for corners in _plane_taps(planes.shape, coordinates, box_warp):
    for idx, weight in corners:
      d_table = d_table.at[idx.reshape(-1)].add(
          (d_mean * weight[..., None]).reshape(-1, c), mode="promise_in_bounds")
  return d_table.reshape(planes.shape)


_sample_from_planes_lean_grad = ops.custom_first_gradient(_sample_from_planes, _planes_gradient)


def sample_from_planes(planes: jax.Array, coordinates: jax.Array, box_warp: float) -> jax.Array:
  """Mean over the three planes of the bilinear plane features at 3D points: [B, N, C] float32.

  planes [B, 3, H, W, C]; coordinates [B, N, 3]. Points are scaled by 2 / box_warp and projected
  onto the planes (x, y), (x, z), (z, x): the official projection (a known bug of the released
  code that the released weights depend on). grid_sample: bilinear, zero padding,
  align_corners=False. Written as a sum of 12 weighted row gathers (3 planes x 4 corners) so XLA
  fuses gathers, weights and sum into one pass instead of materialising [B, N, 12, C].

  The planes' gradient is one accumulator that the 12 taps scatter-add into; autodiff's
  transpose gives 12 scatters, each into its own zeroed copy of the planes, then adds the copies
  (4x the forward's time on XLA:CPU). The coordinates' gradient (camera fitting) is autodiff's.
  """
  return _sample_from_planes_lean_grad(planes, coordinates, box_warp)


def softplus(x: jax.Array) -> jax.Array:
  """torch.nn.functional.softplus (beta 1, threshold 20): x if x > 20 else log1p(exp(x))."""
  return jnp.where(x > 20, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20))))


def decoder(params: Mapping[str, jax.Array], arch: Arch, features: jax.Array,
            dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """OSGDecoder: FC 32->64, softplus, FC 64->33; (sigma [.., 1] raw, rgb [.., 32]).

  rgb = sigmoid(x[..., 1:]) * (1 + 2e-3) - 1e-3 (MipNeRF's sigmoid clamping).
  """
  lr = arch.decoder_lr_multiplier
  x = ops.fully_connected(features, params["decoder.net.0.weight"], params["decoder.net.0.bias"],
                          lr_multiplier=lr, dtype=dtype)
  x = softplus(x)
  x = ops.fully_connected(x, params["decoder.net.2.weight"], params["decoder.net.2.bias"],
                          lr_multiplier=lr, dtype=dtype)
  rgb = jax.nn.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
  return x[..., 0:1], rgb


def run_model(params, arch: Arch, planes: jax.Array, coordinates: jax.Array,
              dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """(sigma [B, N, 1], rgb [B, N, 32]) at points [B, N, 3] (the official run_model/sample_mixed;
  ray directions are unused by the official decoder)."""
  feats = sample_from_planes(planes.astype(dtype), coordinates, arch.render.box_warp)
  return decoder(params, arch, feats, dtype)


def march_weights(densities: jax.Array, depths: jax.Array) -> jax.Array:
  """MipRayMarcher2's weights [..., S-1] of the S-1 intervals between depth-sorted samples.

  sigma = softplus(mean density of the interval - 1); alpha = 1 - exp(-sigma * delta);
  weights = alpha * exclusive cumprod(1 - alpha + 1e-10).
  """
  deltas = depths[..., 1:] - depths[..., :-1]
  densities_mid = softplus((densities[..., :-1] + densities[..., 1:]) / 2 - 1)
  alpha = 1 - jnp.exp(-densities_mid * deltas)
  shifted = jnp.concatenate([jnp.ones_like(alpha[..., :1]), 1 - alpha + 1e-10], axis=-1)
  return alpha * jnp.cumprod(shifted, axis=-1)[..., :-1]


def sample_weights(weights: jax.Array) -> jax.Array:
  """Per-sample compositing weights [..., S] from interval weights [..., S-1]:
  sum_k w_k (c_k + c_{k+1}) / 2 == sum_k c_k (w_{k-1} + w_k) / 2 (colours are interval means)."""
  pad = jnp.zeros_like(weights[..., :1])
  return (jnp.concatenate([pad, weights], -1) + jnp.concatenate([weights, pad], -1)) / 2


def composite(sample_w: jax.Array, colors: jax.Array) -> jax.Array:
  """sum_s sample_w[..., s] * colors[..., s, :] in full float32 (a batched matrix-vector product,
  instead of materialising interval colours)."""
  return jnp.einsum("...s,...sc->...c", sample_w, colors.astype(jnp.float32),
                    precision=lax.Precision.HIGHEST)


def _finish(rgb, weights, depths, white_back):
  depths_mid = (depths[..., :-1] + depths[..., 1:]) / 2
  weight_total = jnp.sum(weights, axis=-1)
  depth = jnp.sum(weights * depths_mid, axis=-1) / weight_total
  depth = jnp.where(jnp.isnan(depth), jnp.inf, depth)
  if white_back:  # ShapeNet cars: composite onto white
    rgb = rgb + 1 - weight_total[..., None]
  return rgb * 2 - 1, depth


def ray_march(colors: jax.Array, densities: jax.Array, depths: jax.Array,
              white_back: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """MipRayMarcher2 over depth-sorted samples [..., S]:
  (rgb [..., C] in [-1, 1], depth [...], weights [..., S-1]).

  The depth is returned before the official clamp to the global [min, max] of the sample
  depths (NaN -> +inf), which `render` applies over the whole batch.
  """
  weights = march_weights(densities, depths)
  rgb = composite(sample_weights(weights), colors)
  rgb, depth = _finish(rgb, weights, depths, white_back)
  return rgb, depth, weights


def sample_pdf(bins: jax.Array, weights: jax.Array, u: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Inverse-CDF samples (the official sample_pdf) at quantiles u [..., N]."""
  n_samples = weights.shape[-1]
  weights = weights + eps
  pdf = weights / jnp.sum(weights, axis=-1, keepdims=True)
  cdf = jnp.cumsum(pdf, axis=-1)
  cdf = jnp.concatenate([jnp.zeros_like(cdf[..., :1]), cdf], axis=-1)
  # searchsorted(cdf, u, right=True): how many cdf entries are <= u.
  inds = jnp.sum(cdf[..., None, :] <= u[..., :, None], axis=-1)
  below = jnp.maximum(inds - 1, 0)
  above = jnp.minimum(inds, n_samples)
  cdf_b = jnp.take_along_axis(cdf, below, axis=-1)
  cdf_a = jnp.take_along_axis(cdf, above, axis=-1)
  bins_b = jnp.take_along_axis(bins, below, axis=-1)
  bins_a = jnp.take_along_axis(bins, above, axis=-1)
  denom = cdf_a - cdf_b
  denom = jnp.where(denom < eps, 1.0, denom)
  return bins_b + (u - cdf_b) / denom * (bins_a - bins_b)


def sample_importance(z_vals: jax.Array, weights: jax.Array, u: jax.Array) -> jax.Array:
  """Importance depths [..., N] from coarse depths [..., S] and their march weights [..., S-1].

  Weights are smoothed by max-pool (k2 s1 pad1) then avg-pool (k2 s1), + 0.01; sampling uses
  the coarse mid-points with weights[1:-1], as the official code does. No gradient (official
  torch.no_grad()).
  """
  z_vals, weights = lax.stop_gradient(z_vals), lax.stop_gradient(weights)
  wp = jnp.concatenate([weights[..., :1], weights, weights[..., -1:]], axis=-1)
  pooled = jnp.maximum(wp[..., :-1], wp[..., 1:])  # max_pool1d: -inf padding == edge padding
  smooth = (pooled[..., :-1] + pooled[..., 1:]) / 2 + 0.01
  z_mid = 0.5 * (z_vals[..., :-1] + z_vals[..., 1:])
  return lax.stop_gradient(sample_pdf(z_mid, smooth[..., 1:-1], u))


def _coarse_depths(spec: RenderSpec, shape, jitter: Optional[jax.Array]) -> jax.Array:
  s = spec.depth_resolution
  if spec.disparity_space_sampling:
    d = jnp.linspace(0.0, 1.0, s, dtype=jnp.float32)
    d = jnp.broadcast_to(d, shape + (s,))
    if jitter is not None:
      d = d + jitter * (1.0 / (s - 1))
    return 1.0 / (1.0 / spec.ray_start * (1.0 - d) + 1.0 / spec.ray_end * d)
  d = jnp.linspace(spec.ray_start, spec.ray_end, s, dtype=jnp.float32)
  d = jnp.broadcast_to(d, shape + (s,))
  if jitter is not None:
    d = d + jitter * ((spec.ray_end - spec.ray_start) / (s - 1))
  return d


def _render_rays(params, arch: Arch, planes, origins, dirs, randoms, dtype):
  """Coarse pass, importance pass, merge and march for rays [B, M, 3].

  Returns (features [B, M, C], depth [B, M] unclamped, min depth, max depth).
  """
  spec = arch.render
  b, m, _ = origins.shape

  def model(depths):  # depths [B, M, K] -> densities [B, M, K], colors [B, M, K, C]
    k = depths.shape[-1]
    pts = origins[:, :, None, :] + depths[..., None] * dirs[:, :, None, :]
    sigma, rgb = run_model(params, arch, planes, pts.reshape(b, m * k, 3), dtype)
    return sigma.reshape(b, m, k), rgb.reshape(b, m, k, -1)

  depths = _coarse_depths(spec, (b, m), randoms.get("jitter"))
  densities, colors = model(depths)
  if "noise_coarse" in randoms:
    densities = densities + randoms["noise_coarse"] * spec.density_noise
  n_imp = spec.depth_resolution_importance
  if n_imp == 0:
    rgb, depth, _ = ray_march(colors, densities, depths, spec.white_back)
    return rgb, depth, jnp.min(depths), jnp.max(depths)
  # The coarse march only feeds importance sampling (its colours are unused).
  weights = march_weights(densities, depths)
  u = randoms.get("u")
  if u is None:
    u = jnp.broadcast_to(jnp.linspace(0.0, 1.0, n_imp, dtype=jnp.float32), (b, m, n_imp))
  depths_fine = sample_importance(depths, weights, u)
  densities_fine, colors_fine = model(depths_fine)
  if "noise_fine" in randoms:
    densities_fine = densities_fine + randoms["noise_fine"] * spec.density_noise
  # Merge and sort by depth (official unify_samples). Only depths and densities are sorted; the
  # per-sample weights are mapped back to the unsorted samples, so the [.., S, 32] colours are
  # neither concatenated nor gathered.
  all_depths = jnp.concatenate([depths, depths_fine], axis=-1)
  order = jnp.argsort(all_depths, axis=-1)
  sorted_depths = jnp.take_along_axis(all_depths, order, axis=-1)
  sorted_densities = jnp.take_along_axis(jnp.concatenate([densities, densities_fine], -1), order,
                                         axis=-1)
  weights = march_weights(sorted_densities, sorted_depths)
  inverse = jnp.argsort(order, axis=-1)
  sw = jnp.take_along_axis(sample_weights(weights), inverse, axis=-1)
  s = depths.shape[-1]
  rgb = composite(sw[..., :s], colors) + composite(sw[..., s:], colors_fine)
  rgb, depth = _finish(rgb, weights, sorted_depths, spec.white_back)
  return rgb, depth, sorted_depths[..., 0].min(), sorted_depths[..., -1].max()


def _draw_randoms(spec: RenderSpec, key: Optional[jax.Array], b: int, m: int) -> dict:
  if key is None:
    return {}
  k_jit, k_u, k_nc, k_nf = jax.random.split(key, 4)
  s, n = spec.depth_resolution, spec.depth_resolution_importance
  r = {"jitter": jax.random.uniform(k_jit, (b, m, s), jnp.float32)}
  if n > 0:
    r["u"] = jax.random.uniform(k_u, (b, m, n), jnp.float32)
  if spec.density_noise > 0:
    r["noise_coarse"] = jax.random.normal(k_nc, (b, m, s), jnp.float32)
    if n > 0:
      r["noise_fine"] = jax.random.normal(k_nf, (b, m, n), jnp.float32)
  return r


def render(params: Mapping[str, jax.Array], arch: Arch, planes: jax.Array,
           cam2world: jax.Array, intrinsics: jax.Array, resolution: int, *,
           key: Optional[jax.Array] = None, ray_chunk: Optional[int] = None,
           dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """Neural feature image [B, R, R, 32] (first 3 channels = raw rgb, all in [-1, 1] scale) and
  depth image [B, R, R, 1], clamped to the global [min, max] of the sample depths of the batch.

  ray_chunk: render that many rays per image at a time (lax.map over chunks, each chunk
  rematerialised under autodiff) to bound memory; same result as rendering all rays at once.
  """
  b = cam2world.shape[0]
  origins, dirs = ray_sampler(cam2world, intrinsics, resolution)
  m = origins.shape[1]
  randoms = _draw_randoms(arch.render, key, b, m)
  if ray_chunk is None or ray_chunk >= m:
    feats, depth, dmin, dmax = _render_rays(params, arch, planes, origins, dirs, randoms, dtype)
  else:
    nc = -(-m // ray_chunk)
    pad = nc * ray_chunk - m

    def split(a):  # [B, M, ...] -> [nc, B, chunk, ...]; padding repeats the last ray
      a = jnp.concatenate([a, jnp.repeat(a[:, -1:], pad, axis=1)], axis=1) if pad else a
      a = a.reshape((b, nc, ray_chunk) + a.shape[2:])
      return jnp.moveaxis(a, 1, 0)

    def merge(a):  # [nc, B, chunk, ...] -> [B, M, ...]
      a = jnp.moveaxis(a, 0, 1)
      return a.reshape((b, nc * ray_chunk) + a.shape[3:])[:, :m]

    @jax.checkpoint
    def chunk_fn(xs):
      o, d, r = xs
      return _render_rays(params, arch, planes, o, d, r, dtype)

    chunks = (split(origins), split(dirs), jax.tree.map(split, randoms))
    feats, depth, dmin, dmax = lax.map(chunk_fn, chunks)
    feats, depth = merge(feats), merge(depth)
    dmin, dmax = jnp.min(dmin), jnp.max(dmax)
  depth = jnp.clip(depth, dmin, dmax)
  return (feats.reshape(b, resolution, resolution, -1),
          depth.reshape(b, resolution, resolution, 1))
