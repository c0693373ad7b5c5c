"""The inversion encoder's training step (images/s, FLOPs, % of peak, compiled memory).

Quick: configs/encoder_ffhq.py:tiny (the random micro EG3D, no CLIP); full:
configs/encoder_ffhq.py:bench (random full FFHQ-512 EG3D and a random ViT-B/16 CLIP, batch 8).
The step is the driver's own (launch/benchmarks/task_step.py): the frozen generator renders the
batch's samples, the encoder reads them, and its W+ prediction is rendered again for the
reconstruction and CLIP terms, forward and backward (docs/encoder.md).
"""
from __future__ import annotations

from typing import Optional

from launch.benchmarks import task_step
from launch.benchmarks.suites import Finish, SuiteOptions

QUICK_CONFIG = "configs/encoder_ffhq.py:tiny"
FULL_CONFIG = "configs/encoder_ffhq.py:bench"


def start(options: SuiteOptions, config_ref: Optional[str] = None) -> Finish:
  """Builds the step of the quick or full config and hands its compilation to the pool."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  return task_step.start_task_suite("encoder", ref, item="images", options=options)


def run(options: SuiteOptions, config_ref: Optional[str] = None) -> dict:
  """start(...)(): the suite dict."""
  return start(options, config_ref)()
