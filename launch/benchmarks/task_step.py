"""Benchmarks of a task's training step, set up exactly as the generic driver runs it.

Any task of the driver contract (launch/trainer/task.py) can be measured from its config file:

  config = load_config("configs/sat3d_ffhq.py:tiny")
  case = bench_task_step(config, suite="sat3d", case="train step", item="images", peaks=...)

The step is the driver's own: the task's train_step wrapped by the driver's step functions (vmap
over stacked models, rng = fold_in(seed, step) and the model ids), jitted with the state's
sharding on the driver's ('data',) mesh and the state donated, fed one global batch from the
task's input pipeline (the batch of `start_step`, the same one every timed step: the input
pipeline is not part of the measurement). Throughput counts examples: the batch's leading axis,
times the number of stacked models.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from launch.benchmarks import harness
from launch import trainer
from launch.trainer import mesh as mesh_lib
from launch.trainer.task import InputSpec, Task

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def split_ref(ref: str) -> tuple[pathlib.Path, str]:
  """'configs/x.py:variant' -> (absolute path, 'variant'); relative paths are taken from the
  repository root when they do not exist from the working directory."""
  path, _, arg = ref.partition(":")
  p = pathlib.Path(path)
  if not p.is_absolute() and not p.exists():
    p = REPO_ROOT / p
  return p, arg


def missing_reason(ref: str) -> Optional[str]:
  """Why the config `ref` cannot be benchmarked yet (its file is absent), else None. A missing
  task module shows up later, as a ModuleNotFoundError (see task_suite)."""
  path, _ = split_ref(ref)
  if not path.is_file():
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return f"config file {shown} does not exist yet"
  return None


def load_config(ref: str, overrides: Optional[dict] = None) -> ml_collections.ConfigDict:
  """Loads 'path.py[:arg]' as `--config path.py:arg` does (get_config(arg)), applies field
  overrides (existing fields only, as `--config.field=value`) and locks the config."""
  path, arg = split_ref(ref)
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"bench_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path} has no get_config(arg)")
  config = module.get_config(arg) if arg else module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"{path}: get_config({arg!r}) returned {type(config).__name__}, "
                     "not a ConfigDict")
  config.lock()
  return apply_overrides(config, overrides, f"{path}:{arg}")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Optional[dict],
                    source: str = "config") -> ml_collections.ConfigDict:
  """Sets existing (possibly dotted) fields, as `--config.a.b=value` does; unknown ones fail."""
  for key, value in (overrides or {}).items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    if leaf not in target:
      raise KeyError(f"{source}: override of unknown config field {key!r}")
    target[leaf] = value
  return config


@dataclasses.dataclass
class StepSetup:
  """A task's jitted training step and its arguments, as the driver builds them.

  `state` is replaced by each measured step's output (the step donates its input state), so
  one setup serves several cases (e.g. the batches of different training stages). Until
  `materialize()` it may be abstract (jax.ShapeDtypeStructs with the driver's shardings): enough
  to lower and compile the step while the driver's init program compiles (`init`).
  """
  task: Task
  mesh: Any
  step_fn: Callable  # jitted (state, frozen, batch, step, model_ids) -> (state, metrics)
  state: Any
  frozen: Any
  num_models: int
  split_axis: int
  setup_s: float
  init: Optional[harness.Compilation] = None  # the driver's init program (None: not compiled)
  init_key: Any = None
  model_ids: Any = None  # the driver's model-id argument of init and step

  def batch(self, step: int) -> dict:
    """The global batch the driver would feed at `step` (from the task's input pipeline)."""
    batches = self.task.input_pipeline(InputSpec(step, jax.process_index(),
                                                 jax.process_count(), self.split_axis))
    local = next(iter(batches))
    if hasattr(batches, "close"):
      batches.close()
    return mesh_lib.global_batch(local, self.mesh, self.split_axis)

  def examples(self, batch: dict) -> int:
    """Examples in a batch: its leading axis, times the stacked models."""
    leaf = jax.tree.leaves(batch)[0]
    return int(leaf.shape[0] * (leaf.shape[1] if self.num_models else 1))

  def materialize(self) -> None:
    """Runs the compiled init program once, if the state is still abstract."""
    if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(self.state)):
      if self.init is None:
        raise ValueError("this setup was built with init=False: its step cannot run")
      self.state = harness.block(self.init.executable(self.init_key, self.model_ids))


def prepare_step(config: ml_collections.ConfigDict, task: Optional[Task] = None, *,
                 init: bool = True, frozen: Any = None,
                 pool: Optional[harness.CompilePool] = None) -> StepSetup:
  """Builds the task (unless given), the mesh and the initial state as train_and_evaluate does,
  and the step jitted with the driver's shardings and donation.

  The driver's init program (jit(init_fn, out_shardings=the state's)) is compiled inline, or in
  `pool` (then the state stays abstract until `materialize()`); init=False does not compile it
  at all (the step can be lowered and compiled, not run). `frozen` replaces task.frozen() (e.g.
  the frames that several folds' tasks share).
  """
  start = time.perf_counter()
  task = task or trainer.load_task(config)
  plan = trainer.plan_run(config, task)  # the driver's own mesh and programs
  mesh, num_models, split_axis = plan.mesh, plan.num_models, plan.split_axis
  init_key, model_ids = plan.programs.init_key, plan.model_ids
  init_fn, train_fn, state_sharding = plan.programs.init, plan.programs.train, plan.state_sharding
  state = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                       plan.state_shapes, state_sharding)
  compilation = None
  if init:
    lowered = jax.jit(init_fn, out_shardings=state_sharding).trace(init_key, model_ids).lower()
    compilation = harness.Compilation(lowered, pool)
  if frozen is None:
    frozen = task.frozen() if task.frozen is not None else None
    frozen = jax.device_put(frozen, mesh_lib.replicated(mesh)) if frozen is not None else None
  step_fn = jax.jit(train_fn, out_shardings=(state_sharding, None), donate_argnums=(0,))
  setup = StepSetup(task, mesh, step_fn, state, frozen, num_models, split_axis, 0.0,
                    compilation, init_key, model_ids)
  if init and pool is None:
    setup.materialize()
  setup.setup_s = time.perf_counter() - start
  return setup


