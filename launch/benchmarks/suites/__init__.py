"""One module per benchmarked part, each with `start(options: SuiteOptions, ...) -> finish` and
`run(options, ...) -> suite dict` (= start(...)()).

`start` builds the models and inputs, traces and lowers every case and hands the compilations to
`options.compile_pool`; `finish()` runs the cases (after every compilation has finished) and
returns the suite dict. The runner starts every suite before finishing any, so all the run's
compilations share the pool.

A suite dict is {'status': 'ok' | 'missing' | 'error', 'reason'?, 'cases': [...],
'comparisons'?: [...], 'notes'?: [...], 'setup'?: {...}} (see launch/benchmarks/report.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


Finish = Callable[[], dict]


@dataclasses.dataclass(frozen=True)
class SuiteOptions:
  """What every suite is told.

  quick: reduced widths (the fixtures' architectures, the tiny configs) instead of the full ones.
  peaks: {'measured': {dtype: TFLOP/s}, 'vendor': {dtype: TFLOP/s}} for the utilisation columns.
  runs, warmup: timed and untimed steps per case after compilation.
  log: progress printer.
  compile_pool: where cases compile (harness.CompilePool); None compiles each case inline.
  """
  quick: bool
  peaks: Optional[dict] = None
  runs: int = 5
  warmup: int = 1
  log: Callable[[str], None] = print
  compile_pool: Optional[Any] = None
