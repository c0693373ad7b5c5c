"""Leave-one-subject-out sweep of FRL-DGT: train every fold, predict its held-out subject, score.

  python launch/sweep.py --config configs/frldgt_composite.py[:variant] [--workdir W]
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic            # any machine
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic,shuffled   # control
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic,zero       # control
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic --compare_modes

Without --workdir the sweep runs in workdirs/<config name>[_<variant>]. Every fold trains with
the same fixed budget; nothing is selected on the held-out subject. Outputs in W: predictions.csv,
results.json, megc_log.txt, confusion.png, results.md, per_subject.png, learning_curves.png
(frldgt_jax/results.py). Running the same
command again resumes: finished folds are not retrained (launch/tasks/loso.py).
--config.sweep_mode=stacked|per_fold chooses all folds in one program or fold by fold (default
'auto': stacked on GPU/TPU, fold by fold on CPU);
--config.folds=0,3 (indices or subject keys such as samm/6) runs a subset; --compare_modes runs
both modes and writes W/benchmark.json (wall times, agreement).
"""
import sys

from launch.common import cli  # first: quiet TensorFlow start-up
from absl import flags  # noqa: E402  (after cli)

from launch.trainer import cli as trainer_cli  # noqa: E402

_COMPARE = flags.DEFINE_bool("compare_modes", False,
                             "Run the sweep stacked and fold by fold (W/stacked_mode, "
                             "W/per_fold_mode) and write W/benchmark.json.")
_XLA_CACHE = flags.DEFINE_string("xla_cache_dir", "workdirs/xla_cache",
                                 "Persistent cache of compiled programs, shared by sweeps: "
                                 "folds run one by one and restarted sweeps reuse compiled "
                                 "programs. '' disables it.")


def main(argv):
  trainer_cli.start(argv)
  from launch.tasks import loso  # pylint: disable=g-import-not-at-top
  config = trainer_cli.FLAGS.config
  if _XLA_CACHE.value:
    loso.use_compilation_cache(_XLA_CACHE.value)
  workdir = trainer_cli.resolve_workdir()
  try:
    if _COMPARE.value:
      loso.compare_modes(config, workdir)
      print(f"benchmark: {workdir / 'benchmark.json'}")
      return
    loso.run_sweep(config, workdir)
  except loso.SweepInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  for name in ("predictions.csv", "results.json", "megc_log.txt", "confusion.png", "results.md",
               "per_subject.png", "learning_curves.png"):
    print(f"{name}: {workdir / name}")
  if config.final_model:
    print(f"final model (every subject; not an evaluation): {workdir / loso.FINAL_DIR}")


if __name__ == "__main__":
  trainer_cli.define_flags("FRL-DGT config file, e.g. configs/frldgt_composite.py:synthetic.")
  cli.run(main, tensorflow="required")
