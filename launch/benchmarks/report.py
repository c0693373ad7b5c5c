"""The benchmark report: one JSON document and the Markdown table docs/benchmarks.md shows.

JSON layout (`REPORT_KEYS` at the top level):
  schema, date, command, quick, machine (machine.describe()), notes,
  wall_s and process_cpu_s (optional: the whole run), compile_workers (optional: programs
  compiled at once),
  matmul_peak: {'measured': {dtype: {'tflops', 'size', 'by_size'}}, 'vendor': peak.vendor_peak},
  suites: {name: {'status': 'ok' | 'missing' | 'error', 'reason'?, 'cases': [case...],
                  'comparisons'?: [...], 'notes'?: [...], 'summary'?: [line...], 'setup'?: {...},
                  'wall_s', 'process_cpu_s', 'phases': {'start'|'finish': {...}} (runner)}}
A case is harness.measure's dict (harness.CASE_KEYS) or an error case. A comparison whose
'status' is not 'ok' (e.g. 'not run') gives its 'name' and 'reason' instead of measurements.
"""
from __future__ import annotations

import json
import math
import pathlib
import re
from typing import Optional

SCHEMA = 1
REPORT_KEYS = ("schema", "date", "command", "quick", "machine", "notes", "matmul_peak", "suites")
README_MARKERS = "benchmark-table"
README_BEGIN = "<!-- benchmark-table:begin -->"
README_END = "<!-- benchmark-table:end -->"


def marker_lines(name: str = README_MARKERS) -> tuple[str, str]:
  """The Markdown comment lines that enclose the table called `name`."""
  return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"

COLUMNS = ("suite", "case", "batch", "dtype", "compile s", "median ms/step", "IQR ms", "throughput",
           "GFLOP/step", "XLA GFLOP", "TFLOP/s", "% meas. peak", "% vendor peak", "peak memory")


def _json_default(value):
  if hasattr(value, "item"):  # numpy scalars
    return value.item()
  if isinstance(value, pathlib.Path):
    return str(value)
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value):
  """NaN/inf -> None so the file stays strict JSON."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def write_json(report: dict, path: str | pathlib.Path) -> pathlib.Path:
  """Writes the report (strict JSON, sorted keys at the top level kept in REPORT_KEYS order)."""
  missing = [k for k in REPORT_KEYS if k not in report]
  if missing:
    raise ValueError(f"benchmark report lacks {missing}")
  return _write_atomically(path, json.dumps(_finite(report), indent=2, default=_json_default,
                                           allow_nan=False) + "\n")


def failures(report: dict) -> list[str]:
  """What in the report did not measure: each suite whose status is not 'ok' (an error, a
  suite not built, one not reached) and each case with status 'error', one line each."""
  out = []
  for name, suite in report["suites"].items():
    if suite.get("status") != "ok":
      out.append(f"suite {name}: {suite.get('status')}: {suite.get('reason', '')}")
    out += [f"{name}: {c.get('case')}: {c.get('error', '')}" for c in suite.get("cases", [])
            if c.get("status") == "error"]
  return out


def _write_atomically(path: str | pathlib.Path, text: str) -> pathlib.Path:
  """Writes `text` to a temporary file beside `path`, then renames it over `path`: a run killed
  while writing (rows are rewritten after every case) leaves the previous version whole."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text, encoding="utf-8")
  tmp.replace(path)
  return path


# --- Formatting -----------------------------------------------------------------------------
def _num(value, fmt: str = "{:.3g}") -> str:
  if value is None:
    return "–"
  return fmt.format(value)


def _ms(seconds: Optional[float]) -> str:
  """Milliseconds with precision that suits their size, never in exponent notation."""
  if seconds is None:
    return "–"
  ms = seconds * 1e3
  if ms >= 100:
    return f"{ms:.0f}"
  if ms >= 1:
    return f"{ms:.1f}"
  return f"{ms:.3f}"


def _bytes(value: Optional[int]) -> str:
  if value is None:
    return "–"
  if value >= 2 ** 30:
    return f"{value / 2 ** 30:.2f} GiB"
  return f"{value / 2 ** 20:.0f} MiB"


