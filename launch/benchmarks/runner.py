"""Runs the selected suites and assembles the report (what launch/bench.py calls)."""
from __future__ import annotations

import contextlib
import datetime
import os
import pathlib
import time
import traceback
from typing import Callable, Optional, Sequence

import jax

from launch.benchmarks import harness, machine, peak, report
from launch.benchmarks.suites import SuiteOptions

# 'sat3d_memory': XLA's memory analysis of the FFHQ-512 SAT3D step under every remat policy
# (compiled, never run).
SUITE_NAMES = ("eg3d", "sat3d", "frldgt", "studio", "sat3d_memory", "encoder", "spotting")
# Suites are started longest compilation first (SAT3D's one large step, FRL-DGT's inits and
# steps, then EG3D's eight medium programs), so that no long compilation is left alone at the
# end while the other cores idle.
_START_ORDER = ("sat3d", "encoder", "frldgt", "eg3d", "studio", "sat3d_memory",
                "spotting")


def _suite_start(name: str, eg3d_preset, eg3d_batches, sat3d_config, frldgt_config,
                 sat3d_overrides=None, sat3d_views=None, sat3d_breakdown=True,
                 eg3d_dtypes=None, eg3d_modconvs=None, sat3d_dtypes=None):
  """The suite's start(options) -> finish (launch/benchmarks/suites/__init__.py)."""
  # Imported here so that a suite's import error is reported as that suite's, not the run's.
  if name == "eg3d":
    from launch.benchmarks.suites import eg3d  # pylint: disable=g-import-not-at-top
    return lambda o: eg3d.start(o, preset=eg3d_preset, batches=eg3d_batches,
                                dtypes=eg3d_dtypes or eg3d.DTYPES,
                                modconvs=eg3d_modconvs or eg3d.MODCONVS)
  if name == "sat3d":
    from launch.benchmarks.suites import sat3d  # pylint: disable=g-import-not-at-top
    return lambda o: sat3d.start(o, config_ref=sat3d_config, overrides=sat3d_overrides,
                                 views=sat3d_views or sat3d.VIEWS, breakdown=sat3d_breakdown,
                                 dtypes=sat3d_dtypes or (None,))
  if name == "sat3d_memory":
    from launch.benchmarks.suites import sat3d  # pylint: disable=g-import-not-at-top
    return sat3d.start_memory
  if name == "frldgt":
    from launch.benchmarks.suites import frldgt  # pylint: disable=g-import-not-at-top
    return lambda o: frldgt.start(o, config_ref=frldgt_config)
  if name == "studio":
    from launch.benchmarks.suites import studio  # pylint: disable=g-import-not-at-top
    return studio.start
  if name == "encoder":
    from launch.benchmarks.suites import encoder  # pylint: disable=g-import-not-at-top
    return encoder.start
  if name == "spotting":
    from launch.benchmarks.suites import spotting  # pylint: disable=g-import-not-at-top
    return spotting.start
  raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITE_NAMES)}")


def _cpu_s() -> float:
  t = os.times()
  return t.user + t.system


def default_compile_workers(quick: bool) -> int:
  """Compilations at once: two on a CPU of two or more cores in quick mode (where compiling is
  most of the run), one otherwise (compile times then measured without a neighbour)."""
  return min(2, machine.usable_cores()) if quick else 1


class _Timed:
  """Wall and process CPU seconds of a suite's phases ('start', 'finish'), summed and apart."""

  def __init__(self):
    self.wall_s = self.cpu_s = 0.0
    self.phases: dict = {}

  @contextlib.contextmanager
  def phase(self, name: str):
    t, c = time.perf_counter(), _cpu_s()
    try:
      yield
    finally:
      wall, cpu = time.perf_counter() - t, _cpu_s() - c
      self.wall_s += wall
      self.cpu_s += cpu
      self.phases[name] = {"wall_s": wall, "process_cpu_s": cpu}


