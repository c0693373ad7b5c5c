"""FRL-DGT: training step throughput and the LOSO sweep run both ways.

Training step: the config's task as the driver runs it (launch/benchmarks/task_step.py), one
case per training stage, because the two stages are different programs (frldgt_jax/training.py):
stage 1 pre-trains the DGM on frame pairs (the batch of step 0), stage 2 trains end to end on
clips (the batch of step dgm_pretrain_steps). Each stage is measured twice: all selected folds
stacked in one program (throughput summed over the folds) and one fold alone (the program a
fold-by-fold sweep runs).

LOSO sweep both ways, for the same total work (the same folds, each for config.total_steps):
`launch.tasks.loso.run_sweep` stacked (all folds in one program) and fold by fold (one driver run
per fold), each with its checkpoints and held-out predictions, and the share of identical
predictions (as `loso.compare_modes`). The programs each sweep runs (per training unit the
driver's init and each stage's step; once per sweep the held-out predictor and the finiteness
check) are compiled once, up front in the run's compile pool, and the sweeps read them back from
a persistent compilation cache (as launch/sweep.py runs, with --xla_cache_dir): a way's
`compile_s` is the XLA compilation of its programs and `sweep_s` the sweep as run (tracing,
cache reads, steps, checkpoints, predictions); total = compile + sweep. Should a sweep compile a
program itself after all, the comparison says so and gives no total. Fold by fold compiles its
per-unit programs once for all folds: the fold id is an argument of the driver's programs
(launch/trainer/programs.py, make_programs), so every fold runs the same ones.

Inputs. The step cases are fed in memory, without tf.data: each batch is the one the task's own
numpy sampler gives for that step (`FrldgtTask.batch_for_step`, what the input pipeline wraps in
tf.data), laid out on the mesh as the driver lays out the pipeline's. The clips are the prepared
dataset where the sweeps run (they train on it); elsewhere (sweep off, or no TensorFlow, e.g.
the GPU image) they are `loso_data.in_memory_data`: random frames in the generated corpus's
layout, so the folds, batches and programs have the same shapes. Without TensorFlow the step
cases are measured all the same and the LOSO sweep, which reads the prepared dataset through
TFDS and feeds tf.data, is reported as not run, with the reason.

Quick: :synthetic_tiny with folds 0,1 for every case and the sweep; full: every fold of
:synthetic.
"""
from __future__ import annotations

import importlib
import pathlib
import tempfile
from typing import Optional

import jax
import numpy as np

from launch.benchmarks import compile_events, harness, task_step
from launch.benchmarks.suites import Finish, SuiteOptions
from launch import trainer
from launch.trainer import mesh as mesh_lib
from launch.trainer.task import InputSpec

QUICK_CONFIG = "configs/frldgt_composite.py:synthetic_tiny"
FULL_CONFIG = "configs/frldgt_composite.py:synthetic"
QUICK_SWEEP_FOLDS = "0,1"
_WAYS = {"stacked": "all folds in one program", "per_fold": "fold by fold"}
LOSO = "LOSO sweep both ways"


def _stages(config) -> list[tuple[str, int, str]]:
  """(case, start step, item) of each training stage the config runs."""
  pretrain = int(config.get("dgm_pretrain_steps", 0) or 0)
  total = int(config.total_steps)
  if pretrain <= 0:
    return [("train step", 0, "clips")]
  stages = []
  stages.append(("train step, stage 1 (DGM pre-training)", 0, "pairs"))
  if total > pretrain:
    stages.append(("train step, stage 2 (end to end)", pretrain, "clips"))
  return stages


def tensorflow_missing() -> Optional[str]:
  """Why TensorFlow (and with it TFDS and tf.data) cannot be imported here, or None."""
  try:
    importlib.import_module("tensorflow")
  except ImportError as e:  # e.g. the GPU image (.ci/gpu_bench): no TensorFlow there
    return f"TensorFlow cannot be imported here ({type(e).__name__}: {e})"
  return None


def memory_batch(setup: task_step.StepSetup, step: int) -> dict:
  """The global batch the driver feeds at `step`, from the task's numpy sampler
  (FrldgtTask.batch_for_step) instead of its tf.data pipeline, laid out on the setup's mesh as
  the driver lays out the pipeline's (this process's share along the split axis)."""
  from launch.tasks import frldgt as task_lib  # pylint: disable=g-import-not-at-top
  spec = InputSpec(step, jax.process_index(), jax.process_count(), setup.split_axis)
  local = task_lib.process_share(setup.task.batch_for_step(step), spec)
  return mesh_lib.global_batch(local, setup.mesh, setup.split_axis)


