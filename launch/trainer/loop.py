"""The generic training loop shared by SAT3D and FRL-DGT: `train_and_evaluate(config, workdir)`.

Reads top to bottom: build the task and the mesh, create or restore the trainable state, then
step -> (every log_every) check finiteness and log -> (every checkpoint_every) save, until
`total_steps` or a termination signal. See `launch.trainer.task` for what a task supplies.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import pathlib
import platform
import signal
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from launch.trainer import checkpoint as ckpt_lib
from launch.trainer.config_checks import validate_config
from launch.trainer.errors import ConfigError, NonFiniteLossError
from launch.trainer import logs as logs_lib
from launch.trainer import mesh as mesh_lib
from launch.trainer.programs import all_finite, plan_run
from launch.trainer.task import InputSpec, Task


def load_task(config: ml_collections.ConfigDict) -> Task:
  """Imports `config.task` and calls its `make_task(config)`."""
  if not config.task:
    raise ConfigError("config.task is empty: it must name a module with make_task(config)")
  try:
    module = importlib.import_module(config.task)
  except ModuleNotFoundError as e:
    if e.name is None or not config.task.startswith(e.name):
      raise  # the task module exists but imports something missing: a broken install
    raise ConfigError(f"config.task names {config.task!r}, which does not exist") from e
  if not hasattr(module, "make_task"):
    raise ConfigError(f"task module {config.task!r} has no make_task(config)")
  return module.make_task(config)


def library_versions() -> dict:
  """Versions of the libraries a run depends on, written into the workdir."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  versions = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections",
               "transformers", "tensorflow-cpu", "tensorflow", "tensorflow-datasets",
               "tensorboardX", "numpy"):
    try:
      versions[name] = md.version(name)
    except md.PackageNotFoundError:
      pass
  versions["backend"] = jax.default_backend()
  versions["devices"] = [str(d) for d in jax.devices()]
  versions["process_count"] = jax.process_count()
  return versions


def _write_run_info(workdir: pathlib.Path, config: ml_collections.ConfigDict,
                    task: Task) -> None:
  previous = workdir / "config.json"
  resolved = json.loads(config.to_json_best_effort())
  if previous.exists():
    old = json.loads(previous.read_text())
    changed = sorted(k for k in set(old) | set(resolved) if old.get(k) != resolved.get(k))
    if changed:
      logging.warning("config differs from the previous run in this workdir: %s", changed)
      print(f"note: config fields changed since the last run here: {', '.join(changed)}")
  previous.write_text(json.dumps(resolved, indent=2, sort_keys=True))
  (workdir / "versions.json").write_text(json.dumps(library_versions(), indent=2))
  if task.describe is not None:
    (workdir / "task.json").write_text(json.dumps(task.describe(), indent=2))