def _percent(value: Optional[float]) -> str:
  return "–" if value is None else f"{100 * value:.1f}%"


def memory_cell(memory: dict) -> str:
  """Device peak when this case set it; on CPU the host peak-RSS rise; else XLA's figure."""
  if not memory:
    return "–"
  if memory.get("device_peak_bytes") is not None:
    return _bytes(memory["device_peak_bytes"]) + " (device)"
  if memory.get("platform") == "cpu" and memory.get("host_peak_rss_delta_bytes") is not None:
    return "+" + _bytes(memory["host_peak_rss_delta_bytes"]) + " (host RSS)"
  xla = memory.get("xla_executable_bytes") or {}
  if xla.get("total") is not None:
    return _bytes(xla["total"]) + " (XLA)"
  return "–"


def case_row(case: dict) -> list[str]:
  """One table row of a case dict."""
  if case.get("status") != "ok":
    return [case.get("suite", ""), f"{case.get('case', '')}: **{case.get('status')}** "
            f"{_escape(case.get('error', ''))[:120]}"] + ["–"] * (len(COLUMNS) - 2)
  step = case["step_s"]
  flops = case.get("flops") or {}
  analytic = flops.get("total") or None
  return [
      case["suite"], _escape(case["case"]), _num(case.get("batch"), "{}"),
      case.get("dtype") or "–", _num(case["compile_s"], "{:.1f}"),
      _ms(step["median"]), _ms(step["iqr"]),
      f"{_num(case['items_per_s'])} {case['item']}/s",
      _num(analytic / 1e9 if analytic else None),
      _num(flops["xla"] / 1e9 if flops.get("xla") else None),
      _num(case.get("achieved_tflops")),
      _percent(case.get("fraction_of_measured_peak")),
      _percent(case.get("fraction_of_vendor_peak")),
      memory_cell(case.get("memory") or {}),
  ]