def config_dtype(config: ml_collections.ConfigDict) -> str:
  """The compute dtype a config declares (a 'compute_dtype' or 'dtype' field, at the top or in
  config.model), else float32."""
  for scope in (config, config.get("model")):
    if not isinstance(scope, ml_collections.ConfigDict):
      continue
    for field in ("compute_dtype", "dtype"):
      if field in scope and isinstance(scope[field], str) and scope[field]:
        return jnp.dtype(scope[field]).name
  return "float32"


def step_args(setup: StepSetup, batch: dict, start_step: int) -> list:
  """The step's arguments as the driver passes them: (state, frozen, batch, step, model_ids)."""
  return [setup.state, setup.frozen, batch, jnp.asarray(start_step, jnp.int32), setup.model_ids]


def prepare_task_step(config: ml_collections.ConfigDict, *, suite: str, case: str, item: str,
                      setup: StepSetup, start_step: int = 0, notes: Sequence[str] = (),
                      pool: Optional[harness.CompilePool] = None,
                      log: Callable[[str], None] = print,
                      batch: Optional[dict] = None) -> harness.Prepared:
  """Traces, lowers and compiles (inline or in `pool`) the training step of `setup` on the batch
  of `start_step` (see the module docstring), or on `batch` (a global batch of the same
  structure, e.g. drawn in memory where the task's input pipeline needs TensorFlow); run it with
  `run_task_step`."""
  batch = setup.batch(start_step) if batch is None else batch
  examples = setup.examples(batch)
  models = f", {setup.num_models} models stacked" if setup.num_models else ""
  return harness.prepare(
      suite, case, setup.step_fn, step_args(setup, batch, start_step),
      items_per_call=examples, item=item, batch=examples, dtype=config_dtype(config),
      notes=[f"{setup.mesh.size} device(s){models}; batch of step {start_step}; "
             f"setup (task, inputs, init lowering) {setup.setup_s:.1f} s", *notes], pool=pool,
      log=log)


