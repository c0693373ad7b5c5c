"""SAT3D training step throughput (images/s), through the generic driver's task contract.

Quick: configs/sat3d_ffhq.py:tiny; full: configs/sat3d_ffhq.py:bench. The step is what
launch/train.py runs (see launch/benchmarks/task_step.py); until the config and the SAT3D task
exist the suite reports itself missing.
"""
from __future__ import annotations

from typing import Optional

from launch.benchmarks import task_step
from launch.benchmarks.suites import Finish, SuiteOptions

QUICK_CONFIG = "configs/sat3d_ffhq.py:tiny"
FULL_CONFIG = "configs/sat3d_ffhq.py:bench"


def start(options: SuiteOptions, config_ref: Optional[str] = None,
          overrides: Optional[dict] = None) -> Finish:
  """Builds the SAT3D training step of `config_ref` (default by options.quick) and hands its
  compilation to the pool; finish() measures it (suites/__init__.py)."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  return task_step.start_task_suite("sat3d", ref, item="images", options=options,
                                    overrides=overrides,
                                    missing_hint="the SAT3D task is not built yet")


def run(options: SuiteOptions, config_ref: Optional[str] = None,
        overrides: Optional[dict] = None) -> dict:
  """Measures the SAT3D training step of `config_ref` (default by options.quick)."""
  return start(options, config_ref, overrides)()
