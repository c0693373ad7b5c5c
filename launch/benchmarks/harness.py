"""Timing of one jitted computation: compile apart from steady state, then N blocking runs.

  case = measure("eg3d", "synthesis", fn, [params, ws, c], items_per_call=8, item="images",
                 batch=8, dtype="float32", peaks=peaks)

`measure` traces `fn` once (`jax.jit(fn).trace(*args)`), counts its matmul/convolution FLOPs
from that jaxpr, lowers and compiles it ahead of time (timed apart: `lower_s` for tracing and
lowering, `compile_s` for XLA's compilation), reads XLA's cost and memory analyses, runs
`warmup` untimed calls, then `runs` timed calls, each ended by `jax.block_until_ready` on the
outputs so that asynchronous dispatch cannot hide device time. It returns a plain dict (the JSON
a case is written as; see `CASE_KEYS`).

`measure` is `prepare` then `run`. A suite with several cases prepares them all first with a
`CompilePool`, so that their compilations run side by side (two at a time on a 2-core CPU), and
then runs them one after the other; `run` first waits until nothing compiles, so a timed step
never shares the machine with a compilation. Cases compiled in a pool say so in their notes
(their `compile_s` is wall time while other programs compiled too).

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

import concurrent.futures
import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from launch.benchmarks import compile_events
from launch.benchmarks import flops as flops_lib

# Functions told of every case as it is measured or fails (case_listener): the runner writes
# the report's rows as they come, so a run stopped at a time limit keeps what it measured.
_LISTENERS: list[Callable[[dict], None]] = []


@contextlib.contextmanager
def case_listener(fn: Callable[[dict], None]):
  """Calls `fn(case)` with each case dict `run` or `error_case` makes while inside."""
  _LISTENERS.append(fn)
  try:
    yield
  finally:
    _LISTENERS.remove(fn)


def _tell(case: dict) -> dict:
  for fn in list(_LISTENERS):
    fn(case)
  return case


# Keys every case dict has (status 'ok'); 'error' cases have suite, case, status, error.
CASE_KEYS = ("suite", "case", "status", "batch", "dtype", "item", "items_per_step", "devices",
             "compile_s", "compile_workers", "compile_from_cache", "lower_s",
             "warmup", "runs", "step_s", "items_per_s", "flops",
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


# --- Persistent compilation cache ---------------------------------------------------------------
def persistent_cache_dir() -> Optional[str]:
  """The persistent compilation cache directory jax uses now (None: no persistent cache)."""
  return jax.config.jax_compilation_cache_dir or None


def use_persistent_cache(directory: Optional[str] = None) -> Callable[[], None]:
  """Makes jax keep compiled programs in `directory` (default: a new temporary directory), so
  that a program compiled once in this process is read back where another function compiles the
  same computation (e.g. the driver's step after the benchmark compiled it). Returns restore(),
  which brings back the previous setting (and deletes the temporary directory).

  A fresh directory matters: a cache holding programs from earlier runs would turn this run's
  compile times into cache reads.

  Every program is kept, however fast it compiled: jax keeps by default only those that took
  over a second (jax_persistent_cache_min_compile_time_secs), so on a quick machine a small
  program compiled up front was compiled again where it was reused. restore() brings that
  threshold back too.
  """
  # pylint: disable-next=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache
  previous = jax.config.jax_compilation_cache_dir
  previous_min_s = jax.config.jax_persistent_cache_min_compile_time_secs
  temporary = None
  if directory is None:
    temporary = tempfile.TemporaryDirectory(prefix="bench_xla_cache_")
    directory = temporary.name
  os.makedirs(directory, exist_ok=True)
  compilation_cache.set_cache_dir(os.path.abspath(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  compilation_cache.reset_cache()  # takes effect even after earlier compilations

  def restore() -> None:
    jax.config.update("jax_compilation_cache_dir", previous)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous_min_s)
    compilation_cache.reset_cache()
    if temporary is not None:
      temporary.cleanup()
  return restore


@contextlib.contextmanager
def cache_writes_from(seconds: float):
  """Inside the block, the persistent cache keeps (and jax counts as a cache miss) only the
  programs that took at least `seconds` to compile; outside, the setting as before.

  The cache is filled with every program (use_persistent_cache); a block whose misses are
  counted to learn whether it compiled something substantial itself sets jax's default here,
  so that eager helpers (a broadcast, a conversion: milliseconds each) are not counted.
  """
  previous = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
  try:
    yield
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous)


# --- Compiling several cases at once ------------------------------------------------------------
class CompilePool:
  """Compiles lowered programs in `workers` threads (XLA compiles outside the GIL).

  A 2-core CPU compiles two programs in about the time of one, which is what makes the quick
  benchmark fit its budget. `drain()` waits until nothing is compiling, so that no compilation
  runs beside a timed step (see `run`). workers=1 still compiles in the background (while the
  next case is traced); use no pool at all to compile inline.
  """

  def __init__(self, workers: int):
    if workers < 1:
      raise ValueError(f"workers must be >= 1, got {workers}")
    self.workers = int(workers)
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=self.workers, thread_name_prefix="bench-compile")
    self._lock = threading.Lock()
    self._pending: list[concurrent.futures.Future] = []

  def submit(self, lowered) -> concurrent.futures.Future:
    """Compiles `lowered` in a pool thread; the future gives what `_compile` returns."""
    future = self._executor.submit(_compile, lowered)
    with self._lock:
      self._pending = [f for f in self._pending if not f.done()] + [future]
    return future

  def drain(self) -> None:
    """Waits until every submitted compilation has finished (errors stay in their futures)."""
    with self._lock:
      pending = list(self._pending)
    concurrent.futures.wait(pending)

  def close(self) -> None:
    self._executor.shutdown(wait=True)


def _compile(lowered):
  """(executable, wall seconds, whether it came from the persistent cache)."""
  with compile_events.record(this_thread=True) as events:
    wall = time.perf_counter()
    compiled = lowered.compile()
    wall = time.perf_counter() - wall
  return compiled, wall, events.cache_hits > 0


class Compilation:
  """One XLA compilation of a lowered program: inline (pool None) or in `pool`."""

  def __init__(self, lowered, pool: Optional[CompilePool] = None):
    self.workers = pool.workers if pool is not None else 0
    self._future = pool.submit(lowered) if pool is not None else None
    self._result = _compile(lowered) if pool is None else None

  def result(self) -> tuple:
    """(executable, wall s, from the persistent cache); waits, and raises what XLA raised."""
    if self._result is None:
      self._result = self._future.result()
      self._future = None
    return self._result

  @property
  def executable(self):
    return self.result()[0]

  @property
  def seconds(self) -> float:
    """Wall time of the compilation (or of the cache read, see `from_cache`)."""
    return self.result()[1]

  @property
  def from_cache(self) -> bool:
    return self.result()[2]

  def release(self) -> None:
    """Drops the executable (keeps the times), e.g. once it is in the persistent cache."""
    self.result()
    self._result = (None, *self._result[1:])


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


@dataclasses.dataclass
class Prepared:
  """A case traced, lowered and compiled (or compiling in a pool), not yet run (see `prepare`)."""
  suite: str
  case: str
  label: str
  args: list
  items_per_call: int
  item: str
  batch: Optional[int]
  dtype: Optional[str]
  notes: list
  count: flops_lib.FlopCount
  lower_s: float
  devices: int
  compilation: Compilation

  def compiled(self):
    """The executable (waits for its compilation; raises what the compilation raised)."""
    return self.compilation.executable

  @property
  def compile_s(self) -> float:
    return self.compilation.seconds

  @property
  def compile_workers(self) -> int:
    return self.compilation.workers


def prepare(suite: str, case: str, fn: Callable, args: Sequence[Any], *,
            items_per_call: int, item: str, batch: Optional[int] = None,
            dtype: Optional[str] = None, jit_kwargs: Optional[dict] = None,
            notes: Sequence[str] = (), pool: Optional[CompilePool] = None,
            log: Callable[[str], None] = print) -> Prepared:
  """Traces fn(*args) once (the FLOPs are counted on that jaxpr), lowers it and compiles it:
  inline, or in `pool` (then the case's compile time is measured in the pool's thread, and
  other compilations may run beside it). See `measure` for the arguments."""
  args = list(args)
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn, **(jit_kwargs or {}))
  if jit_kwargs and jitted is fn:
    raise ValueError("jit_kwargs given for an already jitted function")
  label = ", ".join([case] + ([f"batch {batch}"] if batch is not None else [])
                    + ([dtype] if dtype else []))
  log(f"  [{suite}] {label}: compiling ...")
  t0 = time.perf_counter()
  with jax.profiler.TraceAnnotation(f"{suite}: {label}: trace and lower"):
    traced = jitted.trace(*args)
    lowered = traced.lower()
  lower_s = time.perf_counter() - t0
  with jax.profiler.TraceAnnotation(f"{suite}: {label}: compile"):
    compilation = Compilation(lowered, pool)
  return Prepared(suite, case, label, args, int(items_per_call), item, batch, dtype,
                  list(notes), flops_lib.count_jaxpr(traced.jaxpr.jaxpr), lower_s,
                  program_devices(args), compilation)


def run(prepared: Prepared, *, warmup: int = 1, runs: int = 5,
        args: Optional[Sequence[Any]] = None,
        next_args: Optional[Callable[[Sequence[Any], Any], Sequence[Any]]] = None,
        peaks: Optional[dict] = None, peak_dtype: Optional[str] = None,
        pool: Optional[CompilePool] = None, log: Callable[[str], None] = print) -> dict:
  """Runs a prepared case: `warmup` untimed and `runs` timed calls; the case dict.

  `args` replaces the arguments given to `prepare` (same shapes; e.g. a training state that an
  earlier case donated and replaced). With `pool`, waits first until it compiles nothing, so
  that no compilation shares the machine with the timed calls.
  """
  if runs < 1:
    raise ValueError(f"runs must be >= 1, got {runs}")
  compiled = prepared.compiled()
  if pool is not None:
    pool.drain()
  args = list(args if args is not None else prepared.args)
  label, suite, item = prepared.label, prepared.suite, prepared.item
  xla = flops_lib.xla_flops(compiled)
  count = prepared.count
  devices = prepared.devices

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
  peak_key = peak_dtype or prepared.dtype
  peaks = peaks or {}
  measured_peak = (peaks.get("measured") or {}).get(peak_key)
  vendor_peak = (peaks.get("vendor") or {}).get(peak_key)
  notes = list(prepared.notes)
  if prepared.compilation.from_cache:
    notes.append("compile_s is a read from the persistent compilation cache (the same program "
                 "was compiled earlier in this run), not a compilation")
  if prepared.compile_workers > 1:
    notes.append(f"compiled while up to {prepared.compile_workers} programs compiled at once "
                 "(compile_s is wall time, shared with the others)")
  # Peaks are per device; a program spread over n devices is measured against n of them.
  result = {
      "suite": suite, "case": prepared.case, "status": "ok", "batch": prepared.batch,
      "dtype": prepared.dtype, "item": item, "items_per_step": prepared.items_per_call,
      "devices": devices, "compile_s": prepared.compile_s,
      "compile_workers": prepared.compile_workers,
      "compile_from_cache": prepared.compilation.from_cache,
      "lower_s": prepared.lower_s,
      "warmup": warmup, "runs": runs, "step_s": step,
      "items_per_s": prepared.items_per_call / step["median"],
      "flops": flops_lib.describe(count, xla, devices),
      "achieved_tflops": achieved,
      "fraction_of_measured_peak": utilisation(flops_per_step, step["median"],
                                               _times(measured_peak, devices)),
      "fraction_of_vendor_peak": utilisation(flops_per_step, step["median"],
                                             _times(vendor_peak, devices)),
      "memory": memory, "notes": notes,
  }
  log(f"  [{suite}] {label}: compile {result['compile_s']:.1f} s, "
      f"median {step['median'] * 1e3:.1f} ms/step (IQR {step['iqr'] * 1e3:.1f} ms), "
      f"{result['items_per_s']:.3g} {item}/s"
      + (f", {achieved:.3g} TFLOP/s" if achieved else ""))
  return _tell(result)


def measure(suite: str, case: str, fn: Callable, args: Sequence[Any], *,
            items_per_call: int, item: str, batch: Optional[int] = None,
            dtype: Optional[str] = None, warmup: int = 1, runs: int = 5,
            next_args: Optional[Callable[[Sequence[Any], Any], Sequence[Any]]] = None,
            jit_kwargs: Optional[dict] = None, peaks: Optional[dict] = None,
            peak_dtype: Optional[str] = None, notes: Sequence[str] = (),
            log: Callable[[str], None] = print) -> dict:
  """Times fn(*args) and returns the case dict (keys `CASE_KEYS`): `prepare` (compiled inline)
  then `run`.

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
  prepared = prepare(suite, case, fn, args, items_per_call=items_per_call, item=item,
                     batch=batch, dtype=dtype, jit_kwargs=jit_kwargs, notes=notes, log=log)
  return run(prepared, warmup=warmup, runs=runs, next_args=next_args, peaks=peaks,
             peak_dtype=peak_dtype, log=log)


def error_message(error: BaseException) -> str:
  """An exception as the one-line text a report gives it (type: message, at most ~600 chars)."""
  message = f"{type(error).__name__}: {error}"
  if len(message) > 600:
    message = message[:600] + " ..."
  return message


def error_case(suite: str, case: str, error: BaseException, **extra) -> dict:
  """A case that failed (e.g. out of memory): reported with its error, never with numbers."""
  return _tell({"suite": suite, "case": case, "status": "error",
                "error": error_message(error), **extra})


def missing_suite(reason: str) -> dict:
  """A suite whose model or config is not built yet."""
  return {"status": "missing", "reason": reason, "cases": []}

