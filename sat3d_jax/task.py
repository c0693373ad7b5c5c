"""SAT3D as a task of the generic training driver (launch/trainer/task.py).

Only the meta attribute mask is trained. EG3D and CLIP are frozen: loaded from their own
sources by `frozen()`, replicated over the mesh, never donated and never checkpointed. Each step
maps seeded (or latent-file) source/reference pairs to StyleSpace, edits the styles through the
mask, renders source, reference and edit from several random views, and measures them with the
QMM (objective.py).
"""
from __future__ import annotations

import functools
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from launch.trainer.task import InputSpec, Task
from sat3d_jax import objective, pairs, qmm as qmm_lib
from sat3d_jax.eg3d import camera
from sat3d_jax.eg3d.generator import load_generator, random_generator

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


def build_generator(config: ml_collections.ConfigDict):
  """The frozen EG3D: `preset:NAME` (random weights) or a path load_generator accepts."""
  options = dict(modconv=config.generator_modconv, dtype=_DTYPES[config.compute_dtype],
                 ray_chunk=config.ray_chunk or None)
  if config.generator.startswith("preset:"):
    return random_generator(config.generator.split(":", 1)[1], seed=config.seed, **options)
  if not pathlib.Path(config.generator).exists():
    raise FileNotFoundError(MISSING_GENERATOR.format(path=config.generator))
  return load_generator(config.generator, **options)


def build_qmm(config: ml_collections.ConfigDict, heldout: bool = False) -> qmm_lib.QMM:
  """The frozen QMM over config.descriptors (optionally only config.attributes)."""
  attributes = [a for a in config.attributes.split(",") if a] or None
  if config.clip == "tiny":
    q = qmm_lib.QMM.tiny(config.descriptors, seed=config.seed, heldout=heldout)
    return q.with_descriptors(q.descriptors, heldout=heldout, attributes=attributes) \
        if attributes else q
  if not pathlib.Path(config.clip).exists():
    raise FileNotFoundError(MISSING_CLIP.format(path=config.clip))
  return qmm_lib.QMM.from_pretrained(config.clip, config.descriptors, heldout=heldout,
                                     attributes=attributes)


class Sat3dModel:
  """The generator, the QMM and the pure functions built on them (shared by the task, the
  transfer and evaluation commands)."""

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
      frozen["latents"] = jnp.asarray(pairs.read_latent_file(self.config.latents)["ws"])
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
    return self.generator.flatten_styles(self.generator.apply_styles(gen_params, ws))

  def render_flat(self, gen_params, flat: jax.Array, views: jax.Array, rng=None) -> jax.Array:
    styles = self.generator.unflatten_styles(flat)
    out = self.generator.apply_synthesis_from_styles(gen_params, styles, self.cameras(views),
                                                     noise_mode="const", rng=rng)
    return out["image"]

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
        editable=self.editable)


def objective_config(config: ml_collections.ConfigDict) -> objective.ObjectiveConfig:
  o = config.objective
  return objective.ObjectiveConfig(
      distance=qmm_lib.get_distance(o.distance), temperature=o.temperature, delta=o.delta,
      target_weight=o.target_weight, preserve_weight=o.preserve_weight,
      sparsity_weight=o.sparsity_weight, entropy_weight=o.entropy_weight,
      identity_weight=o.identity_weight, remat=o.remat)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  o = config.optimizer
  schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, o.warmup_steps,
                                                max(config.total_steps, o.warmup_steps + 1),
                                                o.final_learning_rate_fraction * o.learning_rate)
  return optax.adam(schedule)


def target_indices(config: ml_collections.ConfigDict, attributes) -> list[int]:
  names = [a for a in config.target_attributes.split(",") if a] or list(attributes)
  unknown = [n for n in names if n not in attributes]
  if unknown:
    raise ValueError(f"config.target_attributes names unknown attributes {unknown}; "
                     f"measured: {list(attributes)}")
  return [list(attributes).index(n) for n in names]


def make_task(config: ml_collections.ConfigDict, model: Sat3dModel | None = None) -> Task:
  """The SAT3D Task (see launch/trainer/task.py for the contract)."""
  model = model or Sat3dModel(config)
  optimizer = make_optimizer(config)
  cfg = objective_config(config)
  components = model.components()
  train_step = objective.make_train_step(components, cfg, optimizer,
                                         stochastic_render=config.stochastic_render)
  init_state = objective.make_init_state(len(model.attributes), model.num_editable,
                                         config.objective.other_logit, optimizer)
  targets = target_indices(config, model.attributes)
  num_latents = 0
  if config.source == "latents":
    num_latents = pairs.read_latent_file(config.latents)["ws"].shape[0]
  elif config.source != "seeds":
    raise ValueError(f"config.source must be 'seeds' or 'latents', got {config.source!r}")
  v = config.views
  draw = dict(batch_size=config.global_batch_size, z_dim=model.generator.z_dim,
              num_attributes=len(model.attributes), target_attributes=targets,
              max_targets=config.max_targets, views=v.count, yaw_mean=v.yaw_mean,
              yaw_std=v.yaw_std, yaw_limit=v.yaw_limit, pitch_mean=v.pitch_mean,
              pitch_std=v.pitch_std, pitch_limit=v.pitch_limit, num_latents=num_latents)

  def input_pipeline(spec: InputSpec):
    return pairs.make_pairs_pipeline(spec, seed=config.seed, total_steps=config.total_steps,
                                     pool_size=config.pair_pool, **draw)

  def eval_pipeline(spec: InputSpec):
    return pairs.make_eval_pipeline(spec, seed=config.eval_seed, num_pairs=config.eval_pairs,
                                    **draw)

  if config.eval_pairs < 0:
    raise ValueError(f"config.eval_pairs must be >= 0 (0 = no evaluation), got "
                     f"{config.eval_pairs}")
  if config.eval_pairs:
    eval_pipeline(InputSpec(0))  # checks the set size now, not at the first evaluation

  summary_targets = np.zeros((1, len(model.attributes)), np.float32)
  for name in [a for a in config.summary_targets.split(",") if a] or [model.attributes[0]]:
    summary_targets[0, list(model.attributes).index(name)] = 1.0
  summary_views = np.stack([np.linspace(-0.5, 0.5, 3), np.zeros(3)], -1)[None]  # [1, 3, 2]

  def summaries(state, frozen, rng):
    del rng
    z = jax.random.normal(jax.random.key(config.summary_seed), (2, model.generator.z_dim))
    batch = {"z_src": z[:1], "z_ref": z[1:], "targets": jnp.asarray(summary_targets),
             "views": jnp.asarray(summary_views, jnp.float32)}
    if config.source == "latents":
      batch = {"src_index": jnp.array([0]), "ref_index": jnp.array([min(1, num_latents - 1)]),
               "targets": batch["targets"], "views": batch["views"]}
    _, images = objective.edit_and_measure(state["mask"], frozen, batch, None, components, cfg)
    return {k: (v + 1.0) / 2.0 for k, v in images.items()}

  def describe() -> dict:
    return {"attributes": list(model.attributes), "num_style_channels": model.num_channels,
            "editable_channels": model.num_editable,
            "style_layers": [[n, d] for n, d in model.generator.style_layers],
            "generator": config.generator, "clip": config.clip}

  evaluates = config.eval_pairs > 0
  return Task(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
              frozen=model.frozen, summaries=summaries, describe=describe,
              eval_step=objective.make_eval_step(components, cfg) if evaluates else None,
              eval_pipeline=eval_pipeline if evaluates else None)
