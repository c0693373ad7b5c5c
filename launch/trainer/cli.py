"""Flags shared by the entry points: the config file, the workdir and the multi-process start.

Configs are Python files with `get_config(arg)`; `--config configs/x.py:variant` passes
'variant' as `arg`, `--config.field=value` overrides a field, and configs are locked, so a
misspelt field is an error rather than a silently ignored setting.

Multi-process runs (several hosts, or several processes on one host):
  --coordinator_address=auto            TPU pods, SLURM and other clusters jax detects
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I   anything else
Every process runs the same command; each reads only its own slice of each batch.
"""
from __future__ import annotations

import pathlib

from absl import flags
from ml_collections import config_flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

FLAGS = flags.FLAGS


def define_flags(config_help: str = "Training config file, e.g. configs/sat3d_ffhq.py:tiny."):
  """Defines --config, --workdir and the jax.distributed flags."""
  config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Run directory (checkpoints, metrics, images). Default: "
                      "workdirs/<config name>[_<variant>] under the current directory.")
  flags.DEFINE_string("coordinator_address", None,
                      "jax.distributed coordinator: 'auto' on TPU pods / SLURM, or HOST:PORT.")
  flags.DEFINE_integer("num_processes", None, "Number of processes (with HOST:PORT).")
  flags.DEFINE_integer("process_id", None, "This process's id (with HOST:PORT).")
  flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> pathlib.Path:
  """workdirs/<config stem>[_<variant>] for `--config path/name.py[:variant]`."""
  path, _, variant = config_arg.partition(":")
  name = pathlib.Path(path).stem
  if variant:
    name += "_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in variant)
  return pathlib.Path("workdirs") / name


def resolve_workdir() -> pathlib.Path:
  """--workdir, or the default named after the config (printed so the user knows)."""
  if FLAGS.workdir:
    return pathlib.Path(FLAGS.workdir)
  # The flag's "filename" is the argument as typed, variant included.
  workdir = default_workdir(config_flags.get_config_filename(FLAGS["config"]))
  print(f"no --workdir given: using {workdir}", flush=True)
  return workdir


def check_config(argv) -> None:
  """Refuses stray arguments and a --config file that did not load (app.UsageError)."""
  from absl import app  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:  # config_flags defers a file it could not load until first use
    FLAGS.config.get("task")
  except OSError as e:
    reason = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
    raise app.UsageError(f"cannot load the config file "
                         f"{config_flags.get_config_filename(FLAGS['config'])}: {reason}") from e


def start(argv) -> None:
  """What every training entry point does first: refuse stray arguments, keep absl at WARNING
  unless --verbosity is given (Orbax logs every file it writes at INFO), start jax.distributed."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  check_config(argv)
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  maybe_start_distributed()


def maybe_start_distributed() -> None:
  """Starts jax.distributed from the flags (a no-op for a single process)."""
  from launch.trainer import mesh  # pylint: disable=g-import-not-at-top
  mesh.maybe_initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id)
