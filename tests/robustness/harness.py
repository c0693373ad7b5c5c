"""The fuzzing contract every reader of outside data is held to, and the counts it reports.

A `Reader` names a function `path -> output`, the error type it documents and how to check a
successful output. `Recorder.check(reader, path)` runs one case and asserts the contract:

- it returns an output that `reader.validate` accepts, or
- it raises `reader.error` whose message names the file and whose cause (if it wraps another
  exception) is one of `reader.wrapped` -- the decoder errors the reader turns into "this check
  failed"; an unrelated exception wrapped by a blanket `except Exception` fails the case;
- never another exception, never more than `DEADLINE_S` of CPU (counted as a hang), never more than
  `MEMORY_BOUND` bytes traced by tracemalloc (numpy and Python allocations), never a file
  written outside the reader's output directory.

Each case is counted per reader (tried / accepted / refused / crashes / hangs); the counts go
into the test report (`record_property`) and `conftest.py` prints them as the table of
docs/robustness.md.
Adding a reader is a `Reader(...)` and a Hypothesis strategy for its files.

Profiles: `ROBUSTNESS_PROFILE=ci` (default; small, derandomized) or `long` (derandomized too,
`LONG_FACTOR` times the cases). Select with the environment variable.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import tempfile
import time
import tracemalloc
from typing import Any, Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE = os.environ.get("ROBUSTNESS_PROFILE", "ci")
LONG_FACTOR = 20
DEADLINE_S = 2.0
MEMORY_BOUND = 512 << 20

# The 2 s deadline per case is enforced by `Recorder.check` on the case's CPU time, so that other
# jobs on a shared machine cannot fail it; pytest-timeout is the wall-clock backstop for a hang
# that does not use the CPU.
settings.register_profile(
    "robustness", derandomize=True, deadline=None, database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])


def examples(ci: int) -> int:
  """How many cases a test tries: `ci` in the CI profile, `LONG_FACTOR` times more in long."""
  if PROFILE not in ("ci", "long"):
    raise ValueError(f"ROBUSTNESS_PROFILE={PROFILE!r}: use 'ci' or 'long'")
  return ci * LONG_FACTOR if PROFILE == "long" else ci


@st.composite
def mutated(draw, data: bytes, structural: tuple[int, ...] = ()):
  """`data` with 1-4 byte-level edits, half of them at opcode positions (`structural`)."""
  out = bytearray(data)
  for _ in range(draw(st.integers(1, 4))):
    if not out:
      break
    if structural and draw(st.booleans()):
      pos = min(draw(st.sampled_from(structural)), len(out) - 1)
    else:
      pos = draw(st.integers(0, len(out) - 1))
    kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
    if kind == "flip":
      out[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "overwrite":
      chunk = draw(st.binary(min_size=1, max_size=8))
      out[pos:pos + len(chunk)] = chunk
    elif kind == "insert":
      out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
      del out[pos:pos + draw(st.integers(1, 64))]
    else:
      del out[pos:]
  return bytes(out)


def fuzz(ci_examples: int):
  """The settings of a fuzz test: the robustness profile with `examples(ci_examples)` cases."""
  return settings(settings.get_profile("robustness"), max_examples=examples(ci_examples))


@dataclasses.dataclass(frozen=True)
class Reader:
  """A reader of outside data under test.

  Attributes:
    name: the row of the table in docs/robustness.md.
    read: path -> output.
    error: the documented error type(s).
    validate: raises AssertionError for an invalid output.
    wrapped: exception types the reader may wrap into `error` (its decoders' documented
      failures); anything else as a cause means a blanket re-raise.
    output_dir: where the reader may write (relative to the case's sandbox), if anywhere.
  """
  name: str
  read: Callable[[pathlib.Path], Any]
  error: type | tuple[type, ...]
  validate: Callable[[Any], None] = lambda out: None
  wrapped: tuple[type, ...] = ()
  output_dir: str | None = None


def _files(root: pathlib.Path) -> set[str]:
  return {str(p.relative_to(root)) for p in root.rglob("*")}


class Recorder:
  """Runs cases against the contract and counts their outcomes per reader."""

  def __init__(self):
    self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

  def count(self, name: str, outcome: str) -> None:
    """Counts one case of `name` (a reader or a fault) as 'accepted', 'refused', 'crash' or
    'hang'."""
    self.counts[name]["tried"] += 1
    self.counts[name][outcome] += 1

  def check(self, reader: Reader, path: pathlib.Path, sandbox: pathlib.Path) -> str:
    """One case: `reader.read(path)` with `path` inside `sandbox`; returns the outcome."""
    before = _files(sandbox)
    tracemalloc.start()
    began = time.process_time()
    try:
      try:
        output = reader.read(path)
      except reader.error as e:
        outcome = "refused"
        message = str(e)
        assert str(path) in message or path.name in message, (
            f"{reader.name}: the error does not name the file: {message!r}")
        cause = e.__cause__
        assert cause is None or isinstance(cause, reader.wrapped + (reader.error,)), (
            f"{reader.name}: {type(e).__name__} wraps an unexpected "
            f"{type(cause).__name__}: {cause!r}")
      else:
        outcome = "accepted"
        reader.validate(output)
      elapsed = time.process_time() - began
      _, peak = tracemalloc.get_traced_memory()
      assert peak <= MEMORY_BOUND, f"{reader.name}: traced {peak >> 20} MiB"
      allowed = reader.output_dir
      written = {f for f in _files(sandbox) - before
                 if allowed is None or not (f == allowed or f.startswith(allowed + os.sep))}
      assert not written, f"{reader.name}: wrote outside its output directory: {sorted(written)}"
    except BaseException:
      self.count(reader.name, "crash")
      raise
    finally:
      tracemalloc.stop()
    if elapsed > DEADLINE_S:
      self.count(reader.name, "hang")
      raise AssertionError(f"{reader.name}: a case took {elapsed:.1f} s of CPU (deadline "
                           f"{DEADLINE_S} s)")
    self.count(reader.name, outcome)
    return outcome

  def check_bytes(self, reader: Reader, data: bytes, name: str) -> str:
    """One case: `data` written to a fresh sandbox as `name`, then `check`ed."""
    with tempfile.TemporaryDirectory() as tmp:
      sandbox = pathlib.Path(tmp)
      path = sandbox / name
      path.write_bytes(data)
      return self.check(reader, path, sandbox)

  def rows(self) -> list[dict]:
    return [{"name": name, **{k: c[k] for k in ("tried", "accepted", "refused", "crash", "hang")}}
            for name, c in self.counts.items()]
