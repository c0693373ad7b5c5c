"""The inversion encoder bound to the generic training driver: `make_task(config) -> Task`.

The encoder (sat3d_jax/encoder.py) is trained; EG3D (and CLIP, for the feature term) are frozen:
loaded by `frozen()`, replicated over the mesh, never donated, never checkpointed. Each step
maps the batch's z through the frozen mapping, renders them at the batch's views, and fits the
encoder to the codes, the images and the cameras; rows of real photos (config.data.photos) are
fitted by their images alone. The state checkpoints the W statistics
(`stats`) beside the parameters, so a workdir alone is enough to invert with
(`sat3d_jax.encoder.load_encoder`).
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from launch.tasks.sat3d import make_optimizer
from launch.trainer import ConfigError, InputSpec, Task
from sat3d_jax import encoder as encoder_lib, inversion, pairs, photo_folder
from sat3d_jax.model import build_generator

SUMMARY_FACES = 4


def loss_config(config: ml_collections.ConfigDict) -> encoder_lib.LossConfig:
  o = config.loss
  clip = o.clip if config.clip else 0.0
  return encoder_lib.LossConfig(wplus=o.wplus, camera=o.camera,
                                image=inversion.LossWeights(o.l2, o.l1, o.ms_ssim, clip),
                                truncation_psi=o.truncation_psi)


def load_clip(name: str):
  """(spec, params) of the config's CLIP ('' = none: (None, None))."""
  if not name:
    return None, None
  from sat3d_jax import clip_utils  # pylint: disable=g-import-not-at-top
  from sat3d_jax.model import MISSING_CLIP  # pylint: disable=g-import-not-at-top
  if name in clip_utils.RANDOM_CLIPS:
    return clip_utils.named_random_clip(name)
  if not pathlib.Path(name).exists():
    raise FileNotFoundError(MISSING_CLIP.format(path=name))
  return clip_utils.load_clip(name)


def sample_draw(config: ml_collections.ConfigDict, z_dim: int) -> pairs.PairDraw:
  """The draw of z and one view per sample (SAT3D's pair draw, its source and first view)."""
  v = config.views
  return pairs.PairDraw(batch_size=config.global_batch_size, z_dim=z_dim, num_attributes=1,
                        target_attributes=(0,), max_targets=1, views=1, yaw_mean=0.0,
                        yaw_std=v.yaw_std, yaw_limit=v.yaw_limit, pitch_mean=0.0,
                        pitch_std=v.pitch_std, pitch_limit=v.pitch_limit)


def open_photos(config: ml_collections.ConfigDict, size: int
                ) -> Optional[photo_folder.PhotoFolder]:
  """The config's folder of real photos read at `size` px (None without one), checked now: a
  bad fraction is a ConfigError, a bad folder an InputError."""
  if not config.data.photos:
    return None
  try:
    photo_folder.photo_rows(config.data.photo_fraction, config.global_batch_size)
  except ValueError as e:
    raise ConfigError(f"config.data.photo_fraction: {e}") from None
  return photo_folder.PhotoFolder(config.data.photos, size)


