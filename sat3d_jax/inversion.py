"""EG3D inversion of an image: camera, W then W+ optimisation, optional pivotal tuning.

SAT3D's reference is usually a photograph (docs/sat3d.md, "Real images"), so a photo
must become a latent code of the frozen generator. The recipe follows the common EG3D/StyleGAN
projectors, with losses available offline (no VGG/LPIPS weights):

1. Camera: a given 25-value label, or an estimate: a grid of (yaw, pitch) offsets around the
   frontal camera rendered with the initial w (lowest loss wins), then refined by gradient
   descent jointly with w during the W phase and frozen afterwards.
2. W: one w [w_dim] shared by all num_ws layers, initialised at the mapping's w_avg buffer (or
   the mean of mapped random z), Adam with a cosine-decayed learning rate.
3. W+: every layer's w free, initialised from the W result, Adam with a short warm-up (Adam's
   first steps move every coordinate by about the learning rate; 7,168 of them at once throw
   the W result away).
4. Pivotal tuning (optional; Roich et al. 2022, "PTI"): the W+ code fixed as the pivot, the
   synthesis, decoder and super-resolution weights fine-tuned toward the image (Adam, 3e-4).

Loss = l2 * mean((x - y)^2) + l1 * mean|x - y| + ms_ssim * (1 - MS-SSIM(x, y))
       + clip * (1 - cos(CLIP(x), CLIP(y))), images in [-1, 1] (data range 2).
MS-SSIM follows tf.image.ssim_multiscale (Gaussian 11 taps, sigma 1.5, 2x2 average pooling,
Wang et al.'s power factors, per channel then averaged); images too small for five scales (the
128 px test generator) use the scales that fit, their factors renormalised.

Rendering is deterministic: the backbone's constant noise buffers (noise_mode 'const', what the
generation scripts and SAT3D render with), no random noise and no noise optimisation, and the
renderer's deterministic sampling (rng None).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sat3d_jax.eg3d import camera as camera_lib
from sat3d_jax.eg3d.generator import Generator, apply_synthesis
from sat3d_jax.errors import InputError

# Wang, Simoncelli & Bovik (2003), the exponents of the five scales (as tf.image.ssim_multiscale).
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
DATA_RANGE = 2.0  # generator images live in [-1, 1]
LOSS_TERMS = ("l2", "l1", "ms_ssim", "clip")
# State-dict buffers that pivotal tuning leaves alone: the mapping (unused with a fixed W+),
# w_avg, the FIR filters and the constant noise images.
_FROZEN_SUFFIXES = (".w_avg", "resample_filter", ".noise_const")


# ----------------------------------------------------------------------------------------------
# Image similarity (pure, jittable, differentiable).


def psnr(x: jax.Array, y: jax.Array, data_range: float = DATA_RANGE) -> jax.Array:
  """Peak signal-to-noise ratio [B] in dB of NHWC images x, y for the given data range."""
  mse = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
  coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-coords ** 2 / (2.0 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def _blur_valid(x: jax.Array, kernel: np.ndarray) -> jax.Array:
  """Separable depthwise filter of NHWC x with the 1-D kernel, 'VALID' (no padding)."""
  channels = x.shape[-1]
  k = jnp.asarray(kernel)
  dn = ("NHWC", "HWIO", "NHWC")
  kh = jnp.tile(k.reshape(-1, 1, 1, 1), (1, 1, 1, channels))
  kw = jnp.tile(k.reshape(1, -1, 1, 1), (1, 1, 1, channels))
  x = jax.lax.conv_general_dilated(x, kh, (1, 1), "VALID", dimension_numbers=dn,
                                   feature_group_count=channels)
  return jax.lax.conv_general_dilated(x, kw, (1, 1), "VALID", dimension_numbers=dn,
                                      feature_group_count=channels)


def _ssim_per_channel(x, y, max_val, filter_size, filter_sigma, k1, k2):
  """(ssim, cs), each [B, C]: the mean SSIM and contrast-structure maps per channel."""
  if min(x.shape[1], x.shape[2]) < filter_size:
    raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} px are smaller than the SSIM filter "
                     f"({filter_size} px)")
  kernel = _gaussian_1d(filter_size, filter_sigma)
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  mean_x, mean_y = _blur_valid(x, kernel), _blur_valid(y, kernel)
  num0 = 2.0 * mean_x * mean_y
  den0 = jnp.square(mean_x) + jnp.square(mean_y)
  luminance = (num0 + c1) / (den0 + c1)
  num1 = 2.0 * _blur_valid(x * y, kernel)
  den1 = _blur_valid(jnp.square(x) + jnp.square(y), kernel)
  cs = (num1 - num0 + c2) / (den1 - den0 + c2)
  return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def ssim(x: jax.Array, y: jax.Array, max_val: float = DATA_RANGE, filter_size: int = 11,
         filter_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> jax.Array:
  """Single-scale SSIM [B] of NHWC images (Gaussian window, population statistics, the mean of
  the valid part of the SSIM map, per channel then averaged: skimage's structural_similarity
  with gaussian_weights=True, use_sample_covariance=False, and tf.image.ssim)."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  value, _ = _ssim_per_channel(x, y, max_val, filter_size, filter_sigma, k1, k2)
  return jnp.mean(value, axis=-1)


