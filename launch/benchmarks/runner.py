"""Runs the selected suites and assembles the report (what launch/bench.py calls)."""
from __future__ import annotations

import datetime
import os
import pathlib
import time
import traceback
from typing import Callable, Optional, Sequence

import jax

from launch.benchmarks import harness, machine, peak, report
from launch.benchmarks.suites import SuiteOptions

SUITE_NAMES = ("eg3d", "sat3d", "frldgt")


def _suite_fn(name: str, eg3d_preset, eg3d_batches, sat3d_config, frldgt_config):
  # Imported here so that a suite's import error is reported as that suite's, not the run's.
  if name == "eg3d":
    from launch.benchmarks.suites import eg3d  # pylint: disable=g-import-not-at-top
    return lambda o: eg3d.run(o, preset=eg3d_preset, batches=eg3d_batches)
  if name == "sat3d":
    from launch.benchmarks.suites import sat3d  # pylint: disable=g-import-not-at-top
    return lambda o: sat3d.run(o, config_ref=sat3d_config)
  if name == "frldgt":
    from launch.benchmarks.suites import frldgt  # pylint: disable=g-import-not-at-top
    return lambda o: frldgt.run(o, config_ref=frldgt_config)
  raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITE_NAMES)}")


def _cpu_s() -> float:
  t = os.times()
  return t.user + t.system


def run_all(suites: Sequence[str] = SUITE_NAMES, *, quick: bool = False,
            runs: Optional[int] = None, warmup: int = 1, profile_dir: Optional[str] = None,
            notes: Sequence[str] = (), command: str = "", eg3d_preset: Optional[str] = None,
            eg3d_batches: Optional[Sequence[int]] = None, sat3d_config: Optional[str] = None,
            frldgt_config: Optional[str] = None,
            log: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict:
  """Measures the matmul peak, then each suite; returns the report dict (report.REPORT_KEYS)."""
  started, cpu_started = time.perf_counter(), _cpu_s()
  info = machine.describe()
  log(f"benchmarking on {info['name']} (backend {info['backend']}, load average "
      f"{info['load_average_1m']})")
  log("measuring the matmul peak ...")
  measured = peak.measured_matmul_peak(peak.default_sizes(info["backend"], quick), log=log)
  vendor = peak.vendor_peak(info["device_kind"], jax.devices()[0].platform)
  options = SuiteOptions(quick=quick, peaks=peak.peaks_for_cases(measured, vendor),
                         runs=runs or (3 if quick else 5), warmup=warmup, log=log)
  results = {}
  for name in suites:
    log(f"suite {name}{' (quick)' if quick else ''} ...")
    t0, cpu0 = time.perf_counter(), _cpu_s()
    try:
      fn = _suite_fn(name, eg3d_preset, eg3d_batches, sat3d_config, frldgt_config)
      trace_dir = str(pathlib.Path(profile_dir) / name) if profile_dir else None
      with harness.maybe_trace(trace_dir):
        results[name] = fn(options)
      if trace_dir:
        results[name]["profile"] = trace_dir
    except Exception as e:  # pylint: disable=broad-except  # one broken suite spoils no other
      traceback.print_exc()
      results[name] = {"status": "error", "reason": f"{type(e).__name__}: {e}", "cases": []}
    results[name]["wall_s"] = time.perf_counter() - t0
    results[name]["process_cpu_s"] = _cpu_s() - cpu0
    status = results[name]["status"]
    log(f"suite {name}: {status}" + (f" ({results[name].get('reason')})"
                                     if status != "ok" else "")
        + f", {results[name]['wall_s']:.0f} s")
  return {
      "schema": report.SCHEMA,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": command,
      "quick": quick,
      "machine": info | {"load_average_1m_end": machine.describe()["load_average_1m"]},
      "notes": list(notes),
      "matmul_peak": {"measured": measured, "vendor": vendor},
      "suites": results,
      "wall_s": time.perf_counter() - started,
      # CPU time of this process (all threads): unlike wall time, barely inflated by other
      # tenants of a shared machine.
      "process_cpu_s": _cpu_s() - cpu_started,
  }


def write(rep: dict, out: str | pathlib.Path,
          readme: Optional[str] = None) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes FILE.json and FILE.md (and the README section when asked)."""
  out = pathlib.Path(out)
  json_path = report.write_json(rep, out)
  table = report.markdown(rep)
  md_path = report.write_markdown(rep, out.with_suffix(".md"))
  if readme and not report.update_readme(readme, table):
    print(f"warning: {readme} has no '{report.README_BEGIN}' ... '{report.README_END}' "
          "markers; it was left unchanged")
  return json_path, md_path
