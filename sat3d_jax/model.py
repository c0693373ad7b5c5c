"""A SAT3D model: the frozen EG3D generator and CLIP QMM a config names, and functions on them.

`Sat3dModel(config)` builds both from `config.generator` (a converted directory, a pickle, a
fixture `.npz` or `preset:NAME` for random weights) and `config.clip` (a local Hugging Face
directory, or 'tiny' / 'random-vit-b16' for random weights); a missing file is a
FileNotFoundError saying where it goes and how to make it. The training task,
`launch/transfer.py` and the evaluation all use this one class.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import ml_collections

from sat3d_jax import clip_utils, latent_file, objective, qmm as qmm_lib
from sat3d_jax.eg3d import camera, rendering
from sat3d_jax.eg3d.generator import generator_from_spec

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

MISSING_GENERATOR = """\
EG3D generator not found at {path!r}.
SAT3D edits a pre-trained EG3D. Download a network pickle from NVIDIA (e.g. ffhq512-128.pkl from
the EG3D model page on NGC), then convert it once:
    python launch/convert_eg3d.py --pkl ffhq512-128.pkl --out {path}
or point --config.generator at a .pkl / converted directory. To try everything without weights:
    python launch/train.py --config configs/sat3d_ffhq.py:tiny"""

MISSING_CLIP = """\
CLIP not found at {path!r}.
The QMM needs a local Hugging Face CLIP directory (config.json, flax_model.msgpack or
model.safetensors, tokenizer files, preprocessor_config.json), for example one saved with
    FlaxCLIPModel.from_pretrained('openai/clip-vit-base-patch16').save_pretrained('{path}')
    CLIPTokenizer.from_pretrained(...).save_pretrained('{path}')