def run_task_step(prepared: harness.Prepared, setup: StepSetup, *, peaks: Optional[dict] = None,
                  runs: int = 5, warmup: int = 1, pool: Optional[harness.CompilePool] = None,
                  log: Callable[[str], None] = print) -> dict:
  """Times a prepared training step from the setup's current state; returns a case dict.

  The step donates its input state, so the live state is written back to `setup` after every
  call: later cases on the same setup (e.g. the next training stage) start from it.
  """
  def next_args(args, out):
    setup.state = out[0]  # the input state was donated: keep the live one for later cases
    return [out[0], *args[1:]]

  setup.materialize()
  args = [setup.state, *prepared.args[1:]]
  result = harness.run(prepared, warmup=warmup, runs=runs, args=args, next_args=next_args,
                       peaks=peaks, pool=pool, log=log)
  result["setup_s"] = setup.setup_s
  if setup.init is not None:  # the driver's init program (jit(init_fn)), compiled apart
    result["init_compile_s"] = setup.init.seconds
  return result


def bench_task_step(config: ml_collections.ConfigDict, *, suite: str, case: str, item: str,
                    peaks: Optional[dict] = None, runs: int = 5, warmup: int = 1,
                    setup: Optional[StepSetup] = None, start_step: int = 0,
                    notes: Sequence[str] = (), log: Callable[[str], None] = print) -> dict:
  """Times the training step of `config`'s task on the batch of `start_step` (see the module
  docstring); returns a case dict. Pass `setup` (prepare_step) to share one task and state
  between cases."""
  setup = setup or prepare_step(config)
  prepared = prepare_task_step(config, suite=suite, case=case, item=item, setup=setup,
                               start_step=start_step, notes=notes, log=log)
  return run_task_step(prepared, setup, peaks=peaks, runs=runs, warmup=warmup, log=log)


# Top-level packages whose absence means "not built yet" rather than a broken install.
PROJECT_PACKAGES = ("sat3d_jax", "frldgt_jax", "configs")


def start_task_suite(suite: str, ref: str, *, item: str, options,
                     overrides: Optional[dict] = None,
                     missing_hint: str = "") -> Callable[[], dict]:
  """Starts the one-case suite of config `ref`'s training step (builds the task and state,
  hands the compilation to options.compile_pool); the returned finish() runs it and gives the
  suite dict: 'missing' when the config file or a module of this project it needs does not
  exist yet, 'error' when building or running fails.

  `options` is a suites.SuiteOptions.
  """
  hint = f" ({missing_hint})" if missing_hint else ""
  reason = missing_reason(ref)
  if reason:
    return lambda: harness.missing_suite(reason + hint)

  def failed(e: Exception) -> Callable[[], dict]:
    absent = e.__cause__ if isinstance(e.__cause__, ModuleNotFoundError) else e  # load_task's
    if isinstance(absent, ModuleNotFoundError) and \
        (absent.name or "").split(".")[0] in PROJECT_PACKAGES:
      missing = harness.missing_suite(f"{ref}: module {absent.name} does not exist yet{hint}")
      return lambda: missing
    options.log(f"  [{suite}] {ref}: {type(e).__name__}: {e}")
    message = harness.error_message(e)
    return lambda: {"status": "error", "reason": message, "cases": []}

  try:
    config = load_config(ref, overrides)
    setup = prepare_step(config, pool=options.compile_pool)
    prepared = prepare_task_step(
        config, suite=suite, case=f"train step ({pathlib.Path(ref).name})", item=item,
        setup=setup, pool=options.compile_pool, log=options.log)
  except Exception as e:  # pylint: disable=broad-except  # reported, never replaced by numbers
    return failed(e)

  def finish() -> dict:
    try:
      case = run_task_step(prepared, setup, peaks=options.peaks, runs=options.runs,
                           warmup=options.warmup, pool=options.compile_pool, log=options.log)
    except Exception as e:  # pylint: disable=broad-except
      return failed(e)()
    return {"status": "ok", "cases": [case], "notes": [f"config {ref}"]}
  return finish


def task_suite(suite: str, ref: str, *, item: str, options, overrides: Optional[dict] = None,
               missing_hint: str = "") -> dict:
  """start_task_suite(...)(): the suite dict of config `ref`'s training step."""
  return start_task_suite(suite, ref, item=item, options=options, overrides=overrides,
                          missing_hint=missing_hint)()
