"""The task contract: what a paper supplies to the generic training driver.

A *task* is everything paper-specific about training; the driver (`launch.trainer.loop`) owns
everything else: the device mesh, multi-process start, checkpoints, logging, progress and the
loop itself. A config names its task by module (`config.task = 'launch.tasks.sat3d'`); that module
defines `make_task(config) -> Task`.

Contract
--------
* ``init_state(rng) -> state``: the *trainable* state of ONE model (params, optimiser state,
  anything else that must be checkpointed), a pytree of arrays. Pure; the driver jits it with the
  target sharding so large states are created in place.
* ``train_step(state, frozen, batch, rng) -> (state, metrics)``: pure and jittable. ``metrics``
  is a flat dict of scalars and must contain ``'loss'``. ``rng`` is
  ``fold_in(PRNGKey(config.seed), step)`` (and, with several models, further folded with the
  model index), so a step is a deterministic function of (state, batch, step).
* ``frozen() -> pytree`` (optional): parameters that are used but never trained (SAT3D's EG3D
  generator and CLIP, FRL-DGT's on-device dataset). They are loaded from their own sources,
  replicated over the mesh, passed to every step as an argument, never donated and never
  written into checkpoints.
* ``input_pipeline(spec: InputSpec) -> iterator of batches``: a tf.data (or any) iterator of
  dicts of numpy arrays. Pipelines are *step-indexed*: the batch for step ``s`` is a deterministic
  function of ``(config.seed, s)``, and the iterator starts at ``spec.start_step``. This is the
  input position saved with each checkpoint, so a resumed run, on any number of devices or
  processes, sees exactly the batches an uninterrupted run would have seen. Each process yields
  only its own slice ``spec.process_slice(n)`` of the global batch axis (see `InputSpec`).
* ``eval_step(state, frozen, batch) -> metrics`` and ``eval_pipeline(spec)`` (optional): metrics
  are returned as sums with a ``'count'`` entry so they aggregate exactly across devices.
* ``summaries(state, frozen, rng) -> {name: images [N,H,W,C] in [0, 1]}`` (optional): image
  summaries written to TensorBoard and as PNG files under ``WORKDIR/images/``.
* ``num_models`` (default 0): when > 0, the trainable state carries a leading axis of that many
  *independent* models (FRL-DGT's LOSO folds). The task still writes ``init_state`` and
  ``train_step`` for one model; the driver vmaps them over the model axis and either shards that
  axis over the devices (``config.model_sharding = 'models'``, each device trains its own models,
  no gradient all-reduce) or replicates the models and shards each model's batch
  (``'batch'``). Batches then have shape ``[num_models, per_model_batch, ...]``.
* ``global_batch_size`` (optional, tasks without a model axis): the global batch size. With
  ``config.num_devices = 0`` (all devices) on one host, a batch that does not divide over every
  device trains on the most devices it divides over (with a note); otherwise such a batch is a
  ConfigError naming the fields to change.
* ``input_stream`` (optional): the name of the stream the pipeline draws from, when a task can
  draw from several (SAT3D's pairs from TensorFlow's or NumPy's RNG). The driver records it
  with each checkpoint and refuses to resume on another stream (a ConfigError naming both), so
  a resumed run never silently sees other batches than an uninterrupted one would have.
* ``model_ids`` (optional): the identity of each model, folded into its init and step rngs
  (default ``range(num_models)``). A run that trains one of those models alone (FRL-DGT fold by
  fold) sets ``num_models=0, model_ids=(k,)`` and gets exactly the rngs model k gets in the
  stacked run, so both modes can be compared like for like.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np

PyTree = Any
Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What the driver tells an input pipeline.

  Attributes:
    start_step: the first step whose batch the iterator must yield.
    process_index: this process's index (0 on a single host).
    process_count: the number of processes.
    split_axis: the batch axis that processes divide among them (0 for plain batches, 0 or 1 for
      ``[num_models, per_model_batch, ...]`` batches depending on the model sharding).
  """
  start_step: int = 0
  process_index: int = 0
  process_count: int = 1
  split_axis: int = 0

  def process_slice(self, size: int) -> slice:
    """This process's contiguous share of an axis of length ``size``."""
    if size % self.process_count:
      raise ValueError(
          f"axis of length {size} cannot be split evenly over {self.process_count} processes")
    per = size // self.process_count
    return slice(self.process_index * per, (self.process_index + 1) * per)


@dataclasses.dataclass(frozen=True)
class Task:
  """A paper's training task; see the module docstring for the contract."""
  init_state: Callable[[Any], PyTree]
  train_step: Callable[[PyTree, PyTree, Batch, Any], tuple[PyTree, dict]]
  input_pipeline: Callable[[InputSpec], Iterator[Batch]]
  frozen: Optional[Callable[[], PyTree]] = None
  eval_step: Optional[Callable[[PyTree, PyTree, Batch], dict]] = None
  eval_pipeline: Optional[Callable[[InputSpec], Iterator[Batch]]] = None
  summaries: Optional[Callable[[PyTree, PyTree, Any], dict]] = None
  num_models: int = 0
  model_ids: Optional[tuple[int, ...]] = None
  # Optional hook: metadata about the run (e.g. fold names) written next to the config.
  describe: Optional[Callable[[], dict]] = None
  # The global batch along the split axis (plain tasks): lets the driver fit the devices to it.
  global_batch_size: Optional[int] = None
  # The name of the random stream the input pipeline draws from (e.g. which backend), when a
  # task has several: recorded with each checkpoint; resuming with another one is refused.
  input_stream: str = ""