def _halve(x: jax.Array) -> jax.Array:
  """2x2 average pooling; odd sizes are first padded at the end by mirroring (tf 'SYMMETRIC')."""
  pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
  if pad_h or pad_w:
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim_power_factors(size: int, filter_size: int = 11,
                          power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS
                          ) -> tuple[float, ...]:
  """The power factors for images of `size` px: one per scale whose image is still at least
  the filter's size (the coarsest of the five needs 16 * 11 = 176 px), renormalised to the same
  sum. 512 px images get all five; the 128 px test generator four, a 64 px one three."""
  scales, side = 0, int(size)
  while scales < len(power_factors) and side >= filter_size:
    scales += 1
    side = (side + 1) // 2
  if scales == 0:
    raise ValueError(f"images of {size} px are smaller than the SSIM filter ({filter_size} px)")
  kept = np.asarray(power_factors[:scales], np.float64)
  return tuple(float(v) for v in kept * (sum(power_factors) / kept.sum()))


def ms_ssim(x: jax.Array, y: jax.Array, max_val: float = DATA_RANGE,
            power_factors: Optional[Sequence[float]] = None, filter_size: int = 11,
            filter_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> jax.Array:
  """Multi-scale SSIM [B] of NHWC images, as tf.image.ssim_multiscale computes it:
  prod_j relu(cs_j)^beta_j * relu(ssim_M)^beta_M per channel, averaged over channels.

  power_factors: one per scale; default `ms_ssim_power_factors` for the image size (Wang et
  al.'s five when the image is large enough, fewer renormalised ones for small images).
  """
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  if power_factors is None:
    power_factors = ms_ssim_power_factors(min(x.shape[1], x.shape[2]), filter_size)
  factors = jnp.asarray(power_factors, jnp.float32)
  values = []
  for k in range(len(power_factors)):
    if k > 0:
      x, y = _halve(x), _halve(y)
    value, cs = _ssim_per_channel(x, y, max_val, filter_size, filter_sigma, k1, k2)
    values.append(jax.nn.relu(cs))
  values[-1] = jax.nn.relu(value)
  stacked = jnp.stack(values, axis=-1)  # [B, C, scales]
  return jnp.mean(jnp.prod(stacked ** factors, axis=-1), axis=-1)


# ----------------------------------------------------------------------------------------------
# The reconstruction loss.


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weights of the reconstruction loss terms (0 switches a term off).

  l2, l1: mean squared / absolute pixel error; ms_ssim: 1 - MS-SSIM; clip: 1 - cosine of the
  CLIP image embeddings (needs a CLIP model).
  """
  l2: float = 1.0
  l1: float = 0.0
  ms_ssim: float = 0.5
  clip: float = 0.0

  def as_array(self) -> jax.Array:
    return jnp.asarray([getattr(self, name) for name in LOSS_TERMS], jnp.float32)


class ClipTarget(NamedTuple):
  """A frozen CLIP for the feature loss: spec (static), params and the target's embeddings."""
  spec: Any
  params: Any
  target_embeds: jax.Array  # [B, D] unit norm


def reconstruction_terms(images: jax.Array, target: jax.Array, clip_params=None,
                         clip_target_embeds=None, clip_spec=None) -> dict[str, jax.Array]:
  """{term: [B]} of images vs target (NHWC, [-1, 1]), per example, for every LOSS_TERMS name
  (the CLIP term, computed only when clip_spec is given, is zero without it)."""
  diff = images - target
  parts = {
      "l2": jnp.mean(jnp.square(diff), axis=(1, 2, 3)),
      "l1": jnp.mean(jnp.abs(diff), axis=(1, 2, 3)),
      "ms_ssim": 1.0 - ms_ssim(images, target),
  }
  if clip_spec is not None:
    from sat3d_jax import clip_utils  # transformers is only needed with a CLIP model
    embeds = clip_utils.image_embeddings(clip_params, images, clip_spec)
    parts["clip"] = 1.0 - jnp.sum(embeds * clip_target_embeds, axis=-1)
  else:
    parts["clip"] = jnp.zeros_like(parts["l2"])
  return parts


def weighted_terms(parts: dict[str, jax.Array], weights: jax.Array) -> jax.Array:
  """[B] the weighted sum of the per-example terms of `reconstruction_terms`."""
  return sum(weights[i] * parts[name] for i, name in enumerate(LOSS_TERMS))


def reconstruction_loss(images: jax.Array, target: jax.Array, weights: jax.Array,
                        clip_params=None, clip_target_embeds=None, clip_spec=None
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(total loss, {term: value}) of images vs target (NHWC, [-1, 1]), summed over the batch.

  weights: [4] for LOSS_TERMS (LossWeights.as_array()). The CLIP term is computed only when
  clip_spec is given (a static choice); 'psnr' is reported alongside (mean over the batch).
  """
  parts = reconstruction_terms(images, target, clip_params, clip_target_embeds, clip_spec)
  total = sum(weights[i] * jnp.sum(parts[name]) for i, name in enumerate(LOSS_TERMS))
  out = {name: jnp.mean(v) for name, v in parts.items()}
  out["psnr"] = jnp.mean(psnr(images, target))
  return total, out


_STATIC = ("arch", "options", "clip_spec")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _latent_grads(params, ws, c, target, weights, clip_params, clip_embeds, *, arch, options,
                  clip_spec):
  """(loss, parts, d loss / d ws, d loss / d c) with the generator frozen."""
  def loss(ws, c):
    images = apply_synthesis(params, arch, ws, c, options, noise_mode="const")["image"]
    return reconstruction_loss(images, target, weights, clip_params, clip_embeds, clip_spec)
  (total, parts), (g_ws, g_c) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(ws, c)
  return total, parts, g_ws, g_c


@functools.partial(jax.jit, static_argnames=_STATIC)
def _param_grads(tunable, frozen, ws, c, target, weights, clip_params, clip_embeds, *, arch,
                 options, clip_spec):
  """(loss, parts, d loss / d tunable params) with ws and c fixed (pivotal tuning)."""
  def loss(tunable):
    params = {**frozen, **tunable}
    images = apply_synthesis(params, arch, ws, c, options, noise_mode="const")["image"]
    return reconstruction_loss(images, target, weights, clip_params, clip_embeds, clip_spec)
  (total, parts), grads = jax.value_and_grad(loss, has_aux=True)(tunable)
  return total, parts, grads


@functools.partial(jax.jit, static_argnames=("clip_spec",))
def _image_loss(images, target, weights, clip_params, clip_embeds, *, clip_spec):
  return reconstruction_loss(images, target, weights, clip_params, clip_embeds, clip_spec)


def render(generator: Generator, ws: jax.Array, c: jax.Array,
           params: Optional[Mapping[str, jax.Array]] = None) -> jax.Array:
  """Deterministic images [B, H, W, 3] of ws [B, num_ws, w_dim] at cameras c [B, 25]."""
  g = generator if params is None else dataclasses.replace(generator, params=params)
  return g.synthesis(jnp.asarray(ws, jnp.float32), jnp.asarray(c, jnp.float32),
                     noise_mode="const")["image"]


# ----------------------------------------------------------------------------------------------
# Cameras.


@dataclasses.dataclass(frozen=True)
class CameraRig:
  """The orbit of the generator's cameras: (yaw, pitch) offsets from the frontal view -> label.

  pivot and radius come from the generator's rendering_kwargs (avg_camera_pivot /
  avg_camera_radius); the FOV is the generation scripts' 18.837 degrees.
  """
  pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
  radius: float = 2.7
  fov_degrees: float = camera_lib.DEFAULT_FOV_DEGREES

  @classmethod
  def of(cls, generator: Generator, fov_degrees: float = camera_lib.DEFAULT_FOV_DEGREES
         ) -> "CameraRig":
    rk = generator.rendering_kwargs
    pivot = tuple(float(v) for v in rk.get("avg_camera_pivot", (0.0, 0.0, 0.0)))
    return cls(pivot, float(rk.get("avg_camera_radius", 2.7)), float(fov_degrees))

  def labels(self, angles: jax.Array) -> jax.Array:
    """Labels [..., 25] for angles [..., 2] = (yaw offset, pitch offset) in radians."""
    angles = jnp.asarray(angles, jnp.float32)
    return camera_lib.orbit_labels(angles[..., 0], angles[..., 1], self.pivot, self.radius,
                                   self.fov_degrees)


def read_camera_label(path: str | os.PathLike) -> np.ndarray:
  """A camera label from a JSON file: a list of 25 numbers (cam2world 4x4 row-major, then the
  normalised 3x3 intrinsics, EG3D's dataset.json layout), or a list of such lists -> [N, 25]."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except OSError as e:
    raise InputError(f"{path}: cannot read the camera label ({e})") from e
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON ({e})") from e
  try:
    label = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise InputError(f"{path}: the camera label must be a JSON list of 25 numbers") from e
  if label.ndim == 1:
    label = label[None]
  if label.ndim != 2 or label.shape[1] != 25:
    raise InputError(f"{path}: the camera label must be a JSON list of 25 numbers (or a list of "
                     f"such lists), got shape {list(label.shape)}")
  if not np.all(np.isfinite(label)):
    raise InputError(f"{path}: the camera label has non-finite values")
  bottom = label[:, 12:16]
  if not np.allclose(bottom, [0.0, 0.0, 0.0, 1.0], atol=1e-4):
    raise InputError(f"{path}: values 13-16 (the cam2world matrix's last row) must be 0, 0, 0, 1, "
                     f"got {bottom[0].tolist()}")
  return label.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Optimisation.


@dataclasses.dataclass(frozen=True)
class InversionConfig:
  """What `invert` and `pivotal_tuning` do.

  w_init: 'w_avg' (the mapping's tracked average) or 'mean' (mean of w_init_samples mapped
    z ~ N(0, I), conditioned on the frontal camera).
  w_steps / w_lr: the W phase (cosine decay to w_lr * w_lr_final_fraction).
  wplus_steps / wplus_lr: the W+ phase (linear warm-up over wplus_warmup_steps, cosine decay).
  camera_yaws / camera_pitches: the grid of offsets (radians) tried when no camera is given;
    camera_lr: Adam's learning rate for the (yaw, pitch) refinement during the W phase.
  pti_steps / pti_lr: pivotal tuning (0 steps = off).
  """
  w_init: str = "w_avg"
  w_init_samples: int = 1000
  w_steps: int = 200
  w_lr: float = 0.1
  w_lr_final_fraction: float = 0.1
  wplus_steps: int = 200
  wplus_lr: float = 0.02
  wplus_warmup_steps: int = 5
  camera_yaws: tuple[float, ...] = (-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6)
  camera_pitches: tuple[float, ...] = (-0.2, 0.0, 0.2)
  camera_lr: float = 0.01
  pti_steps: int = 0
  pti_lr: float = 3e-4
  weights: LossWeights = LossWeights()
  seed: int = 0

  def __post_init__(self):
    if self.w_init not in ("w_avg", "mean"):
      raise InputError(f"w_init must be 'w_avg' or 'mean', got {self.w_init!r}")
    for name in ("w_steps", "wplus_steps", "pti_steps", "wplus_warmup_steps"):
      if getattr(self, name) < 0:
        raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
    if not self.camera_yaws or not self.camera_pitches:
      raise InputError("the camera grid needs at least one yaw and one pitch")


@dataclasses.dataclass
class InversionResult:
  """ws [1, num_ws, w_dim] and c [1, 25] (float32 numpy), the camera offsets when estimated
  (radians, else None), the final rendering [1, H, W, 3], its PSNR (dB, data range 2) and the
  loss history (one dict per step: phase, step, loss, l2, l1, ms_ssim, clip, psnr)."""
  ws: np.ndarray
  c: np.ndarray
  angles: Optional[tuple[float, float]]
  image: np.ndarray
  psnr: float
  history: list[dict]


def initial_w(generator: Generator, how: str = "w_avg", samples: int = 1000, seed: int = 0,
              rig: Optional[CameraRig] = None) -> jax.Array:
  """The starting w [w_dim]: the w_avg buffer, or the mean of `samples` mapped z (frontal c)."""
  if how == "w_avg":
    return jnp.asarray(generator.params["backbone.mapping.w_avg"], jnp.float32)
  if how != "mean":
    raise InputError(f"unknown w initialisation {how!r} (use 'w_avg' or 'mean')")
  rig = rig or CameraRig.of(generator)
  z = jax.random.normal(jax.random.PRNGKey(seed), (samples, generator.z_dim), jnp.float32)
  c = jnp.broadcast_to(rig.labels(jnp.zeros(2)), (samples, 25))
  return jnp.mean(generator.mapping(z, c)[:, 0], axis=0)


def _clip_args(clip: Optional[ClipTarget]):
  return (None, None, None) if clip is None else (clip.params, clip.target_embeds, clip.spec)


def clip_target(spec, params, target: jax.Array) -> ClipTarget:
  """ClipTarget for a target image batch [B, H, W, 3] in [-1, 1] (embeddings computed once)."""
  from sat3d_jax import clip_utils
  embed = jax.jit(clip_utils.image_embeddings, static_argnums=2)
  return ClipTarget(spec, params, embed(params, jnp.asarray(target, jnp.float32), spec))


def _record(history, phase, total, parts):
  entry = {"phase": phase, "step": len(history), "loss": float(total)}
  entry.update({k: float(v) for k, v in parts.items()})
  history.append(entry)
  return entry


def _progress(total: int, desc: str, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=False)


def grid_camera(generator: Generator, target: jax.Array, ws: jax.Array,
                yaws: Sequence[float], pitches: Sequence[float],
                weights: LossWeights = LossWeights(), rig: Optional[CameraRig] = None,
                clip: Optional[ClipTarget] = None, progress: bool = False
                ) -> tuple[tuple[float, float], np.ndarray]:
  """The (yaw, pitch) offset of the grid whose rendering of ws [1, ...] fits target [1, ...]
  best, and the loss of every grid point [len(yaws), len(pitches)]."""
  rig = rig or CameraRig.of(generator)
  clip_params, clip_embeds, clip_spec = _clip_args(clip)
  w = weights.as_array()
  losses = np.zeros((len(yaws), len(pitches)))
  with _progress(losses.size, "camera grid", progress) as bar:
    for i, yaw in enumerate(yaws):
      for j, pitch in enumerate(pitches):
        c = rig.labels(jnp.asarray([[yaw, pitch]], jnp.float32))
        total, _ = _image_loss(render(generator, ws, c), target, w, clip_params, clip_embeds,
                               clip_spec=clip_spec)
        losses[i, j] = float(total)
        bar.update()
  i, j = np.unravel_index(np.argmin(losses), losses.shape)
  return (float(yaws[i]), float(pitches[j])), losses


def estimate_camera(generator: Generator, target: jax.Array, ws: jax.Array, *,
                    yaws: Sequence[float] = InversionConfig.camera_yaws,
                    pitches: Sequence[float] = InversionConfig.camera_pitches,
                    steps: int = 30, lr: float = 0.02,
                    weights: LossWeights = LossWeights(), rig: Optional[CameraRig] = None,
                    clip: Optional[ClipTarget] = None, progress: bool = False
                    ) -> tuple[tuple[float, float], list[dict]]:
  """(yaw, pitch) offsets (radians from the frontal camera) under which the latent ws [1, ...]
  renders closest to target [1, H, W, 3]: the best grid point, refined by `steps` Adam steps on
  the angles. Returns the angles and the refinement's loss history."""
  rig = rig or CameraRig.of(generator)
  start, _ = grid_camera(generator, target, ws, yaws, pitches, weights, rig, clip, progress)
  angles = jnp.asarray(start, jnp.float32)
  history: list[dict] = []
  opt = optax.adam(lr)
  state = opt.init(angles)
  step = _camera_step(rig, opt)
  clip_params, clip_embeds, clip_spec = _clip_args(clip)
  w = weights.as_array()
  with _progress(steps, "camera", progress) as bar:
    for _ in range(steps):
      c = rig.labels(angles[None])
      total, parts, _, g_c = _latent_grads(
          generator.params, ws, c, target, w, clip_params, clip_embeds, arch=generator.arch,
          options=generator.options, clip_spec=clip_spec)
      _record(history, "camera", total, parts)
      angles, state = step(angles, state, g_c[0])
      bar.update()
      bar.set_postfix(loss=f"{float(total):.4g}")
  return (float(angles[0]), float(angles[1])), history


def _camera_step(rig: CameraRig, opt: optax.GradientTransformation):
  """A jitted Adam step on the angles [2] from d loss / d label [25]."""
  @jax.jit
  def step(angles, state, g_label):
    _, vjp = jax.vjp(rig.labels, angles)
    (g_angles,) = vjp(g_label)
    updates, state = opt.update(g_angles, state, angles)
    return optax.apply_updates(angles, updates), state
  return step


def _adam_step(opt: optax.GradientTransformation):
  @jax.jit
  def step(x, state, g):
    updates, state = opt.update(g, state, x)
    return optax.apply_updates(x, updates), state
  return step


def invert(generator: Generator, target: jax.Array, *, camera: Optional[np.ndarray] = None,
           config: InversionConfig = InversionConfig(), clip: Optional[ClipTarget] = None,
           rig: Optional[CameraRig] = None, progress: bool = True,
           init_ws: Optional[np.ndarray] = None,
           init_angles: Optional[tuple[float, float]] = None) -> InversionResult:
  """Inverts one image target [1, H, W, 3] (float, [-1, 1], H = W = img_resolution) into W+.

  camera: the image's 25-value label ([25] or [1, 25]); None estimates (yaw, pitch) around the
  frontal camera (grid, then refined jointly with w in the W phase).
  init_ws: a start [1, num_ws, w_dim] (an encoder's prediction) instead of config.w_init: the
  W phase then moves every layer by one shared offset, W+ each layer; with no steps at all the
  start is the result. init_angles: the (yaw, pitch) start of the camera instead of the grid.
  """
  target = jnp.asarray(target, jnp.float32)
  res = generator.img_resolution
  if target.shape != (1, res, res, 3):
    raise ValueError(f"target must be [1, {res}, {res}, 3] (the generator's resolution), got "
                     f"{target.shape}")
  rig = rig or CameraRig.of(generator)
  clip_params, clip_embeds, clip_spec = _clip_args(clip)
  weights = config.weights.as_array()
  history: list[dict] = []
  num_ws = generator.num_ws
  if init_ws is None:
    if config.w_steps + config.wplus_steps == 0:
      raise InputError("w_steps + wplus_steps must be > 0 without a start (init_ws)")
    base = jnp.zeros((1, num_ws, generator.w_dim), jnp.float32)
    w = initial_w(generator, config.w_init, config.w_init_samples, config.seed, rig)
  else:
    base = jnp.asarray(init_ws, jnp.float32).reshape(1, num_ws, generator.w_dim)
    w = jnp.zeros((generator.w_dim,), jnp.float32)
  w = w.reshape(1, 1, -1)

  def grads(ws, c):
    return _latent_grads(generator.params, ws, c, target, weights, clip_params, clip_embeds,
                         arch=generator.arch, options=generator.options, clip_spec=clip_spec)

  if camera is None:
    if init_angles is None:
      init_angles, _ = grid_camera(generator, target, base + w, config.camera_yaws,
                                   config.camera_pitches, config.weights, rig, clip, progress)
    angles = jnp.asarray(init_angles, jnp.float32)
    cam_opt = optax.adam(config.camera_lr)
    cam_state = cam_opt.init(angles)
    cam_step = _camera_step(rig, cam_opt)
    c = rig.labels(angles[None])
  else:
    c = jnp.asarray(camera, jnp.float32).reshape(1, 25)
    angles = None

  # W phase: one w for all layers; the gradient of the broadcast is the sum over layers.
  if config.w_steps:
    opt = optax.adam(optax.cosine_decay_schedule(config.w_lr, config.w_steps,
                                                 config.w_lr_final_fraction))
    state = opt.init(w)
    step = _adam_step(opt)
    with _progress(config.w_steps, "W", progress) as bar:
      for _ in range(config.w_steps):
        total, parts, g_ws, g_c = grads(base + w, c)
        entry = _record(history, "w", total, parts)
        w, state = step(w, state, jnp.sum(g_ws, axis=1, keepdims=True))
        if angles is not None:
          angles, cam_state = cam_step(angles, cam_state, g_c[0])
          c = rig.labels(angles[None])
        bar.update()
        bar.set_postfix(loss=f"{entry['loss']:.4g}", psnr=f"{entry['psnr']:.2f}")
  ws = base + w

  # W+ phase: every layer's w free, the camera fixed.
  if config.wplus_steps:
    warmup = min(config.wplus_warmup_steps, config.wplus_steps)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.wplus_lr, warmup, max(config.wplus_steps, warmup + 1),
        config.wplus_lr * config.w_lr_final_fraction)
    opt = optax.adam(schedule)
    state = opt.init(ws)
    step = _adam_step(opt)
    with _progress(config.wplus_steps, "W+", progress) as bar:
      for _ in range(config.wplus_steps):
        total, parts, g_ws, _ = grads(ws, c)
        entry = _record(history, "w+", total, parts)
        ws, state = step(ws, state, g_ws)
        bar.update()
        bar.set_postfix(loss=f"{entry['loss']:.4g}", psnr=f"{entry['psnr']:.2f}")

  image = render(generator, ws, c)
  final = float(psnr(image, target)[0])
  return InversionResult(
      ws=np.asarray(ws, np.float32), c=np.asarray(c, np.float32),
      angles=None if angles is None else (float(angles[0]), float(angles[1])),
      image=np.asarray(image), psnr=final, history=history)


def tunable_names(generator: Generator) -> list[str]:
  """State-dict entries pivotal tuning changes: all but the mapping network and the buffers."""
  return [name for name in generator.params
          if not name.startswith("backbone.mapping.") and not name.endswith(_FROZEN_SUFFIXES)]


def pivotal_tuning(generator: Generator, targets: jax.Array, ws: jax.Array, c: jax.Array, *,
                   config: InversionConfig = InversionConfig(),
                   clips: Optional[Sequence[Optional[ClipTarget]]] = None,
                   progress: bool = True) -> tuple[dict[str, jax.Array], list[dict]]:
  """Pivotal tuning: fine-tunes the generator so that ws[i] at c[i] renders targets[i].

  targets [N, H, W, 3], ws [N, num_ws, w_dim], c [N, 25]; every step sums the gradients of the N
  images (each rendered alone, so one compiled step serves any N). Returns the full tuned params
  (the frozen entries unchanged) and the history (loss averaged over the images).
  """
  targets = jnp.asarray(targets, jnp.float32)
  ws = jnp.asarray(ws, jnp.float32)
  c = jnp.asarray(c, jnp.float32)
  n = targets.shape[0]
  if ws.shape[0] != n or c.shape != (n, 25):
    raise ValueError(f"need N targets, ws and cameras; got {targets.shape}, {ws.shape}, {c.shape}")
  clips = list(clips) if clips is not None else [None] * n
  names = set(tunable_names(generator))
  tunable = {k: v for k, v in generator.params.items() if k in names}
  frozen = {k: v for k, v in generator.params.items() if k not in names}
  weights = config.weights.as_array()
  opt = optax.adam(config.pti_lr)
  state = opt.init(tunable)
  step = _adam_step(opt)
  history: list[dict] = []
  with _progress(config.pti_steps, "pivotal tuning", progress) as bar:
    for _ in range(config.pti_steps):
      grads_sum, totals, parts_sum = None, 0.0, None
      for i in range(n):
        clip_params, clip_embeds, clip_spec = _clip_args(clips[i])
        total, parts, grads = _param_grads(
            tunable, frozen, ws[i:i + 1], c[i:i + 1], targets[i:i + 1], weights, clip_params,
            clip_embeds, arch=generator.arch, options=generator.options, clip_spec=clip_spec)
        grads_sum = grads if grads_sum is None else jax.tree.map(jnp.add, grads_sum, grads)
        totals += float(total)
        parts_sum = parts if parts_sum is None else jax.tree.map(jnp.add, parts_sum, parts)
      entry = _record(history, "pti", totals / n, {k: v / n for k, v in parts_sum.items()})
      tunable, state = step(tunable, state, grads_sum)
      bar.update()
      bar.set_postfix(loss=f"{entry['loss']:.4g}", psnr=f"{entry['psnr']:.2f}")
  return {**frozen, **tunable}, history


def save_generator(directory: str | os.PathLike, generator: Generator,
                   params: Mapping[str, jax.Array], note: Optional[dict] = None) -> pathlib.Path:
  """Writes params as a converted-generator directory (params.npz + config.json) that
  `sat3d_jax.eg3d.load_generator` reads; `note` goes into config.json under 'pivotal_tuning'.
  The directory appears complete or not at all; an existing one is replaced only if it holds
  nothing but those two files."""
  directory = pathlib.Path(directory).absolute()
  if directory.exists():
    if not directory.is_dir() or not {p.name for p in directory.iterdir()} <= {
        "params.npz", "config.json"}:
      raise FileExistsError(f"{directory} exists and is not a generator directory; not touching it")
  config = dict(generator.config)
  if note is not None:
    config["pivotal_tuning"] = note
  directory.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
  try:
    np.savez(staging / "params.npz", **{k: np.asarray(v, np.float32) for k, v in params.items()})
    with open(staging / "config.json", "w", encoding="utf-8") as f:
      json.dump(config, f, indent=1, allow_nan=False)
      f.write("\n")
    os.chmod(staging, 0o755)
    if directory.exists():
      shutil.rmtree(directory)
    os.replace(staging, directory)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return directory
