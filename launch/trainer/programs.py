"""The driver's programs: what `train_and_evaluate` compiles, as pure functions of a task.

The loop (loop.py) and the benchmarks (launch/benchmarks) both build their steps here, so a
benchmark times exactly the program a training run executes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from launch.trainer import mesh as mesh_lib
from launch.trainer.errors import ConfigError
from launch.trainer.task import Task


@dataclasses.dataclass(frozen=True)
class Programs:
  """The driver's pure programs for one task (see `make_programs`).

  Attributes:
    init_key: the rng `init` is called with.
    model_ids: int32 [max(num_models, 1)], the last argument of `init` and `train`.
    init: (rng, model_ids) -> state.
    train: (state, frozen, batch, step, model_ids) -> (state, metrics).
    summaries: (state, frozen, step) -> {name: images}.
    evaluate: (state, frozen, batch) -> summed metrics.
  """
  init_key: Any
  model_ids: np.ndarray
  init: Callable
  train: Callable
  summaries: Callable
  evaluate: Callable


def all_finite(tree: Any) -> jax.Array:
  """True when every floating-point leaf of `tree` is finite (a scalar bool array; jittable)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_programs(task: Task, num_models: int, seed: int) -> Programs:
  """The driver's pure programs for `task` (not yet jitted; the loop jits them with its
  shardings, and the benchmarks time the very same functions).

  `model_ids` (int32
  [max(num_models, 1)]) is an *argument* of init and train, not a constant inside them, so the
  programs of models trained alone (FRL-DGT's folds, one driver run each) are the same program:
  compiled once, then read from the persistent compilation cache by every other fold.
  """
  base_key = jax.random.key(seed)
  train_key = jax.random.fold_in(base_key, 1)
  ids = task.model_ids
  if ids is not None and len(ids) != max(num_models, 1):
    raise ValueError(f"task.model_ids has {len(ids)} entries for {num_models} models")
  model_ids = np.asarray(ids if ids is not None else range(max(num_models, 1)), np.int32)
  fold_single = task.model_ids is not None

  def per_model(rng, ids):
    """One rng per model (stacked), or the single model's rng (folded with its id if given)."""
    if num_models:
      return jax.vmap(lambda m: jax.random.fold_in(rng, m))(ids)
    return jax.random.fold_in(rng, ids[0]) if fold_single else rng

  def init(rng, ids):
    if num_models:
      return jax.vmap(task.init_state)(per_model(rng, ids))
    return task.init_state(per_model(rng, ids))

  def train(state, frozen, batch, step, ids):
    rngs = per_model(jax.random.fold_in(train_key, step), ids)
    if num_models:
      return jax.vmap(task.train_step, in_axes=(0, None, 0, 0))(state, frozen, batch, rngs)
    return task.train_step(state, frozen, batch, rngs)

  def summaries(state, frozen, step):
    rng = jax.random.fold_in(jax.random.fold_in(base_key, 2), step)
    if num_models:  # images of the first model only
      state = jax.tree.map(lambda x: x[0], state)
    return task.summaries(state, frozen, rng)

  def evaluate(state, frozen, batch):
    if num_models:
      return jax.vmap(task.eval_step, in_axes=(0, None, 0))(state, frozen, batch)
    return task.eval_step(state, frozen, batch)

  return Programs(jax.random.fold_in(base_key, 0), model_ids, init, train, summaries, evaluate)


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """Where and how a task trains: its mesh, programs and the state's shapes and shardings.

  Attributes:
    mesh: the ('data',) device mesh.
    programs: the task's pure programs (`make_programs`).
    model_ids: `programs.model_ids` placed on the mesh (replicated).
    num_models: the task's model axis (0 = a plain model).
    shard_models: whether the model axis is split over the devices.
    split_axis: the batch axis the devices (and processes) divide.
    state_shapes: jax.ShapeDtypeStructs of the trainable state.
    state_sharding: its shardings, the same tree.
  """
  mesh: Any
  programs: Programs
  model_ids: Any
  num_models: int
  shard_models: bool
  split_axis: int
  state_shapes: Any
  state_sharding: Any


def plan_run(config: ml_collections.ConfigDict, task: Task) -> RunPlan:
  """The mesh, programs and state placement `train_and_evaluate` uses for `task`; checks the
  driver's config fields (ConfigError naming the field) before anything compiles."""
  if config.model_sharding not in ("models", "batch"):
    raise ConfigError(f"config.model_sharding must be 'models' or 'batch', "
                      f"got {config.model_sharding!r}")
  mesh = mesh_lib.make_mesh(_device_count(config, task))
  num_models = task.num_models
  shard_models = bool(num_models) and config.model_sharding == "models"
  if shard_models and num_models % mesh.size:
    raise ConfigError(f"{num_models} models cannot be sharded over {mesh.size} devices; use "
                      "config.model_sharding='batch' or a device count that divides it")
  split_axis = 1 if (num_models and not shard_models) else 0
  programs = make_programs(task, num_models, config.seed)
  model_ids = jax.device_put(programs.model_ids, mesh_lib.replicated(mesh))
  state_shapes = jax.eval_shape(programs.init, programs.init_key, model_ids)
  state_sharding = mesh_lib.state_sharding(mesh, state_shapes, shard_models)
  return RunPlan(mesh, programs, model_ids, num_models, shard_models, split_axis, state_shapes,
                 state_sharding)


def _device_count(config: ml_collections.ConfigDict, task: Task) -> Optional[int]:
  """How many devices to train on: config.num_devices, or all (0) unless the task's global
  batch does not divide over all of them on one host; then the most it divides over."""
  requested = int(config.num_devices)
  if requested < 0:
    raise ConfigError(f"config.num_devices must be >= 0 (0 = all devices), got {requested}")
  batch = task.global_batch_size
  if not batch or task.num_models:
    return requested or None
  if requested:
    if batch % requested:
      raise ConfigError(f"the global batch of {batch} does not divide over "
                        f"config.num_devices={requested}; change one of them")
    return requested
  available = jax.device_count()
  if batch % available == 0:
    return None
  if jax.process_count() > 1:
    raise ConfigError(f"the global batch of {batch} does not divide over the {available} "
                      "devices of this multi-process run; set a batch size they divide")
  fit = max(d for d in range(1, available + 1) if batch % d == 0)
  print(f"note: the global batch of {batch} does not divide over {available} devices: training "
        f"on {fit} (a batch size that {available} divides uses them all)", flush=True)
  return fit
