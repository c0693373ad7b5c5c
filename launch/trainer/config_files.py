"""Config files: the driver's fields every config starts from, and loading a config by path.

A config file in `configs/` is a Python file with `get_config(arg)` returning a locked
ml_collections.ConfigDict; `--config configs/x.py:variant` passes 'variant' as `arg`. A config of
another domain or dataset may start from a sibling file's config and override what differs
(`from_file`), so each experiment's hyperparameters are written once, in a config file.
"""
from __future__ import annotations

import importlib.util
import inspect
import pathlib

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Driver fields every training config starts from (the task adds its own)."""
  c = ml_collections.ConfigDict()
  c.task = ""                 # module defining make_task(config), e.g. 'launch.tasks.sat3d'
  c.seed = 0
  c.total_steps = 100
  c.log_every = 10            # also how often finiteness is checked (no per-step host sync)
  c.checkpoint_every = 50
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.summary_every = 0         # image summaries; 0 = only at the end (if the task has any)
  c.eval_every = 0            # 0 = only at the end (if the task has an eval step); N > 0:
                              # every N steps, at the end and before a fresh run's first step
  c.num_devices = 0           # 0 = every device of every process
  c.model_sharding = "models"  # tasks with num_models > 0: 'models' or 'batch' (see task.py)
  c.tensorboard = True
  return c


def from_file(path: str, arg: str = "") -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path`, unlocked for overrides.

  A relative `path` is taken from the folder of the file that calls this (a config file naming
  its sibling), so it works from any current directory.
  """
  file = pathlib.Path(path)
  if not file.is_absolute():
    caller = pathlib.Path(inspect.stack()[1].filename).resolve().parent
    file = caller / file
  spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.unlock()
  return config