def load_clips(config, real: bool):
  """(LosoData, what it is): the prepared dataset (`real`; needs TensorFlow) or random clips in
  the generated corpus's layout (loso_data.in_memory_data)."""
  from frldgt_jax import loso_data  # pylint: disable=g-import-not-at-top
  from launch.tasks import frldgt as task_lib  # pylint: disable=g-import-not-at-top
  if real:
    return task_lib.load_data(config), "the prepared dataset"
  return (loso_data.in_memory_data(config),
          "random in-memory clips in the generated corpus's layout (loso_data.in_memory_data)")


def _compiled(compilations: list) -> Optional[float]:
  """Summed compile wall seconds of harness.Compilations; None if one is missing or failed."""
  wall = 0.0
  for c in compilations:
    if c is None:
      return None
    try:
      wall += c.seconds
    except Exception:  # pylint: disable=broad-except  # its case reports the error
      return None
  return wall


# A program the sweep compiles itself in less than this is not counted as one it should have
# read from the cache (jax's default threshold for writing the cache): eager helpers only.
SUBSTANTIAL_COMPILE_S = 1.0


def loso_both_ways(config, ref: str, data, compiled: dict, options: SuiteOptions) -> dict:
  """Runs the LOSO sweep of `config` stacked and fold by fold; the comparison dict.

  compiled: {mode: compile wall s of the programs its sweep runs, compiled beforehand (and
  read back by the sweep from the persistent cache), or None}.
  """
  from frldgt_jax import results as results_lib  # pylint: disable=g-import-not-at-top
  from launch.tasks import loso  # pylint: disable=g-import-not-at-top
  out, events = {}, {}
  with tempfile.TemporaryDirectory(prefix="bench_loso_") as workdir:
    workdir = pathlib.Path(workdir)
    for mode in ("per_fold", "stacked"):
      options.log(f"  [frldgt] LOSO sweep, {_WAYS[mode]} ...")
      with harness.cache_writes_from(SUBSTANTIAL_COMPILE_S), compile_events.record() as rec:
        out[mode] = loso.run_sweep(config, workdir / f"{mode}_mode", mode=mode, data=data,
                                   say=lambda m: options.log(f"    {m}"))
      events[mode] = rec
    preds = {m: results_lib.read_predictions_csv(workdir / f"{m}_mode" / "predictions.csv",
                                                 len(data.class_names)) for m in out}
  a, b = preds["stacked"], preds["per_fold"]
  key_a = {(d, s, x): p for d, s, x, p in zip(a.dataset, a.subject, a.sample, a.prediction)}
  same = float(np.mean([key_a[(d, s, x)] == p
                        for d, s, x, p in zip(b.dataset, b.subject, b.sample, b.prediction)]))
  folds, steps = int(out["stacked"]["num_folds"]), int(config.total_steps)
  ways, warnings = [], []
  for mode in ("stacked", "per_fold"):
    rec, res = events[mode], out[mode]
    sweep, train = res["wall_time_s"], res["train_wall_time_s"]
    compile_s = compiled.get(mode)
    total = None if compile_s is None else compile_s + sweep
    if rec.cache_misses:  # a program the sweep compiled itself: maybe one compiled before too
      warnings.append(f"{_WAYS[mode]}: the sweep compiled {rec.cache_misses} program(s) itself "
                      f"(compile times by function: "
                      f"{ {k: round(v, 1) for k, v in rec.compiled.items()} }), so no total is "
                      "given")
      total = None
    ways.append({"way": _WAYS[mode], "mode": mode, "programs": 1,
                 "compile_s": compile_s, "sweep_s": sweep,
                 "train_s": train, "total_s": total,
                 "in_sweep_compilation": rec.as_dict(),
                 "fold_steps_per_s": folds * steps / train if train else None,
                 "UF1": res["UF1"], "UAR": res["UAR"]})
  stacked, per_fold = ways
  return {
      "name": LOSO, "status": "ok",
      "work": f"{folds} folds x {steps} steps ({config.dgm_pretrain_steps} DGM pre-training), "
              f"batch {config.batch_size} per fold; config {ref}"
              + (f", folds {config.folds}" if str(config.folds) != "all" else ""),
      "ways": ways,
      "speedup": (per_fold["total_s"] / stacked["total_s"]
                  if per_fold["total_s"] and stacked["total_s"] else None),
      "sweep_speedup": per_fold["sweep_s"] / stacked["sweep_s"] if stacked["sweep_s"] else None,
      "identical_predictions": same,
      "uf1_difference": abs(stacked["UF1"] - per_fold["UF1"]),
      "note": "compile s: XLA compilation of every program the way's sweep runs (per training "
              "unit the driver's init and each stage's step, the same for every fold since the "
              "fold id is an argument of the driver's programs; the held-out predictor; "
              "the finiteness check), compiled once in this run and read back by the sweep "
              "from a persistent compilation cache; sweep s: the sweep as run (tracing, cache "
              "reads, steps, checkpoints, held-out predictions); total = compile + sweep"
              + (f"; the programs compiled up to {options.compile_pool.workers} at a time, "
                 "beside the other suites' (compile times are wall times under that sharing)"
                 if options.compile_pool is not None and options.compile_pool.workers > 1
                 else ""),
      "warnings": warnings,
  }