def make_task(config: ml_collections.ConfigDict, generator=None) -> Task:
  """The encoder Task (see launch/trainer/task.py for the contract)."""
  loss_cfg = loss_config(config)
  generator = generator or build_generator(config)
  photos = open_photos(config, generator.img_resolution)
  rig = inversion.CameraRig.of(generator)
  try:
    spec = encoder_lib.spec_from_config(config.encoder, generator)
  except ValueError as e:
    raise ConfigError(f"config.encoder: {e}") from None
  clip_spec, clip_params = load_clip(config.clip) if loss_cfg.image.clip else (None, None)
  stats = jax.tree.map(np.asarray, encoder_lib.latent_stats(
      generator, config.stats_samples, config.seed, loss_cfg.truncation_psi))
  optimizer = make_optimizer(config)
  draw = sample_draw(config, generator.z_dim)
  size = generator.img_resolution

  def init_state(rng):
    params = encoder_lib.init_params(spec, rng, size)
    return {"params": params, "opt": optimizer.init(params),
            "stats": jax.tree.map(jnp.asarray, stats)}

  def loss_fn(params, stats, frozen, batch):
    return encoder_lib.sample_loss(params, stats, frozen, batch["z_src"],
                                   batch["views"][:, 0], spec=spec, generator=generator,
                                   rig=rig, loss=loss_cfg, clip_spec=clip_spec,
                                   photo=batch.get("photo"), is_photo=batch.get("is_photo"))

  def train_step(state, frozen, batch, rng):
    del rng
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"], state["stats"], frozen,
                                                    batch)
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = jax.tree.map(jnp.add, state["params"], updates)
    return {"params": params, "opt": opt, "stats": state["stats"]}, metrics

  def eval_step(state, frozen, batch):
    _, metrics = loss_fn(state["params"], state["stats"], frozen, batch)
    n = batch["z_src"].shape[0]
    return {**{k: v * n for k, v in metrics.items()}, "count": jnp.asarray(n, jnp.float32)}

  def input_pipeline(spec_: InputSpec):
    rows = spec_.process_slice(draw.batch_size)
    samples = pairs.make_pairs_pipeline(draw, seed=config.seed, start_step=spec_.start_step,
                                        total_steps=config.total_steps, rows=rows,
                                        backend="numpy")
    if photos is None:
      return samples
    return photo_folder.mix_photos(samples, photos, fraction=config.data.photo_fraction,
                                   batch_size=draw.batch_size, seed=config.seed,
                                   start_step=spec_.start_step, rows=rows)

  def eval_pipeline(spec_: InputSpec):
    return pairs.make_eval_pipeline(draw, seed=config.eval_seed, num_pairs=config.eval_samples,
                                    rows=spec_.process_slice(draw.batch_size), backend="numpy")

  if config.eval_samples < 0:
    raise ConfigError(f"config.eval_samples must be >= 0 (0 = no evaluation), got "
                      f"{config.eval_samples}")
  if config.eval_samples:
    eval_pipeline(InputSpec(0))  # checks the set size now, not at the first evaluation

  def frozen():
    out = {"generator": dict(generator.params)}
    if clip_params is not None:
      out["clip"] = clip_params
    return out

  def summaries(state, frozen_, rng):
    del rng
    batch = next(pairs.make_eval_pipeline(dataclasses.replace(draw, batch_size=SUMMARY_FACES),
                                          seed=config.eval_seed, num_pairs=SUMMARY_FACES,
                                          backend="numpy"))
    z, views = jnp.asarray(batch["z_src"]), jnp.asarray(batch["views"][:, 0])
    gen = frozen_["generator"]
    frontal = jnp.broadcast_to(rig.labels(jnp.zeros(2)), (z.shape[0], 25))
    ws = generator.apply_mapping(gen, z, frontal, loss_cfg.truncation_psi)
    target = generator.apply_synthesis(gen, ws, rig.labels(views))["image"]
    ws_hat, angles = encoder_lib.encode(spec, state["params"], state["stats"], target)
    recon = generator.apply_synthesis(gen, ws_hat, rig.labels(angles))["image"]
    return {"samples": (target + 1.0) / 2.0, "encoded": (recon + 1.0) / 2.0}

  def describe() -> dict:
    return {"generator": config.generator, "num_ws": generator.num_ws,
            "w_dim": generator.w_dim, "image_resolution": size,
            "encoder_parameters": int(sum(np.size(x) for x in jax.tree.leaves(
                jax.eval_shape(lambda: encoder_lib.init_params(spec, jax.random.key(0),
                                                               size)))))}

  evaluates = config.eval_samples > 0
  return Task(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
              frozen=frozen, summaries=summaries, describe=describe,
              global_batch_size=int(config.global_batch_size),
              eval_step=eval_step if evaluates else None,
              eval_pipeline=eval_pipeline if evaluates else None,
              input_stream="samples+photos/numpy" if photos is not None else "samples/numpy")
