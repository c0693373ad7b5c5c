"""The driver's programs: what `train_and_evaluate` compiles, as pure functions of a task.

The loop (loop.py) and the benchmarks (launch/benchmarks) both build their steps here, so a
benchmark times exactly the program a training run executes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

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
