"""Load a trained SAT3D run from its workdir: the resolved config, the learned mask, the model.

A workdir written by launch/train.py holds
  config.json    the resolved config (ml_collections JSON; nested ConfigDicts as JSON objects),
  task.json      what the task measured (attributes, style channels, ...),
  checkpoints/   Orbax steps, item 'state' = {'mask': M [A + 1, C_editable], 'opt': ...}.
Only the mask is needed after training: it is restored from the checkpoint's own metadata, so
the optimiser's structure (and the mesh the run was trained on) do not matter here.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from sat3d_jax import transfer
from sat3d_jax.errors import InputError
from sat3d_jax.model import Sat3dModel

# Fields every SAT3D config has (whatever its task module is called).
SAT3D_FIELDS = ("generator", "clip", "descriptors", "objective", "views")


def load_config(workdir: str | pathlib.Path, required: Sequence[str] = SAT3D_FIELDS,
                kind: str = "a SAT3D") -> ml_collections.ConfigDict:
  """The resolved config of the run in `workdir` (its config.json), checked to have the
  `required` fields (SAT3D's by default; `kind` names the run in the error)."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{workdir}: no config.json; is this a training workdir "
                            "(python launch/train.py --config ... --workdir DIR)?")
  try:
    fields = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON ({e})") from None
  missing = [f for f in required if f not in fields] if isinstance(fields, dict) else \
      list(required)
  if missing:
    task = fields.get("task") if isinstance(fields, dict) else None
    raise InputError(f"{path}: not {kind} run (config.task is {task!r}; no "
                     f"{', '.join(missing)} field)")
  return ml_collections.ConfigDict(fields)


def recorded_attributes(workdir: str | pathlib.Path) -> Optional[tuple[str, ...]]:
  """The attributes the run measured, as the driver recorded them in task.json (None if the
  file is absent): lets a command reject a misspelt attribute before loading any model."""
  path = pathlib.Path(workdir) / "task.json"
  if not path.is_file():
    return None
  try:
    attributes = json.loads(path.read_text()).get("attributes")
  except (json.JSONDecodeError, AttributeError) as e:
    raise InputError(f"{path}: not a task description ({e})") from None
  return tuple(attributes) if attributes else None


def _manager(workdir: str | pathlib.Path):
  """A CheckpointManager over workdir/checkpoints that knows the items launch/trainer writes."""
  directory = (pathlib.Path(workdir) / "checkpoints").absolute()
  if not directory.is_dir():
    raise FileNotFoundError(f"{workdir}: no checkpoints directory ({directory}); has the run "
                            "saved a step yet?")
  return ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()})


def restore_state(workdir: str | pathlib.Path, step: Optional[int] = None,
                  required: Sequence[str] = ("mask",)) -> tuple[int, dict]:
  """(step, state) of checkpoint `step` (default: the newest), on this process's first device;
  InputError unless the state has the `required` entries."""
  with _manager(workdir) as manager:
    steps = sorted(manager.all_steps())
    if not steps:
      raise FileNotFoundError(f"{workdir}: no saved checkpoint steps under "
                              f"{manager.directory}")
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise InputError(f"{workdir}: no checkpoint for step {step}; saved steps: {steps}")
    # The restore target comes from the checkpoint's own metadata, placed on this process's
    # first device: the run may have been trained on another mesh, and the optimiser state
    # (restored too, then dropped by the callers) needs no structure from us.
    metadata = manager.item_metadata(step)["state"]
    absent = [k for k in required if metadata is None or k not in metadata]
    if absent:
      found = sorted(metadata) if metadata is not None else []
      raise InputError(f"{workdir}: checkpoint step {step} has no {', '.join(map(repr, absent))} "
                       f"in its state (found {found})")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          dict(metadata))
    state = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]
  return step, state


def load_mask(workdir: str | pathlib.Path, step: Optional[int] = None
              ) -> tuple[int, np.ndarray]:
  """(step, M) with the mask logits M [A + 1, C_editable] of `step` (default: the newest)."""
  step, state = restore_state(workdir, step, ("mask",))
  return step, np.asarray(state["mask"], np.float32)


def channel_mask(probabilities: jax.Array, targets: jax.Array,
                 editable: Optional[jax.Array], num_channels: int) -> jax.Array:
  """m_T over every flat style channel [B, num_channels]: the target mask of the editable
  channels (transfer.target_mask) scattered into place, 0 on channels the run never edits."""
  mask = transfer.target_mask(probabilities, targets)
  if editable is None:
    return mask
  return jnp.zeros((mask.shape[0], num_channels), mask.dtype).at[:, editable].set(mask)


@dataclasses.dataclass
class TrainedRun:
  """A trained SAT3D run: its config, the restored mask logits and the frozen model."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  step: int
  mask_logits: np.ndarray  # [A + 1, C_editable]
  model: Sat3dModel

  @property
  def attributes(self) -> tuple[str, ...]:
    return tuple(self.model.attributes)

  @property
  def temperature(self) -> float:
    return float(self.config.objective.temperature)

  def probabilities(self) -> np.ndarray:
    """P = softmax(M / tau) over the attributes: [A + 1, C_editable]."""
    return np.asarray(transfer.mask_probabilities(jnp.asarray(self.mask_logits),
                                                  self.temperature))

  def targets(self, names) -> np.ndarray:
    """Multi-hot [A] row for attribute names (an unknown name is an error listing the known)."""
    return transfer.targets_from_names(names, self.attributes)

  def edit(self, s_src: jax.Array, s_ref: jax.Array, targets: jax.Array, delta: float = 1.0
           ) -> jax.Array:
    """s_edit = s_src + delta * m_T * (s_ref - s_src) on full flat styles [B, C]; targets [B, A]
    or [A]."""
    targets = jnp.atleast_2d(jnp.asarray(targets, jnp.float32))
    mask = channel_mask(jnp.asarray(self.probabilities()), targets, self.model.editable,
                        self.model.num_channels)
    return transfer.edit_styles(s_src, s_ref, mask, delta)


def load_run(workdir: str | pathlib.Path, step: Optional[int] = None,
             model: Optional[Sat3dModel] = None) -> TrainedRun:
  """Config, mask (newest step unless `step`) and Sat3dModel of the run in `workdir`.

  The frozen generator and CLIP are rebuilt from the config (config.generator / config.clip,
  relative paths as seen from the current directory); pass `model` to reuse one already built.
  """
  workdir = pathlib.Path(workdir)
  config = load_config(workdir)
  step, mask = load_mask(workdir, step)
  model = model or Sat3dModel(config)
  expected = (len(model.attributes) + 1, model.num_editable)
  if mask.shape != expected:
    raise InputError(f"{workdir}: checkpoint step {step} has a mask of shape {mask.shape}, but "
                     f"the config's model needs {expected} ({len(model.attributes)} attributes "
                     f"+ 'other', {model.num_editable} editable channels)")
  return TrainedRun(workdir, config, step, mask, model)