def _escape(text: str) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header, rows) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def markdown(report: dict) -> str:
  """The Markdown section: machine line, peaks, the case table, comparisons, missing suites."""
  m = report["machine"]
  peaks = report["matmul_peak"]
  measured = peaks.get("measured") or {}
  vendor = peaks.get("vendor") or {}
  lines = [
      f"Machine: **{m['name']}** (backend {m['backend']}, {m['device_count']} device(s), "
      f"jax {m['jax']}); {report['date']}; load average {m.get('load_average_1m')} at start"
      + (f", {m['load_average_1m_end']} at the end" if m.get("load_average_1m_end") is not None
         else "") + ".",
      "",
      "Measured matmul peak (this run): " + (", ".join(
          f"{d} {v['tflops']:.3g} TFLOP/s (n={v['size']})" for d, v in measured.items())
          or "not measured") + ". Vendor peak: " + (
          ", ".join(f"{d} {v:g} TFLOP/s" for d, v in vendor["tflops"].items()) +
          f" ({vendor['name']}: {vendor['basis']})" if vendor.get("tflops")
          else vendor.get("basis", "none")) + ".",
  ]
  if report.get("wall_s") is not None:
    workers = report.get("compile_workers")
    lines += ["", f"Whole run: {report['wall_s']:.0f} s wall, "
              f"{report.get('process_cpu_s', 0):.0f} s CPU time of the process (all threads)"
              + (f"; programs compiled {workers} at a time, before any case was timed"
                 if workers else "") + "."]
  for note in report.get("notes") or []:
    lines += ["", f"Note: {note}"]
  lines += [
      "", f"Command: `{report['command']}`" + (" (quick: the fixtures' reduced widths)"
                                               if report.get("quick") else ""), ""]
  rows, comparisons, absent, suite_notes, summaries = [], [], [], [], []
  for name, suite in report["suites"].items():
    if suite.get("status") != "ok":
      absent.append(f"- **{name}**: {suite.get('status')} — {_escape(suite.get('reason', ''))}")
    rows += [case_row(c) for c in suite.get("cases", [])]
    comparisons += [(name, c) for c in suite.get("comparisons", [])]
    suite_notes += [f"- {name}: {_escape(n)}" for n in suite.get("notes", [])]
    summaries += [f"- **{name}** {_escape(n)}" for n in suite.get("summary", [])]
  if rows:
    lines += _table(COLUMNS, rows)
  summaries += [f"- {_escape(n)}" for n in report.get("summary", [])]
  if summaries:
    lines += [""] + summaries
  for name, comp in comparisons:
    if comp.get("status", "ok") != "ok":  # e.g. 'not run', with its reason
      lines += ["", f"**{name}: {_escape(comp['name'])}** — {comp['status']}: "
                f"{_escape(comp.get('reason', ''))}"]
      continue
    lines += ["", f"**{name}: {_escape(comp['name'])}** — {_escape(comp.get('work', ''))}", ""]
    lines += _table(("way", "programs", "compile s", "sweep s", "of which training s",
                     "total s", "fold-steps/s", "UF1"),
                    [[_escape(w["way"]), _num(w.get("programs"), "{}"),
                      _num(w.get("compile_s"), "{:.1f}"),
                      _num(w.get("sweep_s", w.get("total_s")), "{:.1f}"),
                      _num(w.get("train_s"), "{:.1f}"), _num(w.get("total_s"), "{:.1f}"),
                      _num(w.get("fold_steps_per_s")), _num(w.get("UF1"), "{:.4f}")]
                     for w in comp["ways"]])
    facts = []
    if comp.get("speedup") is not None:
      facts.append(f"{comp['ways'][0]['way']} is {comp['speedup']:.2f}x as fast as "
                   f"{comp['ways'][1]['way']}"
                   + (f" ({comp['sweep_speedup']:.2f}x on the sweeps alone)"
                      if comp.get("sweep_speedup") is not None else ""))
    if comp.get("identical_predictions") is not None:
      facts.append(f"identical predictions {100 * comp['identical_predictions']:.1f}%")
    if comp.get("note"):
      facts.append(comp["note"])
    facts += [f"warning: {w}" for w in comp.get("warnings") or []]
    if facts:
      lines += ["", "; ".join(facts) + "."]
  if absent:
    lines += ["", "Not measured:"] + absent
  if suite_notes:
    lines += ["", "Notes:"] + suite_notes
  lines += [
      "", "compile s is the wall time of XLA's compilation of the case's program (when "
      "programs compile side by side, each shares the cores with the others); tracing and "
      "lowering are apart (lower_s in the JSON). "
      "GFLOP/step counts matmuls and convolutions from the jaxpr (2 x MACs, padding taps "
      "included, transposed convolutions without their inserted zeros; scan bodies x length); "
      "XLA GFLOP is XLA's cost analysis of the compiled program (adds elementwise ops, skips "
      "padding taps, counts loop bodies once, omits gathers and sorts). % peak = achieved "
      "TFLOP/s (analytic FLOPs / median step) over the peak of the case's dtype, times the "
      "devices the step runs on. Peak memory: the device's high-water mark when the case set "
      "it, else XLA's arguments + outputs + temporaries of the program; on CPU the rise of "
      "the process's peak RSS over the timed runs."]
  return "\n".join(lines) + "\n"


def write_markdown(report: dict, path: str | pathlib.Path) -> pathlib.Path:
  return _write_atomically(path, markdown(report))


def update_readme(readme: str | pathlib.Path, table: str, markers: str = README_MARKERS) -> bool:
  """Replaces the text between the `markers` (marker_lines) of the Markdown file `readme` (e.g.
  docs/benchmarks.md) with `table`.

  Returns False (and changes nothing) when the file lacks the markers.
  """
  readme = pathlib.Path(readme)
  text = readme.read_text(encoding="utf-8")
  begin, end = marker_lines(markers)
  # Markers count only on lines of their own: a text that quotes them stays as it is.
  pattern = re.compile(r"^" + re.escape(begin) + r"[ \t]*$.*?^" + re.escape(end) + r"[ \t]*$",
                       re.S | re.M)
  if not pattern.search(text):
    return False
  new = pattern.sub(lambda _: f"{begin}\n{table.rstrip()}\n{end}", text, count=1)
  _write_atomically(readme, new)
  return True