def _build(config, data, source: str, options: SuiteOptions, sweep: bool):
  """Builds the stacked and one-fold setups on `data` and prepares their step cases (batches in
  memory) and, with `sweep`, the sweeps' own programs: (cases, prepared by way)."""
  from frldgt_jax import loso_data  # pylint: disable=g-import-not-at-top
  from launch.tasks import frldgt as task_lib  # pylint: disable=g-import-not-at-top
  log, pool = options.log, options.compile_pool
  fold_ids = loso_data.selected_folds(config, data.folds)
  stacked = task_step.prepare_step(
      config, task_lib.make_task(config, data=data, fold_ids=fold_ids), pool=pool)
  single = task_step.prepare_step(
      config, task_lib.make_task(config, data=data, fold_ids=fold_ids[:1], stacked=False),
      frozen=stacked.frozen, pool=pool)
  stages = _stages(config)
  # Every program each way's sweep compiles per training unit: init and the stages' steps.
  prepared = {"stacked": [stacked.init], "per_fold": [single.init]}
  cases = []  # (setup, Prepared) or (None, error case)
  for mode, setup, label in (("stacked", stacked, f"{len(fold_ids)} folds stacked"),
                             ("per_fold", single, f"one fold ({fold_ids[0]})")):
    for case, start_step, item in stages:
      name = f"{case}, {label}"
      try:
        p = task_step.prepare_task_step(
            config, suite="frldgt", case=name, item=item, setup=setup, start_step=start_step,
            pool=pool, log=log, batch=memory_batch(setup, start_step),
            notes=[f"batch from the task's numpy sampler, in memory (no tf.data); clips: "
                   f"{source}"])
        cases.append((setup, p))
        prepared[mode].append(p.compilation)
      except Exception as e:  # pylint: disable=broad-except  # reported, never replaced
        log(f"  [frldgt] {name}: {type(e).__name__}: {e}")
        cases.append((None, harness.error_case("frldgt", name, e)))
        prepared[mode].append(None)
  if sweep:
    _sweep_programs(config, data, fold_ids, {"stacked": stacked, "per_fold": single}, prepared,
                    pool)
  return cases, prepared


def _sweep_programs(config, data, fold_ids, setups: dict, prepared: dict, pool) -> None:
  """Adds the compilations of the programs each sweep runs once (not per training unit): the
  held-out predictor (frldgt_jax/training.py, one per shape of its index chunks) and the driver's
  finiteness check of the state (launch/trainer/loop.py), lowered on the arguments the sweep
  will pass (same shapes and shardings, so the sweep reads them from the cache)."""
  from frldgt_jax import loso_data, training  # pylint: disable=g-import-not-at-top
  model = training.build(config)[0]
  predictor = training.make_predictor(model, bool(config.data.match_brightness))
  all_finite = jax.jit(trainer.all_finite)
  for mode, setup in setups.items():
    params = setup.state["params"]
    if mode == "stacked":
      groups = [setup.task.slots]  # one predictor call shape for the whole stack
    else:  # training.predict_held_out adds the model axis (x[None], eagerly: same sharding)
      params = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype,
                                                           sharding=x.sharding), params)
      groups = [[loso_data.ModelSlot(k, k, False)] for k in fold_ids]
    shapes = set()
    for slots in groups:  # predict_held_out's chunk: min(eval_batch_size, longest test set)
      longest = max(len(data.folds[s.fold].test_idx) for s in slots)
      shapes.add((len(slots), min(int(config.eval_batch_size), longest)))
    for shape in sorted(shapes):
      lowered = predictor.trace(params, setup.frozen["frames"], np.zeros(shape, np.int32)).lower()
      prepared[mode].append(harness.Compilation(lowered, pool))
    prepared[mode].append(harness.Compilation(all_finite.trace(setup.state).lower(), pool))


