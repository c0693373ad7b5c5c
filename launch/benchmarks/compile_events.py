"""What jax compiled, and how long it took, while a block of code ran (from jax.monitoring).

  with compile_events.record() as rec:          # events of every thread
    run_sweep(...)
  rec.backend_compile_s, rec.trace_s, rec.cache_hits, ...

  with compile_events.record(this_thread=True) as rec:   # a compilation in a pool thread
    lowered.compile()

jax reports each tracing, lowering and XLA compilation, and each persistent-cache hit or miss,
to jax.monitoring; one pair of listeners (installed once) adds them to every active recorder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Iterator, Optional

from jax import monitoring

# Event names as recorded by jax/_src/{dispatch,compiler,pjit}.py (jax 0.10).
_DURATIONS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_compile_s",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_load_s",
    "/jax/compilation_cache/compile_time_saved_sec": "compile_saved_s",
}
_COUNTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}


@dataclasses.dataclass
class Recorder:
  """Sums of the compile events seen while active (seconds, counts).

  trace_s / lower_s: jaxpr tracing and lowering to StableHLO; backend_compile_s: getting
  executables from XLA (compile_or_get_cached: a persistent-cache hit reads the executable
  instead of compiling it, and that read is included); cache_load_s: those reads alone;
  compile_saved_s: what jax says the hits saved (original compile time minus the read).
  """
  thread: Optional[int] = None
  trace_s: float = 0.0
  lower_s: float = 0.0
  backend_compile_s: float = 0.0
  cache_load_s: float = 0.0
  compile_saved_s: float = 0.0
  cache_hits: int = 0
  cache_misses: int = 0
  compiled: dict = dataclasses.field(default_factory=dict)  # {function: backend compile s}

  @property
  def compilation_s(self) -> float:
    """Everything jax spent turning Python into executables: trace, lower, compile or load."""
    return self.trace_s + self.lower_s + self.backend_compile_s

  def as_dict(self) -> dict:
    out = {k: v for k, v in dataclasses.asdict(self).items() if k != "thread"}
    out["compilation_s"] = self.compilation_s
    return out


_lock = threading.Lock()
_active: list[Recorder] = []
_installed = False


def _targets() -> list[Recorder]:
  me = threading.get_ident()
  with _lock:
    return [r for r in _active if r.thread is None or r.thread == me]


def _on_duration(event: str, duration: float, **kwargs) -> None:
  field = _DURATIONS.get(event)
  if field:
    name = str(kwargs.get("fun_name", "?"))
    for r in _targets():
      setattr(r, field, getattr(r, field) + float(duration))
      if field == "backend_compile_s":
        r.compiled[name] = r.compiled.get(name, 0.0) + float(duration)


def _on_event(event: str, **_) -> None:
  field = _COUNTS.get(event)
  if field:
    for r in _targets():
      setattr(r, field, getattr(r, field) + 1)


def _install() -> None:
  global _installed
  with _lock:
    if _installed:
      return
    monitoring.register_event_duration_secs_listener(_on_duration)
    monitoring.register_event_listener(_on_event)
    _installed = True


@contextlib.contextmanager
def record(this_thread: bool = False) -> Iterator[Recorder]:
  """A Recorder of the events raised inside the block (by this thread only, if asked)."""
  _install()
  rec = Recorder(thread=threading.get_ident() if this_thread else None)
  with _lock:
    _active.append(rec)
  try:
    yield rec
  finally:
    with _lock:
      _active.remove(rec)
