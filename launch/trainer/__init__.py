"""The generic training driver shared by both papers.

`train_and_evaluate(config, workdir)` trains whatever task `config.task` names; `Task` and
`InputSpec` (in `task.py`) are the contract a paper implements; `plan_run` (mesh, programs,
state placement), `make_programs` and `all_finite` are the driver's compiled-step surface, which
the benchmarks time exactly as the loop runs it.
"""
from launch.trainer.config_files import base_config, from_file
from launch.trainer.errors import CheckpointError, ConfigError, NonFiniteLossError
from launch.trainer.loop import RunResult, load_task, train_and_evaluate
from launch.trainer.programs import Programs, RunPlan, all_finite, make_programs, plan_run
from launch.trainer.task import InputSpec, Task

__all__ = ["CheckpointError", "ConfigError", "InputSpec", "NonFiniteLossError", "Programs",
           "RunPlan", "RunResult", "Task", "all_finite", "base_config", "from_file", "load_task",
           "make_programs", "plan_run", "train_and_evaluate"]
