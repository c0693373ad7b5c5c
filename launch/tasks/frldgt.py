"""FRL-DGT bound to the generic training driver: `make_task(config) -> launch.trainer.Task`.

One *model* of the driver is one LOSO fold. Stacked (all folds in one program), the driver vmaps
`init_state` / `train_step` over a leading fold axis; fold by fold, `num_models=0` and
`model_ids=(k,)` give fold k exactly the rngs it gets in the stack (launch/trainer/task.py), and
its batches are the same because every sampler is seeded by (seed, fold index, step).

Data. The prepared dataset (frldgt_jax/data/builders.py) is small, so `frozen()` puts the whole
of it on the devices, replicated: uint8 frames [N, T, S, S, 1]. The input pipeline (tf.data,
step-indexed: batch `s` depends only on (config.seed, fold, s)) yields *indices* into it, drawn
only from each fold's training subjects (the samplers of frldgt_jax/data/pipeline.py assert it),
with each fold's labels and class weights; the train step (frldgt_jax/training.py) gathers the
frames, augments them on the device, runs the model and takes an optimiser step, in two stages
(DGM pre-training, then end to end) chosen by the batch's structure.

Controls. labels_shuffled permutes the training labels of each fold among that fold's training
clips (seeded per fold, so nothing of the held-out subject enters); evaluation always uses the
true labels.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from frldgt_jax import losses as losses_lib
from frldgt_jax import loso_data, training
from launch.trainer import ConfigError, InputSpec, Task


def load_data(config: ml_collections.ConfigDict) -> loso_data.LosoData:
  """The config's clips and folds (prepared data, or the generated corpus built on the fly)."""
  return loso_data.load_loso_data(config)


def make_task(config: ml_collections.ConfigDict, *, data: Optional[loso_data.LosoData] = None,
              fold_ids: Optional[Sequence[int]] = None, stacked: Optional[bool] = None,
              device_multiple: Optional[int] = None) -> Task:
  """The FRL-DGT task (module docstring).

  Args:
    config: an FRL-DGT config (configs/frldgt_composite.py).
    data: the loaded clips and folds (default: `load_data(config)`).
    fold_ids: the folds to train (default: `selected_folds(config)`).
    stacked: all of them in one program (default) or, with exactly one fold, that fold alone
      with num_models=0 and model_ids=(fold,).
    device_multiple: pad the stack with dummy folds to a multiple of this (default: the device
      count when config.model_sharding == 'models', else 1).
  """
  loso_data.validate_config(config)
  data = data if data is not None else load_data(config)
  if fold_ids is None:
    fold_ids = loso_data.selected_folds(config, data.folds)
  fold_ids = list(fold_ids)
  if not fold_ids:
    raise ConfigError("config.folds selects no fold")
  stacked = True if stacked is None else stacked
  if not stacked and len(fold_ids) != 1:
    raise ValueError(f"fold-by-fold training takes one fold at a time, got {fold_ids}")
  if device_multiple is None:
    device_multiple = 1
    if stacked and config.model_sharding == "models":
      device_multiple = (config.num_devices or jax.device_count())
  slots = loso_data.plan_slots(fold_ids, len(data.folds), device_multiple if stacked else 1)
  folds = [data.folds[s.fold] for s in slots]
  per_fold_labels = [loso_data.fold_labels(config, data, f) for f in folds]
  weights = np.stack([losses_lib.class_weights(l[f.train_idx], data.num_classes)
                      for l, f in zip(per_fold_labels, folds)])            # [M, C]
  model, dgm, optimizer, dgm_optimizer = training.build(config)
  frames_np = data.prepared.frames

  init_state, train_step = training.make_train_fns(config, model, dgm, optimizer, dgm_optimizer)
  batch_for_step = training.make_batch_sampler(config, folds, per_fold_labels, weights,
                                               num_frames=frames_np.shape[1], stacked=stacked)

  def input_pipeline(spec: InputSpec):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")

    def dataset(first, stop):  # steps [first, stop) of one stage (one batch structure)
      signature = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype))
                   for k, v in process_share(batch_for_step(first), spec).items()}
      generator = lambda: (process_share(batch_for_step(s), spec) for s in range(first, stop))
      return tf.data.Dataset.from_generator(generator, output_signature=signature).prefetch(2)

    total, start = int(config.total_steps), spec.start_step
    pretrain_steps = int(config.dgm_pretrain_steps)
    if start < pretrain_steps:
      yield from dataset(start, pretrain_steps).as_numpy_iterator()
      start = pretrain_steps
    if start < total:
      yield from dataset(start, total).as_numpy_iterator()

  def frozen():
    if data.flow is None:
      return {"frames": jnp.asarray(frames_np)}
    return {"frames": jnp.asarray(frames_np), "flow": jnp.asarray(data.flow)}

  def describe():
    return {"folds": [{"fold": s.fold, "model_id": s.model_id, "dummy": s.dummy,
                       "test_subject": data.folds[s.fold].test_subject,
                       "train_clips": int(len(data.folds[s.fold].train_idx)),
                       "test_clips": int(len(data.folds[s.fold].test_idx))} for s in slots],
            "dataset": data.source, "clips": int(len(data.labels)),
            "class_names": list(data.class_names), "stacked": stacked}

  return FrldgtTask(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
                    frozen=frozen, num_models=len(slots) if stacked else 0,
                    model_ids=tuple(s.model_id for s in slots), describe=describe,
                    slots=tuple(slots), model=model, batch_for_step=batch_for_step)


def process_share(batch: dict, spec: InputSpec) -> dict:
  """This process's share of a global numpy batch, along the axis the driver splits."""
  out = {}
  for key, value in batch.items():
    index = [slice(None)] * value.ndim
    index[spec.split_axis] = spec.process_slice(value.shape[spec.split_axis])
    out[key] = value[tuple(index)]
  return out


@dataclasses.dataclass(frozen=True)
class FrldgtTask(Task):
  """The driver's Task plus what the sweep needs to predict (the model slots and the model) and
  the numpy sampler behind the input pipeline: `batch_for_step(step)`, the global batch of a
  step in memory, without tf.data (what the benchmarks feed where TensorFlow is absent)."""
  slots: tuple = ()
  model: Any = None
  batch_for_step: Optional[Callable[[int], dict]] = None
