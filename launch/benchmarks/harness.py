"""Timing of one jitted computation: compile apart from steady state, then N blocking runs.

  case = measure("eg3d", "synthesis", fn, [params, ws, c], items_per_call=8, item="images",
                 batch=8, dtype="float32", peaks=peaks)

`measure` lowers and compiles `fn` ahead of time (`jax.jit(fn).lower(*args).compile()`, timed
apart), counts its matmul/convolution FLOPs from the jaxpr and reads XLA's cost and memory
analyses, runs `warmup` untimed calls, then `runs` timed calls, each ended by
`jax.block_until_ready` on the outputs so that asynchronous dispatch cannot hide device time.
It returns a plain dict (the JSON a case is written as; see `CASE_KEYS`).

Memory, three figures, each labelled with what it is:
  * device peak: `device.memory_stats()['peak_bytes_in_use']` (GPU/TPU) when this case raised
    it. jax cannot reset the high-water mark, so a case that stays below an earlier case's peak
    gets None (and a note) rather than someone else's number.
  * XLA executable: arguments + outputs + temporaries - aliased, from
    `compiled.memory_analysis()` — the compiler's own per-program figure, on every backend.
  * host peak RSS delta (what CPU backends have, where `memory_stats()` is None): the rise of
    this process's peak resident set over the warm-up and timed runs (Linux VmHWM, reset through
    /proc/self/clear_refs after compiling), i.e. the temporaries and outputs of the steps.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from launch.benchmarks import flops as flops_lib

# Keys every case dict has (status 'ok'); 'error' cases have suite, case, status, error.
CASE_KEYS = ("suite", "case", "status", "batch", "dtype", "item", "items_per_step", "devices",
             "compile_s", "lower_s", "warmup", "runs", "step_s", "items_per_s", "flops",
             "achieved_tflops", "fraction_of_measured_peak", "fraction_of_vendor_peak", "memory",
             "notes")


def block(tree: Any) -> Any:
  """Waits until every array in `tree` is computed (and returns the tree)."""
  return jax.block_until_ready(tree)


def summarise_times(times: Sequence[float]) -> dict:
  """Median, quartiles, IQR, min, max and all values (seconds) of the timed runs."""
  t = np.asarray(times, np.float64)
  q25, median, q75 = np.percentile(t, [25, 50, 75])
  return {"median": float(median), "q25": float(q25), "q75": float(q75),
          "iqr": float(q75 - q25), "min": float(t.min()), "max": float(t.max()),
          "all": [float(x) for x in t]}


# --- Memory ---------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> Optional[int]:
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def _reset_peak_rss() -> bool:
  """Resets Linux's VmHWM (peak RSS) of this process to the current RSS; False if impossible."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _device_peak(device) -> Optional[int]:
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # backends without it raise or return None
    return None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return int(stats["peak_bytes_in_use"])


class MemoryProbe:
  """Collects the memory figures of one case (see the module docstring)."""

  def __init__(self, device):
    self.device = device
    self.rss_start_kib = None
    self.host_reset = False
    self.device_peak_before = None

  def start(self) -> None:
    self.device_peak_before = _device_peak(self.device)
    self.host_reset = _reset_peak_rss()
    self.rss_start_kib = _proc_status_kib("VmRSS")

  def finish(self, compiled) -> dict:
    out: dict = {"platform": self.device.platform}
    after = _device_peak(self.device)
    if after is None:
      out["device_peak_bytes"] = None
      out["device_peak_note"] = (f"{self.device.platform} device reports no memory_stats(); "
                                 "see host_peak_rss_delta_bytes and xla_executable_bytes")
    elif self.device_peak_before is None or after > self.device_peak_before:
      out["device_peak_bytes"] = after
      out["device_peak_note"] = "device memory high-water mark, set during this case"
    else:
      # jax cannot reset the high-water mark: this case stayed under an earlier case's peak.
      out["device_peak_bytes"] = None
      out["device_peak_note"] = (f"below the earlier high-water mark of {after} bytes "
                                 "(not resettable); see xla_executable_bytes")
    out["xla_executable_bytes"] = executable_bytes(compiled)
    hwm = _proc_status_kib("VmHWM")
    if self.host_reset and hwm is not None and self.rss_start_kib is not None:
      out["host_peak_rss_delta_bytes"] = max(hwm - self.rss_start_kib, 0) * 1024
      out["host_peak_rss_note"] = ("rise of this process's peak resident memory (host RAM, Linux "
                                   "VmHWM) over the warm-up and timed runs: temporaries and "
                                   "outputs; the arguments were already resident")
    else:
      out["host_peak_rss_delta_bytes"] = None
      out["host_peak_rss_note"] = "peak RSS cannot be reset here (/proc/self/clear_refs)"
    return out


