"""The spotting model bound to the generic training driver: `make_task(config) -> Task`.

One *model* of the driver is one leave-one-subject-out fold (fold k holds out the k-th subject
in sorted order), all folds in one program on the driver's model axis, padded with dummy folds
to a multiple of the devices when config.model_sharding == 'models' (as FRL-DGT's folds,
launch/tasks/frldgt.py). Every fold trains config.total_steps steps; nothing is selected on the
held-out subject (the final parameters spot it: launch/spot_sweep.py). With
config.final_model=True there are no folds: one model trains on every video (num_models=0), the
spotter launch/spot.py loads.

Data. Every video's motion features are computed once at start (frldgt_jax/spotting/corpus.py)
and `frozen()` puts them on the devices with the per-frame labels and video index. The input
pipeline yields window starts drawn only from each fold's training videos, seeded by (seed,
fold, step), so batch s depends only on those (the driver's resume contract).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from frldgt_jax import loso_data
from frldgt_jax.spotting import corpus, training
from launch.tasks.frldgt import process_share
from launch.trainer import ConfigError, InputSpec, Task


def fold_plan(config: ml_collections.ConfigDict, data: corpus.Prepared
              ) -> list[loso_data.ModelSlot]:
  """The model slots: every LOSO fold (padded for the devices), or one slot for the final
  model on every video."""
  if config.final_model:
    return [loso_data.ModelSlot(0, 0, False)]
  if len(data.subjects) < 2:
    raise ConfigError(f"LOSO needs at least 2 subjects, {config.data.dataset!r} has "
                      f"{len(data.subjects)} (or set config.final_model=True)")
  multiple = 1
  if config.model_sharding == "models":
    multiple = config.num_devices or jax.device_count()
  n = len(data.subjects)
  return loso_data.plan_slots(list(range(n)), n, multiple)


def make_task(config: ml_collections.ConfigDict, *,
              data: Optional[corpus.Prepared] = None) -> Task:
  """The spotting task (module docstring)."""
  data = data if data is not None else corpus.prepare(config, corpus.load_videos(config))
  slots = fold_plan(config, data)
  stacked = not config.final_model
  fold_starts, fold_weights = [], []
  for s in slots:
    train = (list(range(len(data.videos))) if config.final_model
             else data.fold_videos(s.fold)[0])
    fold_starts.append(training.window_starts([data.bounds[i] for i in train],
                                              int(config.window)))
    rows = np.concatenate([np.arange(*data.bounds[i]) for i in train])
    fold_weights.append(training.class_weights(data.labels[rows]))
  init_state, train_step = training.make_train_fns(config, data.features.shape[1])
  batch_for_step = training.make_batch_sampler(int(config.seed), fold_starts, fold_weights,
                                               int(config.batch_size), stacked)

  def input_pipeline(spec: InputSpec):
    for step in range(spec.start_step, int(config.total_steps)):
      yield process_share(batch_for_step(step), spec)

  def frozen():
    return {"features": jnp.asarray(data.features), "labels": jnp.asarray(data.labels),
            "video": jnp.asarray(data.video)}

  def describe():
    folds = [{"fold": s.fold, "model_id": s.model_id, "dummy": s.dummy,
              "test_subject": None if config.final_model else data.subjects[s.fold]}
             for s in slots]
    return {"folds": folds, "stacked": stacked, "dataset": config.data.dataset,
            "subjects": data.subjects,
            "videos": [{"subject": v.subject, "name": v.name, "frames": int(len(v.frames))}
                       for v in data.videos]}

  return SpottingTask(init_state=init_state, train_step=train_step,
                      input_pipeline=input_pipeline, frozen=frozen,
                      num_models=len(slots) if stacked else 0,
                      model_ids=tuple(s.model_id for s in slots), describe=describe,
                      global_batch_size=None if stacked else int(config.batch_size),
                      slots=tuple(slots), data=data, batch_for_step=batch_for_step)


@dataclasses.dataclass(frozen=True)
class SpottingTask(Task):
  """The driver's Task plus its folds, its prepared data and the numpy batch sampler."""
  slots: tuple = ()
  data: Optional[corpus.Prepared] = None
  batch_for_step: Optional[Callable[[int], dict]] = None