def start(options: SuiteOptions, config_ref: Optional[str] = None,
          overrides: Optional[dict] = None, sweep: bool = True) -> Finish:
  """Builds the training-step cases of `config_ref` (default by options.quick) and, with
  `sweep`, the programs of the LOSO comparison, handing every compilation to the pool;
  finish() measures the cases, runs the sweeps and returns the suite dict."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  hint = " (the FRL-DGT task is not built yet)"
  reason = task_step.missing_reason(ref)
  if reason:
    return lambda: harness.missing_suite(reason + hint)
  log, pool = options.log, options.compile_pool
  overrides = dict(overrides or {})
  try:
    config = task_step.load_config(ref, overrides)
    importlib.import_module(config.task)
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] in task_step.PROJECT_PACKAGES:
      missing = harness.missing_suite(f"{ref}: module {e.name} does not exist yet{hint}")
      return lambda: missing
    raise
  if options.quick and "folds" not in overrides:
    task_step.apply_overrides(config, {"folds": QUICK_SWEEP_FOLDS}, ref)
  # The sweeps read the prepared dataset (TFDS) and feed tf.data: without TensorFlow they are
  # reported as not run and the step cases train on in-memory clips (module docstring).
  no_tensorflow = tensorflow_missing()
  not_run = None
  if sweep and no_tensorflow:
    not_run = {"name": LOSO, "status": "not run", "ways": [],
               "reason": f"the sweeps read the prepared dataset with TFDS and feed tf.data; "
                         f"{no_tensorflow}"}
    log(f"  [frldgt] {LOSO}: not run ({not_run['reason']})")
    sweep = False
  try:
    data, source = load_clips(config, real=sweep or (not no_tensorflow and
                                                     not config.data.synthetic))
  except Exception as e:  # pylint: disable=broad-except  # reported, never replaced by numbers
    log(f"  [frldgt] {ref}: {type(e).__name__}: {e}")
    message = harness.error_case("frldgt", ref, e)["error"]
    if no_tensorflow:  # a prepared dataset other than the generated corpus's: TFDS reads it
      missing = harness.missing_suite(f"{ref}: its clips need TensorFlow to be read "
                                      f"({no_tensorflow}); {message}")
      return lambda: missing
    return lambda: {"status": "error", "reason": message, "cases": []}
  # Both sweeps read the programs compiled here from a persistent cache (module docstring).
  # The cache already in use, if any (e.g. the tests' session cache), else a fresh one.
  restore_cache = (harness.use_persistent_cache(harness.persistent_cache_dir())
                   if sweep else None)
  try:
    built = _build(config, data, source, options, sweep)
  except BaseException:
    if restore_cache is not None:
      restore_cache()
    raise
  cases, prepared = built

  def finish() -> dict:
    results = []
    for setup, p in cases:
      if setup is None:
        results.append(p)
        continue
      try:
        results.append(task_step.run_task_step(p, setup, peaks=options.peaks,
                                               runs=options.runs, warmup=options.warmup,
                                               pool=pool, log=log))
      except Exception as e:  # pylint: disable=broad-except  # reported, never replaced
        log(f"  [frldgt] {p.case}: {type(e).__name__}: {e}")
        results.append(harness.error_case("frldgt", p.case, e))
    suite = {"status": "ok", "cases": results,
             "notes": [f"config {ref}, folds {config.folds}; clips: {source}"]}
    if not_run is not None:
      suite["comparisons"] = [not_run]
    if sweep:
      try:
        compiled = {m: _compiled(cs) for m, cs in prepared.items()}
        for cs in prepared.values():  # the executables are in the cache; free them here
          for c in cs:
            if c is not None:
              try:
                c.release()
              except Exception:  # pylint: disable=broad-except  # reported by its case
                pass
        if pool is not None:
          pool.drain()
        suite["comparisons"] = [loso_both_ways(config, ref, data, compiled, options)]
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [frldgt] LOSO sweep: {type(e).__name__}: {e}")
        suite["notes"].append(f"{LOSO}: error — "
                              f"{harness.error_case('frldgt', 'LOSO', e)['error']}")
      finally:
        if restore_cache is not None:
          restore_cache()
    return suite
  return finish


def run(options: SuiteOptions, config_ref: Optional[str] = None,
        overrides: Optional[dict] = None, sweep: bool = True) -> dict:
  """Training-step cases of `config_ref` (default by options.quick) and, with `sweep`, the LOSO
  comparison; the suite dict."""
  return start(options, config_ref, overrides, sweep)()
