"""Orbax checkpoints of the trainable state and the input position.

Only the trainable state is saved (frozen parameters are loaded from their own sources). Saves
are asynchronous (Orbax copies the arrays to host memory before `save` returns, so the state can
be donated to the next step right away) and atomic (written to a temporary directory and renamed),
and keep the newest `keep` steps. A restore targets the *current* mesh, so a run saved on 8
devices resumes on 4.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """A thin, typed wrapper over `orbax.checkpoint.CheckpointManager`."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 3, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=1, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts an (async) save of `state` and the JSON-serialisable `meta` at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `step` onto the shardings carried by `abstract_state` (ShapeDtypeStructs)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    logging.info("restored checkpoint step %d from %s", step, self.directory)
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs with the given shardings, the restore target for `Checkpoints.restore`."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)
