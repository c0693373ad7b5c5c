"""Device mesh, multi-process start and global batch assembly.

Data parallelism is written as `jax.jit` over a one-axis ('data',) mesh: the trainable state is
replicated (or, for stacked independent models, sharded along its model axis) and batches are
sharded along their batch axis. There is no pmap and no per-device code.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed(coordinator_address: Optional[str], num_processes: Optional[int],
                                 process_id: Optional[int]) -> None:
  """Starts jax.distributed when the run spans several processes.

  On TPU pods and SLURM/Kubernetes GPU clusters `jax.distributed.initialize()` discovers the
  cluster by itself: pass ``coordinator_address='auto'``. Otherwise pass the coordinator's
  ``host:port`` and this process's id. On CPU the gloo collectives are selected so that several
  local processes can all-reduce (used by the multi-process test).
  """
  if not coordinator_address:
    return
  # Only affects the CPU client (and must be set before any backend starts): harmless on GPU
  # and TPU, and what lets several CPU processes all-reduce.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A ('data',) mesh over all (or the first `num_devices`) devices, ordered by process."""
  devices = jax.devices()
  if num_devices:
    devices = devices[:num_devices]
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded_along(mesh: Mesh, axis: int) -> NamedSharding:
  """Sharding that splits array axis `axis` over the data axis and replicates the rest."""
  return NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))


def state_sharding(mesh: Mesh, state_shapes: Any, shard_models: bool) -> Any:
  """Sharding for the trainable state: replicated, or split along the leading model axis."""
  if not shard_models:
    return jax.tree.map(lambda _: replicated(mesh), state_shapes)
  return jax.tree.map(lambda _: sharded_along(mesh, 0), state_shapes)


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh, split_axis: int) -> dict:
  """Assembles the global, sharded batch from this process's slice of it.

  Each process holds the rows `InputSpec.process_slice` gave it along `split_axis`; the result
  is one global jax.Array per key, sharded along that axis over the whole mesh.
  """
  sharding = sharded_along(mesh, split_axis)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    shape = list(value.shape)
    shape[split_axis] *= jax.process_count()
    if shape[split_axis] % mesh.size:
      raise ValueError(f"batch entry {key!r}: axis {split_axis} of global size "
                       f"{shape[split_axis]} is not divisible by the {mesh.size} devices")
    out[key] = jax.make_array_from_process_local_data(sharding, value, tuple(shape))
  return out
