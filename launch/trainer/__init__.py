"""The generic training driver shared by both papers.

`train_and_evaluate(config, workdir)` trains whatever task `config.task` names; `Task` and
`InputSpec` (in `task.py`) are the contract a paper implements.
"""
from launch.trainer.loop import (NonFiniteLossError, RunResult, base_config, load_task,
                                 train_and_evaluate)
from launch.trainer.task import InputSpec, Task

__all__ = ["InputSpec", "NonFiniteLossError", "RunResult", "Task", "base_config", "load_task",
           "train_and_evaluate"]