on a machine with internet access. Or set --config.clip=tiny for a random tiny CLIP."""


def build_generator(config: ml_collections.ConfigDict, abstract: bool = False):
  """The frozen EG3D: `preset:NAME` (random weights) or a path load_generator accepts.
  `abstract` (presets): parameter shapes only, for lowering (tests/test_lowering.py)."""
  if not config.generator.startswith("preset:") and not pathlib.Path(config.generator).exists():
    raise FileNotFoundError(MISSING_GENERATOR.format(path=config.generator))
  return generator_from_spec(config.generator, seed=config.seed,
                             modconv=config.generator_modconv,
                             dtype=_DTYPES[config.compute_dtype],
                             ray_chunk=config.ray_chunk or None, abstract=abstract)


def build_qmm(config: ml_collections.ConfigDict, heldout: bool = False,
              abstract: bool = False) -> qmm_lib.QMM:
  """The frozen QMM over config.descriptors (optionally only config.attributes). A random CLIP
  ('tiny', 'random-vit-b16') may be `abstract`: shapes only, for lowering."""
  attributes = [a for a in config.attributes.split(",") if a] or None
  if config.clip in clip_utils.RANDOM_CLIPS:
    q = qmm_lib.QMM.random(config.clip, config.descriptors, seed=config.seed, heldout=heldout,
                           abstract=abstract)
    return q.with_descriptors(q.descriptors, heldout=heldout, attributes=attributes) \
        if attributes else q
  if not pathlib.Path(config.clip).exists():
    raise FileNotFoundError(MISSING_CLIP.format(path=config.clip))
  return qmm_lib.QMM.from_pretrained(config.clip, config.descriptors, heldout=heldout,
                                     attributes=attributes)


class Sat3dModel:
  """The frozen EG3D generator, the QMM and the pure functions a SAT3D run builds on them
  (styles, edits, multi-view rendering, measurement), shared by training, transfer and
  evaluation."""

  def __init__(self, config: ml_collections.ConfigDict, generator=None, qmm=None):
    self.config = config
    self.generator = generator or build_generator(config)
    self.qmm = qmm or build_qmm(config)
    self.attributes = self.qmm.attributes
    rk = self.generator.rendering_kwargs
    self.pivot = tuple(float(x) for x in rk.get("avg_camera_pivot", (0.0, 0.0, 0.2)))
    self.radius = float(rk.get("avg_camera_radius", 2.7))
    layers = self.generator.style_layers
    self.num_channels = sum(d for _, d in layers)
    if config.include_torgb:
      self.editable = None
      self.num_editable = self.num_channels
    else:
      index, start = [], 0
      for name, dim in layers:
        if not name.endswith(".torgb"):
          index.extend(range(start, start + dim))
        start += dim
      self.editable = jnp.asarray(index, jnp.int32)
      self.num_editable = len(index)

  def frozen(self) -> dict:
    frozen = {"generator": dict(self.generator.params), "clip": self.qmm.params,
              "groups": self.qmm.group_embeds}
    if self.config.source == "latents":
      frozen["latents"] = jnp.asarray(latent_file.read_latent_file(self.config.latents)["ws"])
    return frozen

  def cameras(self, views: jax.Array) -> jax.Array:
    """Rendering labels [N, 25] for (yaw, pitch) offsets [N, 2] from the frontal camera."""
    return camera.orbit_labels(views[:, 0], views[:, 1], self.pivot, self.radius)

  def frontal(self, n: int) -> jax.Array:
    return camera.orbit_labels(jnp.zeros(n), jnp.zeros(n), self.pivot, self.radius)

  def ws_from_z(self, gen_params, z: jax.Array) -> jax.Array:
    """Mapping with the frontal conditioning camera and the config's truncation."""
    return self.generator.apply_mapping(gen_params, z, self.frontal(z.shape[0]),
                                        self.config.truncation_psi,
                                        self.config.truncation_cutoff or None)

  def flat_styles(self, gen_params, ws: jax.Array) -> jax.Array:
    return rendering.flat_styles(gen_params, self.generator.arch, ws)

  def render_flat(self, gen_params, flat: jax.Array, views: jax.Array, rng=None) -> jax.Array:
    """Images [N, H, W, 3] of flat styles [N, C] from (yaw, pitch) views [N, 2]."""
    g = self.generator
    return rendering.synthesize(gen_params, g.arch, flat, self.cameras(views), g.options,
                                noise_mode="const", rng=rng)["image"]

  def planes_flat(self, gen_params, flat: jax.Array) -> jax.Array:
    """Tri-planes [N, 3, R, R, 32] of flat styles [N, C]: what does not depend on the camera."""
    return rendering.planes(gen_params, self.generator.arch, flat, self.generator.options)

  def render_planes(self, gen_params, planes: jax.Array, flat: jax.Array, views: jax.Array,
                    rng=None) -> jax.Array:
    """As render_flat from planes_flat(flat): images [N*V, H, W, 3] for views [N, V, 2], each
    face's planes rendered from its V cameras (row n*V + v is face n from view v)."""
    n, v = views.shape[:2]
    cams = self.cameras(views.reshape(n * v, 2)).reshape(n, v, -1)
    g = self.generator
    return rendering.render_views(gen_params, g.arch, planes, flat, cams, g.options,
                                  rng)["image"]

  def components(self) -> objective.Components:
    def styles(frozen, batch):
      g = frozen["generator"]
      if "z_src" in batch:
        ws_src, ws_ref = self.ws_from_z(g, batch["z_src"]), self.ws_from_z(g, batch["z_ref"])
      else:
        ws_src = frozen["latents"][batch["src_index"]]
        ws_ref = frozen["latents"][batch["ref_index"]]
      return self.flat_styles(g, ws_src), self.flat_styles(g, ws_ref)

    spec = self.qmm.spec
    return objective.Components(
        attributes=self.attributes,
        styles=styles,
        render=lambda frozen, flat, views, rng: self.render_flat(frozen["generator"], flat,
                                                                 views, rng),
        measure=lambda frozen, images: qmm_lib.qmm_apply(frozen["clip"], frozen["groups"],
                                                         images, spec),
        embed=lambda frozen, images: qmm_lib.image_embeddings(frozen["clip"], images, spec),
        editable=self.editable,
        planes=lambda frozen, flat: self.planes_flat(frozen["generator"], flat),
        render_planes=lambda frozen, planes, flat, views, rng: self.render_planes(
            frozen["generator"], planes, flat, views, rng))
