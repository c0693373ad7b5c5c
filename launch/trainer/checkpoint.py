"""Orbax checkpoints of the trainable state and the input position, with checksums.

Only the trainable state is saved (frozen parameters are loaded from their own sources). Saves
are asynchronous (Orbax copies the arrays to host memory before `save` returns, so the state can
be donated to the next step right away) and atomic (written to a temporary directory and renamed),
and keep the newest `keep` steps. A restore targets the *current* mesh, so a run saved on 8
devices resumes on 4.

Integrity: once a save has completed, the sha256 of every file of the step is written to
`<step>/checksums.json` (atomically). `newest_restorable_step` verifies them before a restore: a
damaged step (a file changed, truncated, missing or added, e.g. by a crashed node) is named and
moved to `damaged/`, and the step before it is used; if no step is intact, the run stops with
`CheckpointError` and nothing is moved -- never a silent restart from step 0 over the history. A
step whose record is missing (the process died between Orbax's commit and the record) is
restored unverified, with a note: Orbax's commit is atomic, so it is complete.
A save that fails (no space left on the device, ...) is a `CheckpointError` naming the step; the
previous checkpoints are untouched.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pathlib
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp

from launch.trainer.errors import CheckpointError

CHECKSUM_FILE = "checksums.json"
# How a failed write reaches us from Orbax: an OSError from its own files, or TensorStore's
# ValueError ("RESOURCE_EXHAUSTED: ... No space left on device") from the array data.
_WRITE_ERRORS = (OSError, ValueError)
DAMAGED_DIR = "damaged"


def _digests(step_dir: pathlib.Path) -> dict[str, str]:
  out = {}
  for path in sorted(step_dir.rglob("*")):
    if path.is_file() and not path.name.startswith(CHECKSUM_FILE):
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
          digest.update(chunk)
      out[str(path.relative_to(step_dir))] = digest.hexdigest()
  return out


def write_checksums(step_dir: pathlib.Path) -> None:
  """Records the sha256 of every file of a completed step in `<step>/checksums.json`."""
  record = step_dir / CHECKSUM_FILE
  partial = step_dir / (CHECKSUM_FILE + ".partial")
  digests = _digests(step_dir)
  with open(partial, "w") as f:
    json.dump({"sha256": digests}, f, indent=0, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(partial, record)


def damage(step_dir: pathlib.Path) -> Optional[str]:
  """None if the step matches its checksum record (or has none), else what is wrong."""
  record = step_dir / CHECKSUM_FILE
  if not record.exists():
    return None
  try:
    expected = json.loads(record.read_text())["sha256"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"its checksum record is unreadable ({type(e).__name__})"
  found = _digests(step_dir)
  for name in sorted(set(expected) | set(found)):
    if name not in found:
      return f"{name} is missing"
    if name not in expected:
      return f"{name} was added after the save"
    if found[name] != expected[name]:
      return f"{name} does not match its checksum"
  return None


def saved_steps(directory: pathlib.Path) -> list[int]:
  """The committed steps in `directory`, newest first (Orbax's temporary directories of an
  interrupted save are not steps)."""
  if not directory.is_dir():
    return []
  return sorted((int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()),
                reverse=True)


def newest_restorable_step(directory: str | pathlib.Path, quarantine: bool = True,
                           say: Callable[[str], None] = print) -> Optional[int]:
  """The newest step whose files match their checksums; None if there is no step at all.

  Damaged steps newer than it are reported through `say` and (with `quarantine`, on the main
  process) moved to `<directory>/damaged/<step>` so that Orbax neither restores nor overwrites
  them. Raises CheckpointError, moving nothing, when steps exist but none is intact.
  """
  directory = pathlib.Path(directory)
  damaged = []
  for step in saved_steps(directory):
    problem = damage(directory / str(step))
    if problem is None:
      if not (directory / str(step) / CHECKSUM_FILE).exists():
        say(f"note: checkpoint step {step} has no checksum record (the run stopped right after "
            "saving it); restoring it unverified")
      for bad, why in damaged:
        say(f"checkpoint step {bad} in {directory} is damaged ({why}); resuming from step "
            f"{step}" + (f", and moving step {bad} to {directory / DAMAGED_DIR}"
                         if quarantine else ""))
        if quarantine:
          target = directory / DAMAGED_DIR / str(bad)
          suffix = 1
          while target.exists():
            target = directory / DAMAGED_DIR / f"{bad}.{suffix}"
            suffix += 1
          target.parent.mkdir(exist_ok=True)
          os.replace(directory / str(bad), target)
      return step
    damaged.append((step, problem))
  if damaged:
    listing = "; ".join(f"step {s}: {why}" for s, why in damaged)
    raise CheckpointError(
        f"no intact checkpoint in {directory} ({listing}). Not starting over from step 0 on "
        "top of them: restore the directory from a backup, or move it away to train from "
        "scratch.")
  return None


class Checkpoints:
  """A thin, typed wrapper over `orbax.checkpoint.CheckpointManager`."""

  def __init__(self, directory: str | pathlib.Path, keep: int = 3, async_save: bool = True,
               write_records: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    self._write_records = write_records  # the main process writes the checksum records
    self._unrecorded: list[int] = []
    self._failed = False
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
    """Starts an (async) save of `state` and the JSON-serialisable `meta` at `step` (after the
    previous save has completed and been recorded)."""
    self.wait()
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    except _WRITE_ERRORS as e:
      self._fail(step, e)
    self._unrecorded.append(step)

  def _fail(self, step: int, error: Exception) -> None:
    self._failed = True
    reason = str(error)
    for known in ("No space left on device", "Disk quota exceeded", "Read-only file system",
                  "Permission denied"):
      if known in reason:
        reason = known
    previous = [s for s in saved_steps(self.directory) if s < step]
    kept = (f"the previous checkpoint (step {max(previous)}) is intact and the run resumes "
            "from it" if previous else "no earlier checkpoint exists")
    raise CheckpointError(f"could not write checkpoint step {step} to {self.directory}: "
                          f"{reason[:300]}; {kept}") from error

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `step` onto the shardings carried by `abstract_state` (ShapeDtypeStructs)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    logging.info("restored checkpoint step %d from %s", step, self.directory)
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    """Waits for the pending save, then writes its checksum record."""
    if self._failed:
      return
    try:
      self._manager.wait_until_finished()
    except _WRITE_ERRORS as e:
      self._fail(self._unrecorded[-1] if self._unrecorded else -1, e)
    for step in self._unrecorded:
      if self._write_records and (self.directory / str(step)).is_dir():
        write_checksums(self.directory / str(step))
    self._unrecorded = []

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()


def abstract_like(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs with the given shardings, the restore target for `Checkpoints.restore`."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)
