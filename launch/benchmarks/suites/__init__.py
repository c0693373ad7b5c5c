"""One module per benchmarked part, each with `run(options: SuiteOptions, ...) -> suite dict`.

A suite dict is {'status': 'ok' | 'missing' | 'error', 'reason'?, 'cases': [...],
'comparisons'?: [...], 'notes'?: [...], 'setup'?: {...}} (see launch/benchmarks/report.py).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional


@dataclasses.dataclass(frozen=True)
class SuiteOptions:
  """What every suite is told.

  quick: reduced widths (the fixtures' architectures, the tiny configs) instead of the full ones.
  peaks: {'measured': {dtype: TFLOP/s}, 'vendor': {dtype: TFLOP/s}} for the utilisation columns.
  runs, warmup: timed and untimed steps per case after compilation.
  log: progress printer.
  """
  quick: bool
  peaks: Optional[dict] = None
  runs: int = 5
  warmup: int = 1
  log: Callable[[str], None] = print
