"""An inversion encoder: a face crop -> W+ codes of the frozen EG3D and a camera refinement.

Optimisation (sat3d_jax/inversion.py) fits one photo in hundreds of generator forward+backward
passes; an encoder trained on the generator's own samples predicts the code in one forward pass
(GOAE, ICCV 2023; TriPlaneNet; E3DGE), and can start a short optimisation (docs/encoder.md).

The model (`Encoder`, Flax Linen, pure): the crop [B, H, W, 3] in [-1, 1] is resized to
`EncoderSpec.input_size`, then a residual CNN with GroupNorm (one stride-2 stage per width) and
global average pooling of every stage (coarse-to-fine features, concatenated) feeds two heads:

  ws    = w_mean + w_std * delta,  delta [B, num_ws, w_dim] from a zero-initialised linear layer
  yaw, pitch offsets [B, 2] (radians from the frontal camera) from another zero-initialised one

so an untrained encoder answers the W-space mean at the frontal camera, as optimisation starts.
w_mean / w_std [w_dim] are the statistics of the generator's mapped samples (`latent_stats`):
the regression target is whitened per dimension.

The loss of one batch of generator samples (`sample_loss`): z -> ws (the frozen mapping at the
frontal conditioning camera), rendered at a sampled FFHQ-like view; the encoder reads the image;
  wplus * mean(((ws_hat - ws) / w_std)^2)              the W+ regression
  + the inversion module's reconstruction terms       (L2 / L1 / MS-SSIM / CLIP) of ws_hat
                                                       rendered at the true camera
  + camera * mean((angles_hat - angles)^2)            the camera
Rows of aligned real photos (sat3d_jax/photo_folder.py) may replace some samples: they have no
code and no camera, so only the reconstruction terms judge them, rendered at the encoder's own
camera.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax import inversion
from sat3d_jax.eg3d.generator import Generator, apply_mapping, apply_synthesis

PyTree = Any


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  """The encoder's shape (static).

  input_size: the crop is resized to this many pixels before the backbone.
  widths: channels of each stride-2 stage (len(widths) halvings of input_size).
  blocks: residual blocks per stage.
  hidden: width of the heads' hidden layer.
  num_ws, w_dim: the generator's W+ shape.
  groups: GroupNorm groups (widths must divide by it).
  """
  input_size: int
  widths: tuple[int, ...]
  blocks: int
  hidden: int
  num_ws: int
  w_dim: int
  groups: int = 8

  def __post_init__(self):
    if self.input_size < 2 ** len(self.widths):
      raise ValueError(f"input_size {self.input_size} is too small for {len(self.widths)} "
                       "stride-2 stages")
    bad = [w for w in self.widths if w % self.groups]
    if bad:
      raise ValueError(f"widths {bad} do not divide into {self.groups} GroupNorm groups")


class _Block(nn.Module):
  """Pre-activation residual block: GN, leaky ReLU, 3x3 conv, twice."""
  width: int
  groups: int

  @nn.compact
  def __call__(self, x):
    y = nn.leaky_relu(nn.GroupNorm(self.groups)(x), 0.2)
    y = nn.Conv(self.width, (3, 3))(y)
    y = nn.leaky_relu(nn.GroupNorm(self.groups)(y), 0.2)
    y = nn.Conv(self.width, (3, 3))(y)
    return x + y


class Encoder(nn.Module):
  """Crop [B, H, W, 3] in [-1, 1] -> (delta [B, num_ws, w_dim], angles [B, 2]); see the module
  docstring."""
  spec: EncoderSpec

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    s = self.spec
    x = jnp.asarray(images, jnp.float32)
    if x.shape[1:3] != (s.input_size, s.input_size):
      x = jax.image.resize(x, (x.shape[0], s.input_size, s.input_size, 3), "linear",
                           antialias=True)
    x = nn.Conv(s.widths[0], (3, 3))(x)
    pooled = []
    for width in s.widths:
      x = nn.Conv(width, (3, 3), strides=(2, 2))(nn.leaky_relu(nn.GroupNorm(s.groups)(x), 0.2))
      for _ in range(s.blocks):
        x = _Block(width, s.groups)(x)
      pooled.append(jnp.mean(x, axis=(1, 2)))
    h = nn.leaky_relu(nn.Dense(s.hidden)(jnp.concatenate(pooled, axis=-1)), 0.2)
    delta = nn.Dense(s.num_ws * s.w_dim, kernel_init=nn.initializers.zeros)(h)
    angles = nn.Dense(2, kernel_init=nn.initializers.zeros)(h)
    return delta.reshape(-1, s.num_ws, s.w_dim), angles


def init_params(spec: EncoderSpec, rng: jax.Array, image_size: int) -> PyTree:
  """Fresh encoder parameters for crops of image_size px."""
  return Encoder(spec).init(rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32))


def latent_stats(generator: Generator, samples: int = 4096, seed: int = 0,
                 truncation_psi: float = 1.0) -> dict[str, jax.Array]:
  """{'mean', 'std'} [w_dim] of `samples` mapped z ~ N(0, I) at the frontal camera."""
  rig = inversion.CameraRig.of(generator)
  z = jax.random.normal(jax.random.PRNGKey(seed), (samples, generator.z_dim), jnp.float32)
  c = jnp.broadcast_to(rig.labels(jnp.zeros(2)), (samples, 25))
  w = generator.mapping(z, c, truncation_psi)[:, 0]
  return {"mean": jnp.mean(w, axis=0), "std": jnp.std(w, axis=0) + 1e-6}


def encode(spec: EncoderSpec, params: PyTree, stats: dict, images: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
  """(ws [B, num_ws, w_dim], angles [B, 2]) of crops [B, H, W, 3] in [-1, 1]."""
  delta, angles = Encoder(spec).apply(params, images)
  return stats["mean"] + stats["std"] * delta, angles


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Weights of the encoder's loss (see the module docstring) and the sampling of its data.

  wplus, camera: the W+ regression and camera terms; image: the reconstruction weights.
  truncation_psi: of the sampled codes; yaw/pitch std and limit: the views' clipped normals.
  """
  wplus: float = 1.0
  camera: float = 1.0
  image: inversion.LossWeights = inversion.LossWeights()
  truncation_psi: float = 1.0


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def sample_loss(params: PyTree, stats: dict, frozen: dict, z: jax.Array, angles: jax.Array, *,
                spec: EncoderSpec, generator: Generator, rig: inversion.CameraRig,
                loss: LossConfig, clip_spec=None, photo: Optional[jax.Array] = None,
                is_photo: Optional[jax.Array] = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss, metrics) of a batch of generator samples: z [B, z_dim], views [B, 2] (yaw, pitch
  offsets). stats: latent_stats; frozen: {'generator': params, 'clip'?: CLIP params}.

  With photos (sat3d_jax/photo_folder.py: photo [B, H, W, 3] uint8, is_photo [B] 1 on its
  rows), a photo row's target is its photo, rendered back at the encoder's own camera, and only
  the reconstruction terms judge it: the W+ and camera terms and the unprefixed metrics are the
  generated rows' means, `photo/*` the photo rows' (`photo/fraction` of the batch).
  """
  gen = frozen["generator"]
  arch, options = generator.arch, generator.options
  frontal = jnp.broadcast_to(rig.labels(jnp.zeros(2)), (z.shape[0], 25))
  ws = apply_mapping(gen, arch, z, frontal, loss.truncation_psi)
  c = rig.labels(angles)
  target = jax.lax.stop_gradient(
      apply_synthesis(gen, arch, ws, c, options, noise_mode="const")["image"])
  sampled = jnp.ones(z.shape[0], jnp.float32)
  if photo is not None:
    photo_rows = jnp.asarray(is_photo, jnp.float32)
    sampled = 1.0 - photo_rows
    real = jnp.asarray(photo, jnp.float32) / 127.5 - 1.0
    target = jnp.where(photo_rows[:, None, None, None] > 0, real, target)
  ws_hat, angles_hat = encode(spec, params, stats, target)
  wplus = _masked_mean(jnp.mean(jnp.square((ws_hat - ws) / stats["std"]), axis=(1, 2)), sampled)
  cam = _masked_mean(jnp.mean(jnp.square(angles_hat - angles), axis=1), sampled)
  total = loss.wplus * wplus + loss.camera * cam
  metrics = {"wplus": wplus, "camera": cam}
  if any(getattr(loss.image, t) for t in inversion.LOSS_TERMS):
    if photo is not None:  # a photo is rendered back at the camera the encoder gives it
      c = rig.labels(jnp.where(photo_rows[:, None] > 0, angles_hat, angles))
    images = apply_synthesis(gen, arch, ws_hat, c, options, noise_mode="const")["image"]
    embeds = None
    if clip_spec is not None:
      from sat3d_jax import clip_utils  # pylint: disable=g-import-not-at-top
      embeds = jax.lax.stop_gradient(clip_utils.image_embeddings(frozen["clip"], target,
                                                                 clip_spec))
    parts = inversion.reconstruction_terms(images, target, frozen.get("clip"), embeds,
                                           clip_spec)
    total = total + jnp.mean(inversion.weighted_terms(parts, loss.image.as_array()))
    parts["psnr"] = inversion.psnr(images, target)
    metrics.update({k: _masked_mean(v, sampled) for k, v in parts.items()})
    if photo is not None:
      metrics.update({f"photo/{k}": _masked_mean(v, photo_rows) for k, v in parts.items()})
  if photo is not None:
    metrics["photo/fraction"] = jnp.mean(photo_rows)
  metrics["loss"] = total
  return total, metrics


# ----------------------------------------------------------------------------------------------
# A trained encoder read back from its workdir.


@dataclasses.dataclass
class TrainedEncoder:
  """An encoder trained by launch/train.py (configs/encoder_ffhq.py): its spec, parameters,
  latent statistics, the generator it was trained on (the config's spec string) and step."""
  spec: EncoderSpec
  params: PyTree
  stats: dict
  generator: str
  step: int
  workdir: str

  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(ws, angles) of crops [B, H, W, 3] in [-1, 1] (jitted once per shape)."""
    return _encode_jit(self.spec, self.params, self.stats, jnp.asarray(images, jnp.float32))

  def check_generator(self, generator: Generator) -> None:
    """InputError unless the generator has the W+ shape the encoder predicts."""
    from sat3d_jax.errors import InputError  # pylint: disable=g-import-not-at-top
    if (generator.num_ws, generator.w_dim) != (self.spec.num_ws, self.spec.w_dim):
      raise InputError(f"{self.workdir}: the encoder predicts {self.spec.num_ws} ws of "
                       f"{self.spec.w_dim}, the generator has {generator.num_ws} of "
                       f"{generator.w_dim} (it was trained on {self.generator})")


_encode_jit = jax.jit(encode, static_argnums=0)

ENCODER_FIELDS = ("generator", "encoder", "loss", "views")


def spec_from_config(encoder_config, generator: Generator) -> EncoderSpec:
  """The EncoderSpec of a config's `encoder` block for this generator."""
  e = encoder_config
  return EncoderSpec(input_size=int(e.input_size), widths=tuple(int(w) for w in e.widths),
                     blocks=int(e.blocks), hidden=int(e.hidden), num_ws=generator.num_ws,
                     w_dim=generator.w_dim, groups=int(e.groups))


ENCODER_FORMAT = "sat3d-encoder"
ENCODER_FORMAT_VERSION = 1
_SPEC_FIELDS = ("input_size", "widths", "blocks", "hidden", "num_ws", "w_dim", "groups")


def load_encoder(path: str | pathlib.Path, step: Optional[int] = None) -> TrainedEncoder:
  """The encoder of a training workdir (the newest checkpoint unless `step`), or of an encoder
  file written by `save_encoder_file`."""
  if pathlib.Path(path).is_file():
    return read_encoder_file(path)
  from sat3d_jax import run_io  # pylint: disable=g-import-not-at-top
  config = run_io.load_config(path, ENCODER_FIELDS, "an encoder")
  step, state = run_io.restore_state(path, step, ("params", "stats"))
  e = config.encoder
  w_dim = int(np.asarray(state["stats"]["mean"]).shape[-1])
  num_ws = int(state["params"]["params"]["Dense_1"]["kernel"].shape[-1]) // w_dim
  spec = EncoderSpec(int(e.input_size), tuple(int(w) for w in e.widths), int(e.blocks),
                     int(e.hidden), num_ws, w_dim, int(e.groups))
  return TrainedEncoder(spec, state["params"], state["stats"], str(config.generator), step,
                        str(path))


def save_encoder_file(path: str | pathlib.Path, encoder: TrainedEncoder) -> None:
  """Writes the encoder alone (spec, parameters, statistics; no optimiser state) as one .npz."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  flat = traverse_util.flatten_dict(jax.device_get(encoder.params), sep="/")
  arrays = {f"params/{k}": np.asarray(v, np.float32) for k, v in flat.items()}
  arrays.update({f"stats/{k}": np.asarray(v, np.float32) for k, v in encoder.stats.items()})
  arrays.update({f"spec/{k}": np.asarray(getattr(encoder.spec, k)) for k in _SPEC_FIELDS})
  np.savez(path, format=ENCODER_FORMAT, format_version=ENCODER_FORMAT_VERSION,
           generator=encoder.generator, step=encoder.step, **arrays)


def read_encoder_file(path: str | pathlib.Path) -> TrainedEncoder:
  """The encoder in a file of `save_encoder_file` (an InputError naming what is wrong)."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from sat3d_jax.versioned_npz import read_versioned_npz  # pylint: disable=g-import-not-at-top
  data = read_versioned_npz(path, ENCODER_FORMAT, ENCODER_FORMAT_VERSION,
                            ("generator", "step", "stats/mean", "stats/std",
                             *(f"spec/{k}" for k in _SPEC_FIELDS)), "encoder file")
  spec = EncoderSpec(*(tuple(int(x) for x in data[f"spec/{k}"]) if k == "widths"
                       else int(data[f"spec/{k}"]) for k in _SPEC_FIELDS))
  params = traverse_util.unflatten_dict(
      {k[len("params/"):]: jnp.asarray(v) for k, v in data.items() if k.startswith("params/")},
      sep="/")
  stats = {k: jnp.asarray(data[f"stats/{k}"]) for k in ("mean", "std")}
  return TrainedEncoder(spec, params, stats, str(data["generator"]), int(data["step"]),
                        str(path))


def camera_labels(rig: inversion.CameraRig, angles: jax.Array) -> np.ndarray:
  """Labels [B, 25] of the encoder's (yaw, pitch) offsets [B, 2]."""
  return np.asarray(rig.labels(jnp.asarray(angles, jnp.float32)), np.float32)


__all__ = ["Encoder", "EncoderSpec", "LossConfig", "TrainedEncoder", "camera_labels", "encode",
           "init_params", "latent_stats", "load_encoder", "read_encoder_file", "sample_loss",
           "save_encoder_file", "spec_from_config"]
