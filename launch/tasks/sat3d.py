"""SAT3D bound to the generic training driver: `make_task(config) -> launch.trainer.Task`.

Only the meta attribute mask is trained. EG3D and CLIP are frozen: loaded from their own
sources by `frozen()`, replicated over the mesh, never donated and never checkpointed. Each step
maps seeded (or latent-file) source/reference pairs to StyleSpace, edits the styles through the
mask, renders source, reference and edit from several random views, and measures them with the
QMM (objective.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from launch.trainer import ConfigError, InputSpec, Task
from sat3d_jax import latent_file, objective, pairs, qmm as qmm_lib, remat as remat_lib
from sat3d_jax.model import Sat3dModel


def objective_config(config: ml_collections.ConfigDict) -> objective.ObjectiveConfig:
  o = config.objective
  return objective.ObjectiveConfig(
      distance=qmm_lib.get_distance(o.distance), temperature=o.temperature, delta=o.delta,
      target_weight=o.target_weight, preserve_weight=o.preserve_weight,
      sparsity_weight=o.sparsity_weight, entropy_weight=o.entropy_weight,
      identity_weight=o.identity_weight, remat=remat_lib.policy_name(o.remat))


OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "lion": optax.lion}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """config.optimizer.name (optax, default hyperparameters) on a warmup + cosine schedule."""
  o = config.optimizer
  name = o.get("name", "adam")  # workdirs made before the field existed trained with Adam
  if name not in OPTIMIZERS:
    raise ConfigError(f"config.optimizer.name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
  schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, o.warmup_steps,
                                                max(config.total_steps, o.warmup_steps + 1),
                                                o.final_learning_rate_fraction * o.learning_rate)
  return OPTIMIZERS[name](schedule)


def target_indices(config: ml_collections.ConfigDict, attributes) -> list[int]:
  names = [a for a in config.target_attributes.split(",") if a] or list(attributes)
  unknown = [n for n in names if n not in attributes]
  if unknown:
    raise ConfigError(f"config.target_attributes names unknown attributes {unknown}; "
                      f"measured: {list(attributes)}")
  return [list(attributes).index(n) for n in names]


def make_task(config: ml_collections.ConfigDict, model: Sat3dModel | None = None) -> Task:
  """The SAT3D Task (see launch/trainer/task.py for the contract)."""
  cfg = objective_config(config)  # a bad objective field fails before the models load
  model = model or Sat3dModel(config)
  optimizer = make_optimizer(config)
  components = model.components()
  train_step = objective.make_train_step(components, cfg, optimizer,
                                         stochastic_render=config.stochastic_render)
  init_state = objective.make_init_state(len(model.attributes), model.num_editable,
                                         config.objective.other_logit, optimizer)
  targets = target_indices(config, model.attributes)
  num_latents = 0
  if config.source == "latents":
    num_latents = latent_file.read_latent_file(config.latents)["ws"].shape[0]
  elif config.source != "seeds":
    raise ConfigError(f"config.source must be 'seeds' or 'latents', got {config.source!r}")
  v = config.views
  draw = pairs.PairDraw(batch_size=config.global_batch_size, z_dim=model.generator.z_dim,
                        num_attributes=len(model.attributes), target_attributes=tuple(targets),
                        max_targets=config.max_targets, views=v.count, yaw_mean=v.yaw_mean,
                        yaw_std=v.yaw_std, yaw_limit=v.yaw_limit, pitch_mean=v.pitch_mean,
                        pitch_std=v.pitch_std, pitch_limit=v.pitch_limit,
                        num_latents=num_latents)

  try:  # configs saved before the field existed drew with TensorFlow where it was installed
    backend = pairs.resolve_backend(config.get("pairs_backend", "auto"))
  except ValueError as e:
    raise ConfigError(f"config.pairs_backend: {e}") from None

  def input_pipeline(spec: InputSpec):
    return pairs.make_pairs_pipeline(draw, seed=config.seed, start_step=spec.start_step,
                                     total_steps=config.total_steps,
                                     rows=spec.process_slice(draw.batch_size),
                                     pool_size=config.pair_pool, backend=backend)

  def eval_pipeline(spec: InputSpec):
    return pairs.make_eval_pipeline(draw, seed=config.eval_seed, num_pairs=config.eval_pairs,
                                    rows=spec.process_slice(draw.batch_size), backend=backend)

  if config.eval_pairs < 0:
    raise ConfigError(f"config.eval_pairs must be >= 0 (0 = no evaluation), got "
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
              global_batch_size=int(config.global_batch_size),
              eval_step=objective.make_eval_step(components, cfg) if evaluates else None,
              eval_pipeline=eval_pipeline if evaluates else None,
              input_stream=f"pairs/{backend}")