class _SignalFlag:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (save, then exit)."""

  def __init__(self):
    self.received: Optional[int] = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, _frame):
    if self.received is not None:  # a second signal: stop waiting for the save
      raise KeyboardInterrupt
    self.received = signum
    print(f"\nreceived {signal.Signals(signum).name}: saving a checkpoint, then stopping",
          flush=True)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class RunResult:
  """What `train_and_evaluate` returns: the final state and how the run ended."""
  state: Any
  frozen: Any
  step: int
  stopped_by_signal: Optional[int]
  mesh: Any
  task: Task
  train_step: Any  # the jitted step, for inspection (e.g. its compiled shardings)
  model_ids: Any = None  # train_step's last argument


def _first_non_finite(pending: list[tuple[int, dict]]) -> Optional[tuple[int, str, float]]:
  host = jax.device_get([m for _, m in pending])
  for (step, _), metrics in zip(pending, host):
    for name in sorted(metrics, key=lambda k: k != "loss"):  # the loss first
      value = np.asarray(metrics[name])
      if not np.all(np.isfinite(value)):
        return step, name, float(value.flat[np.argmax(~np.isfinite(value.ravel()))])
  return None


def _mean_metrics(pending: list[tuple[int, dict]]) -> dict:
  host = jax.device_get([m for _, m in pending])
  return {k: float(np.mean([np.mean(m[k]) for m in host])) for k in host[-1]}


def run_eval(task: Task, eval_fn, state, frozen, mesh, split_axis: int) -> dict:
  """Runs the task's eval pipeline once; returns summed metrics divided by their count."""
  spec = InputSpec(0, jax.process_index(), jax.process_count(), split_axis)
  totals: dict = {}
  for local in task.eval_pipeline(spec):
    batch = mesh_lib.global_batch(local, mesh, split_axis)
    metrics = jax.device_get(eval_fn(state, frozen, batch))
    for k, v in metrics.items():
      totals[k] = totals.get(k, 0.0) + float(np.sum(v))
  count = totals.pop("count", None)
  if not count:
    return totals
  return {k: v / count for k, v in totals.items()} | {"count": count}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       task: Optional[Task] = None) -> RunResult:
  """Trains `config.task` in `workdir`, resuming from the newest checkpoint found there."""
  workdir = pathlib.Path(workdir).absolute()
  validate_config(config, jax.device_count())  # before the task builds or compiles anything
  task = task or load_task(config)
  plan = plan_run(config, task)
  mesh, programs, split_axis = plan.mesh, plan.programs, plan.split_axis
  init_key, model_ids = programs.init_key, plan.model_ids
  state_shapes, state_sharding = plan.state_shapes, plan.state_sharding
  is_main = jax.process_index() == 0
  if is_main:
    workdir.mkdir(parents=True, exist_ok=True)
    _write_run_info(workdir, config, task)

  # Verified before Orbax lists the steps: damaged ones are moved aside (by the main process).
  latest = ckpt_lib.newest_restorable_step(workdir / "checkpoints", quarantine=is_main,
                                           say=print if is_main else logging.info)
  checkpoints = ckpt_lib.Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints,
                                     async_save=config.async_checkpoints, write_records=is_main)
  if latest is not None:
    state, meta = checkpoints.restore(
        latest, ckpt_lib.abstract_like(state_shapes, state_sharding))
    start = int(meta["input_position"])
    saved_stream = meta.get("input_stream", "")  # absent from checkpoints before 2026-12
    if saved_stream and task.input_stream and saved_stream != task.input_stream:
      raise ConfigError(
          f"checkpoint step {latest} in {checkpoints.directory} was trained on input stream "
          f"{saved_stream!r}, this run would draw from {task.input_stream!r}: its batches "
          f"would not be the ones an uninterrupted run sees. Resume where {saved_stream!r} is "
          f"available (see the config's input backend field) or start a new workdir.")
    if is_main:
      print(f"resuming from checkpoint step {latest} in {checkpoints.directory}", flush=True)
  else:
    state = jax.jit(programs.init, out_shardings=state_sharding)(init_key, model_ids)
    start = 0

  frozen = task.frozen() if task.frozen is not None else None
  frozen = jax.device_put(frozen, mesh_lib.replicated(mesh)) if frozen is not None else None

  train_step = jax.jit(programs.train, out_shardings=(state_sharding, None), donate_argnums=(0,))
  # Metrics and images come back replicated, so every process can read them.
  replicated = mesh_lib.replicated(mesh)
  eval_step = (jax.jit(programs.evaluate, out_shardings=replicated)
               if task.eval_step is not None else None)
  summary_step = (jax.jit(programs.summaries, out_shardings=replicated)
                  if task.summaries is not None else None)
  evaluates = eval_step is not None and task.eval_pipeline is not None
  finite = jax.jit(all_finite)
  total = int(config.total_steps)
  log = logs_lib.RunLog(workdir, total, enabled=is_main, tensorboard=config.tensorboard)

  def save(step: int) -> None:
    if not bool(finite(state)):
      raise NonFiniteLossError(f"the state after step {step} is not finite; not saving it")
    checkpoints.save(step, state, {"step": step, "input_position": step,
                                   "input_stream": task.input_stream, "time": time.time()})

  def evaluate(at_step: int) -> None:
    began = time.perf_counter()
    metrics = run_eval(task, eval_step, state, frozen, mesh, split_axis)
    log.exclude_time(time.perf_counter() - began)
    log.scalars(at_step, metrics, "eval")

  step = start
  saved_step = latest
  pending: list[tuple[int, dict]] = []
  stopped = None
  try:
    with _SignalFlag() as signals:
      if start < total:
        batches = task.input_pipeline(InputSpec(start, jax.process_index(),
                                                jax.process_count(), split_axis))
        log.start(start)
        if is_main:
          stream = f", input {task.input_stream}" if task.input_stream else ""
          print(f"training steps {start}..{total} on {mesh.size} device(s) "
                f"({jax.default_backend()}{stream}), workdir {workdir}", flush=True)
        if evaluates and config.eval_every and start == 0:
          # The untrained state's evaluation: what the run's progress is measured against.
          evaluate(0)
      while step < total and signals.received is None:
        batch = mesh_lib.global_batch(next(batches), mesh, split_axis)
        state, metrics = train_step(state, frozen, batch, jnp.asarray(step, jnp.int32),
                                    model_ids)
        pending.append((step, metrics))
        step += 1
        boundary = (step % config.log_every == 0 or step == total
                    or step % config.checkpoint_every == 0)
        if boundary or signals.received is not None:
          bad = _first_non_finite(pending)
          if bad is not None:
            bad_step, name, value = bad
            raise NonFiniteLossError(
                f"non-finite {name} ({value}) at step {bad_step}; stopping. The latest "
                f"checkpoint (step {checkpoints.latest_step()}) predates it and is finite.")
          if step % config.log_every == 0 or step == total:
            record = log.scalars(step, _mean_metrics(pending))
            log.progress(step, record)
          pending = []
        if step % config.checkpoint_every == 0 or step == total:
          save(step)
          saved_step = step
        if task.summaries is not None and config.summary_every and \
            step % config.summary_every == 0:
          log.images(step, jax.device_get(summary_step(state, frozen, jnp.int32(step))))
        if evaluates and config.eval_every and step % config.eval_every == 0:
          evaluate(step)
      stopped = signals.received
      if stopped is not None and saved_step != step:
        save(step)  # `pending` was checked for finiteness when the signal was seen
      if stopped is None:
        if task.summaries is not None and not (config.summary_every and
                                               step % config.summary_every == 0):
          log.images(step, jax.device_get(summary_step(state, frozen, jnp.int32(step))))
        if evaluates and not (config.eval_every and step % config.eval_every == 0):
          evaluate(step)
  finally:
    checkpoints.close()
    log.close()
  if is_main:
    for line in log.loss_summary():
      print(line, flush=True)
    how = f"stopped by {signal.Signals(stopped).name}" if stopped else "finished"
    print(f"{how} at step {step}; checkpoints in {checkpoints.directory}, "
          f"metrics in {workdir / 'metrics.jsonl'}", flush=True)
  return RunResult(state, frozen, step, stopped, mesh, task, train_step, model_ids)
