"""FRL-DGT: training step throughput and the LOSO sweep run both ways.

Training step: the config's task as the driver runs it (all selected folds stacked as the
driver's models; launch/benchmarks/task_step.py), one case per training stage, because the two
stages are different programs (frldgt_jax/task.py): stage 1 pre-trains the DGM on frame pairs
(the batch of step 0), stage 2 trains end to end on clips (the batch of step
dgm_pretrain_steps). Throughput is pairs/s and clips/s summed over the stacked folds.

LOSO sweep both ways, for the same total work (the same folds, each for config.total_steps):
`frldgt_jax.loso.compare_modes` runs the whole sweep stacked (all folds in one program) and fold
by fold (one driver run per fold), each including compilation, checkpoints and the held-out
predictions, and checks they agree. Quick: two folds of :synthetic_tiny; full: every fold of
:synthetic.
"""
from __future__ import annotations

import tempfile
from typing import Optional

from launch.benchmarks import harness, task_step
from launch.benchmarks.suites import SuiteOptions
from launch.trainer import loop

QUICK_CONFIG = "configs/frldgt_composite.py:synthetic_tiny"
FULL_CONFIG = "configs/frldgt_composite.py:synthetic"
QUICK_SWEEP_FOLDS = "0,1"


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


def loso_both_ways(ref: str, options: SuiteOptions, overrides: Optional[dict] = None) -> dict:
  """The LOSO comparison dict of config `ref`: both sweep modes timed by loso.compare_modes."""
  from frldgt_jax import loso  # pylint: disable=g-import-not-at-top
  overrides = dict(overrides or {})
  if options.quick:
    overrides.setdefault("folds", QUICK_SWEEP_FOLDS)
  config = task_step.load_config(ref, overrides)
  with tempfile.TemporaryDirectory(prefix="bench_loso_") as workdir:
    bench = loso.compare_modes(config, workdir, say=lambda m: options.log(f"    {m}"))
  folds, steps = int(bench["folds"]), int(bench["steps_per_fold"])
  labels = {"stacked": "all folds in one program", "per_fold": "fold by fold"}
  ways = []
  for mode in ("stacked", "per_fold"):
    total, train = bench["wall_time_s"][mode], bench["train_wall_time_s"][mode]
    ways.append({"way": labels[mode], "mode": mode, "programs": 1 if mode == "stacked" else folds,
                 "train_s": train, "total_s": total,
                 "fold_steps_per_s": folds * steps / train if train else None,
                 "UF1": bench["UF1"][mode], "UAR": bench["UAR"][mode]})
  return {
      "name": "LOSO sweep both ways", "status": "ok",
      "work": f"{folds} folds x {steps} steps ({config.dgm_pretrain_steps} DGM pre-training), "
              f"batch {config.batch_size} per fold; config {ref}"
              + (f", folds {config.folds}" if str(config.folds) != "all" else ""),
      "ways": ways,
      "speedup": (ways[1]["total_s"] / ways[0]["total_s"]) if ways[0]["total_s"] else None,
      "identical_predictions": bench["identical_predictions"],
      "uf1_difference": bench["uf1_difference"],
      "note": "times are whole sweeps: compilation, training, checkpoints and predictions",
  }


def run(options: SuiteOptions, config_ref: Optional[str] = None,
        overrides: Optional[dict] = None, sweep: bool = True) -> dict:
  """Training-step cases of `config_ref` (default by options.quick) and, with `sweep`, the LOSO
  comparison; the suite dict."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  hint = " (the FRL-DGT task is not built yet)"
  reason = task_step.missing_reason(ref)
  if reason:
    return harness.missing_suite(reason + hint)
  try:
    config = task_step.load_config(ref, overrides)
    task = loop.load_task(config)
    setup = task_step.prepare_step(config, task)
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] in task_step.PROJECT_PACKAGES:
      return harness.missing_suite(f"{ref}: module {e.name} does not exist yet{hint}")
    raise
  cases = []
  for case, start_step, item in _stages(config):
    try:
      cases.append(task_step.bench_task_step(
          config, suite="frldgt", case=case, item=item, peaks=options.peaks, runs=options.runs,
          warmup=options.warmup, setup=setup, start_step=start_step, log=options.log))
    except Exception as e:  # pylint: disable=broad-except  # reported, never replaced
      options.log(f"  [frldgt] {case}: {type(e).__name__}: {e}")
      cases.append(harness.error_case("frldgt", case, e))
  suite = {"status": "ok", "cases": cases, "notes": [f"config {ref}"]}
  if sweep:
    try:
      suite["comparisons"] = [loso_both_ways(ref, options, overrides)]
    except Exception as e:  # pylint: disable=broad-except
      options.log(f"  [frldgt] LOSO sweep: {type(e).__name__}: {e}")
      suite["notes"].append(f"LOSO sweep both ways: error — "
                            f"{harness.error_case('frldgt', 'LOSO', e)['error']}")
  return suite
