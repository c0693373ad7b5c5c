"""The bindings of each paper to the generic driver: its Task, input wiring and orchestration.

`config.task` names one of these modules (`launch.tasks.sat3d`, `launch.tasks.frldgt`,
`launch.tasks.encoder` for SAT3D's inversion encoder); each
defines `make_task(config) -> launch.trainer.Task`. `loso.py` runs FRL-DGT's
leave-one-subject-out sweep on top of the driver.
"""

# Task modules of workdirs written before the bindings moved out of the libraries; their
# config.json still names them.
RENAMED_TASKS = {"sat3d_jax.task": "launch.tasks.sat3d", "frldgt_jax.task": "launch.tasks.frldgt"}


def current_task_name(name: str) -> str:
  """The task module `name` is called now (old names from earlier workdirs map to new ones)."""
  return RENAMED_TASKS.get(name, name)