def executable_bytes(compiled) -> Optional[dict]:
  """XLA's memory analysis of a compiled program: argument/output/temp/alias bytes and total."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  fields = {k: int(getattr(m, k + "_size_in_bytes", 0) or 0)
            for k in ("argument", "output", "temp", "alias", "generated_code")}
  fields["total"] = fields["argument"] + fields["output"] + fields["temp"] - fields["alias"]
  return fields


# --- Profiling ------------------------------------------------------------------------------
@contextlib.contextmanager
def maybe_trace(directory: Optional[str]):
  """jax.profiler.trace(directory) when a directory is given, else nothing.

  Python function tracing is off: it records every Python call (imports, tracing, input
  pipelines) and makes traces of a small suite exceed 100 MB; device and XLA activity and the
  per-case annotations of `measure` are kept.
  """
  if not directory:
    yield
    return
  os.makedirs(directory, exist_ok=True)
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0
  with jax.profiler.trace(directory, profiler_options=options):
    yield


# --- One case -------------------------------------------------------------------------------
def _times(value: Optional[float], n: int) -> Optional[float]:
  return None if value is None else value * n


def program_devices(args: Sequence[Any]) -> int:
  """How many devices the arguments (and so the jitted program) are spread over."""
  devices = set()
  for leaf in jax.tree.leaves(args):
    sharding = getattr(leaf, "sharding", None)
    if sharding is not None:
      devices |= set(sharding.device_set)
  return max(len(devices), 1)


def utilisation(flops_per_step: Optional[float], seconds: float,
                peak_tflops: Optional[float]) -> Optional[float]:
  """Achieved / peak (both TFLOP/s), or None when either is unknown."""
  if not flops_per_step or not peak_tflops or seconds <= 0:
    return None
  return flops_per_step / seconds / 1e12 / peak_tflops


def measure(suite: str, case: str, fn: Callable, args: Sequence[Any], *,
            items_per_call: int, item: str, batch: Optional[int] = None,
            dtype: Optional[str] = None, warmup: int = 1, runs: int = 5,
            next_args: Optional[Callable[[Sequence[Any], Any], Sequence[Any]]] = None,
            jit_kwargs: Optional[dict] = None, peaks: Optional[dict] = None,
            peak_dtype: Optional[str] = None, notes: Sequence[str] = (),
            log: Callable[[str], None] = print) -> dict:
  """Times fn(*args) and returns the case dict (keys `CASE_KEYS`).

  Args:
    suite, case: names written into the result.
    fn: the function; jitted here with `jit_kwargs` (e.g. donate_argnums, out_shardings) unless
      it is already a jitted function (then `jit_kwargs` must be empty).
    args: positional arguments (arrays / pytrees).
    items_per_call: examples one call processes (images, clips); throughput = this / median.
    item: what an item is ('images', 'clips').
    batch, dtype: written into the result for the table.
    warmup, runs: untimed and timed calls after compilation.
    next_args: (args, outputs) -> args of the next call, for steps that consume their own
      output (a training state, donated). Default: the same args every call.
    peaks: {'measured': {dtype: TFLOP/s}, 'vendor': {dtype: TFLOP/s}} (see peak.py).
    peak_dtype: which peak entry this case compares with (default: `dtype`).
    notes: free-text remarks written with the case.
    log: progress printer.
  """
  if runs < 1:
    raise ValueError(f"runs must be >= 1, got {runs}")
  args = list(args)
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn, **(jit_kwargs or {}))
  if jit_kwargs and jitted is fn:
    raise ValueError("jit_kwargs given for an already jitted function")
  label = ", ".join([case] + ([f"batch {batch}"] if batch is not None else [])
                    + ([dtype] if dtype else []))
  log(f"  [{suite}] {label}: compiling ...")
  t0 = time.perf_counter()
  with jax.profiler.TraceAnnotation(f"{suite}: {label}: compile"):
    lowered = jitted.lower(*args)  # traces, so the timing includes tracing
    t1 = time.perf_counter()
    compiled = lowered.compile()
  t2 = time.perf_counter()
  xla = flops_lib.xla_flops(compiled)
  count = flops_lib.count_flops(jitted, *args)
  devices = program_devices(args)

  probe = MemoryProbe(jax.devices()[0])
  probe.start()
  out = None
  for _ in range(warmup):
    out = block(compiled(*args))
    if next_args is not None:
      args = list(next_args(args, out))
  times = []
  for i in range(runs):
    with jax.profiler.StepTraceAnnotation(f"{suite}: {label}", step_num=i):
      start = time.perf_counter()
      out = block(compiled(*args))
      times.append(time.perf_counter() - start)
    if next_args is not None:
      args = list(next_args(args, out))
  del out
  memory = probe.finish(compiled)
  step = summarise_times(times)

  flops_per_step = count.total or None
  achieved = flops_per_step / step["median"] / 1e12 if flops_per_step else None
  peak_key = peak_dtype or dtype
  peaks = peaks or {}
  measured_peak = (peaks.get("measured") or {}).get(peak_key)
  vendor_peak = (peaks.get("vendor") or {}).get(peak_key)
  # Peaks are per device; a program spread over n devices is measured against n of them.
  result = {
      "suite": suite, "case": case, "status": "ok", "batch": batch, "dtype": dtype,
      "item": item, "items_per_step": int(items_per_call), "devices": devices,
      "compile_s": t2 - t0, "lower_s": t1 - t0, "warmup": warmup, "runs": runs,
      "step_s": step, "items_per_s": items_per_call / step["median"],
      "flops": flops_lib.describe(count, xla, devices),
      "achieved_tflops": achieved,
      "fraction_of_measured_peak": utilisation(flops_per_step, step["median"],
                                               _times(measured_peak, devices)),
      "fraction_of_vendor_peak": utilisation(flops_per_step, step["median"],
                                             _times(vendor_peak, devices)),
      "memory": memory, "notes": list(notes),
  }
  log(f"  [{suite}] {label}: compile {result['compile_s']:.1f} s, "
      f"median {step['median'] * 1e3:.1f} ms/step (IQR {step['iqr'] * 1e3:.1f} ms), "
      f"{result['items_per_s']:.3g} {item}/s"
      + (f", {achieved:.3g} TFLOP/s" if achieved else ""))
  return result


def error_case(suite: str, case: str, error: BaseException, **extra) -> dict:
  """A case that failed (e.g. out of memory): reported with its error, never with numbers."""
  message = f"{type(error).__name__}: {error}"
  if len(message) > 600:
    message = message[:600] + " ..."
  return {"suite": suite, "case": case, "status": "error", "error": message, **extra}


def missing_suite(reason: str) -> dict:
  """A suite whose model or config is not built yet."""
  return {"status": "missing", "reason": reason, "cases": []}