def run_all(suites: Sequence[str] = SUITE_NAMES, *, quick: bool = False,
            runs: Optional[int] = None, warmup: int = 1, profile_dir: Optional[str] = None,
            notes: Sequence[str] = (), command: str = "", eg3d_preset: Optional[str] = None,
            eg3d_batches: Optional[Sequence[int]] = None, sat3d_config: Optional[str] = None,
            frldgt_config: Optional[str] = None, compile_workers: Optional[int] = None,
            sat3d_overrides: Optional[dict] = None,
            sat3d_views: Optional[Sequence[int]] = None, sat3d_breakdown: bool = True,
            sat3d_dtypes: Optional[Sequence[str]] = None,
            eg3d_dtypes: Optional[Sequence[str]] = None,
            eg3d_modconvs: Optional[Sequence[str]] = None, in_order: bool = False,
            on_progress: Optional[Callable[[dict], None]] = None,
            log: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict:
  """Measures the matmul peak, then the suites; returns the report dict (report.REPORT_KEYS).

  Every suite is started (models built, cases traced and lowered, compilations handed to one
  pool of `compile_workers` threads) before any is finished (cases timed one at a time once
  nothing compiles, sweeps run), so the compilations of all suites share the cores. With
  `in_order` (a run with a time limit) each suite is started and finished before the next, in
  the order of `suites` (priority first). With `profile_dir` each suite is started and finished
  inside its own trace. The run uses a fresh persistent compilation cache (a temporary
  directory): no program compiled by an earlier run can stand in for a compilation, and the
  FRL-DGT sweeps read the programs compiled here.

  `on_progress(report)` is called with the report so far after each case and each suite (suites
  not finished yet have status 'running' with the cases measured so far, or 'pending'), so the
  caller can write it out: a run stopped at a time limit keeps what it measured.
  """
  started, cpu_started = time.perf_counter(), _cpu_s()
  info = machine.describe()
  log(f"benchmarking on {info['name']} (backend {info['backend']}, load average "
      f"{info['load_average_1m']})")
  log("measuring the matmul peak ...")
  measured = peak.measured_matmul_peak(peak.default_sizes(info["backend"], quick), log=log)
  vendor = peak.vendor_peak(info["device_kind"], jax.devices()[0].platform)
  workers = compile_workers or default_compile_workers(quick)
  pool = harness.CompilePool(workers)
  restore_cache = harness.use_persistent_cache()
  options = SuiteOptions(quick=quick, peaks=peak.peaks_for_cases(measured, vendor),
                         runs=runs or (3 if quick else 5), warmup=warmup, log=log,
                         compile_pool=pool)
  results, finishers, timers = {}, {}, {name: _Timed() for name in suites}
  live: dict = {}  # suite -> cases measured so far, while it runs

  def assemble() -> dict:
    return _report(suites, results, live, info, measured, vendor, workers, notes, command,
                   quick, started, cpu_started)

  def progress(case: Optional[dict] = None) -> None:
    if case is not None and case.get("suite") in suites and case["suite"] not in results:
      live.setdefault(case["suite"], []).append(case)
    if on_progress is not None:
      on_progress(assemble())

  def failed(name: str, e: Exception) -> None:
    traceback.print_exc()
    results[name] = {"status": "error", "reason": f"{type(e).__name__}: {e}", "cases": []}

  def start(name: str) -> None:
    log(f"[{time.perf_counter() - started:.0f} s] suite {name}{' (quick)' if quick else ''}: "
        "building, tracing, compiling ...")
    with timers[name].phase("start"):
      try:
        finishers[name] = _suite_start(name, eg3d_preset, eg3d_batches, sat3d_config,
                                       frldgt_config, sat3d_overrides, sat3d_views,
                                       sat3d_breakdown, eg3d_dtypes, eg3d_modconvs,
                                       sat3d_dtypes)(options)
      except Exception as e:  # pylint: disable=broad-except  # one broken suite spoils no other
        failed(name, e)

  def finish(name: str) -> None:
    if name in finishers:
      log(f"[{time.perf_counter() - started:.0f} s] suite {name}: measuring ...")
      with timers[name].phase("finish"):
        try:
          results[name] = finishers.pop(name)()
        except Exception as e:  # pylint: disable=broad-except
          failed(name, e)
    # Phases overlap other suites' work: compilations run in the pool during every start and
    # until the first timed case of the first finish; the process CPU counts all threads.
    results[name]["wall_s"] = timers[name].wall_s
    results[name]["process_cpu_s"] = timers[name].cpu_s
    results[name]["phases"] = timers[name].phases
    status = results[name]["status"]
    log(f"suite {name}: {status}" + (f" ({results[name].get('reason')})"
                                     if status != "ok" else "")
        + f", {results[name]['wall_s']:.0f} s")
    live.pop(name, None)
    progress()

  try:
    with harness.case_listener(progress):
      if profile_dir or in_order:
        for name in suites:
          trace_dir = str(pathlib.Path(profile_dir) / name) if profile_dir else None
          with harness.maybe_trace(trace_dir):
            start(name)
            finish(name)
          if trace_dir:
            results[name]["profile"] = trace_dir
      else:
        for name in sorted(suites, key=_START_ORDER.index):
          start(name)
        for name in suites:
          finish(name)
  finally:
    pool.close()
    restore_cache()
  return assemble()


def _report(suites, results, live, info, measured, vendor, workers, notes, command, quick,
            started, cpu_started) -> dict:
  """The report dict of a run (so far: suites not finished are 'running' or 'pending')."""
  results = {name: results.get(name) or (
      {"status": "running", "reason": "stopped before this suite finished",
       "cases": list(live[name])}
      if name in live else
      {"status": "pending", "reason": "not reached (the run stopped before it)", "cases": []})
      for name in suites}
  return {
      "summary": step_against_generator(results),
      "schema": report.SCHEMA,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": command,
      "quick": quick,
      "machine": info | {"load_average_1m_end": machine.describe()["load_average_1m"]},
      "notes": list(notes),
      "matmul_peak": {"measured": measured, "vendor": vendor},
      "compile_workers": workers,
      "suites": results,
      "wall_s": time.perf_counter() - started,
      # CPU time of this process (all threads): unlike wall time, barely inflated by other
      # tenants of a shared machine.
      "process_cpu_s": _cpu_s() - cpu_started,
  }


def step_against_generator(results: dict) -> list[str]:
  """The SAT3D step's useful FLOP rate over the best EG3D forward+backward case's of the same
  dtype, both measured in this run (a line; none unless both suites ran)."""
  sat3d, eg3d = results.get("sat3d") or {}, results.get("eg3d") or {}
  step = next((c for c in sat3d.get("cases", [])
               if c.get("case") == (sat3d.get("setup") or {}).get("step_case")), None)
  if not step or step.get("status") != "ok" or not step.get("achieved_tflops"):
    return []
  from launch.benchmarks.suites import eg3d as eg3d_suite  # pylint: disable=g-import-not-at-top
  best = max((c for c in eg3d.get("cases", []) if c.get("status") == "ok"
              and c["case"].startswith(eg3d_suite.FORWARD_BACKWARD)
              and c.get("dtype") == step.get("dtype") and c.get("achieved_tflops")),
             key=lambda c: c["achieved_tflops"], default=None)
  if best is None:
    return []
  generator = sat3d["setup"].get("generator", "")
  preset = (eg3d.get("setup") or {}).get("preset")
  same = generator == f"preset:{preset}"
  return [f"SAT3D step / EG3D forward+backward useful FLOP rate: "
          f"{step['achieved_tflops'] / best['achieved_tflops']:.2f}x ({step['case']}: "
          f"{step['achieved_tflops']:.3g} TFLOP/s; best {best['case']}, batch {best['batch']}: "
          f"{best['achieved_tflops']:.3g} TFLOP/s; generator {generator} vs preset {preset}"
          + ("" if same else ": DIFFERENT architectures, not comparable") + ")"]


def write(rep: dict, out: str | pathlib.Path, readme: Optional[str] = None,
          markers: str = report.README_MARKERS) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes FILE.json and FILE.md (and, when asked, the table between `markers` of the Markdown
  file `readme`, e.g. docs/benchmarks.md)."""
  out = pathlib.Path(out)
  json_path = report.write_json(rep, out)
  table = report.markdown(rep)
  md_path = report.write_markdown(rep, out.with_suffix(".md"))
  if readme and not report.update_readme(readme, table, markers):
    begin, end = report.marker_lines(markers)
    print(f"warning: {readme} has no '{begin}' ... '{end}' markers; it was left unchanged")
  return json_path, md_path
