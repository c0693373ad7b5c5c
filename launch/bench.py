"""Benchmark every hot path: EG3D synthesis, the SAT3D and FRL-DGT training steps, the LOSO sweep.

  python launch/bench.py --quick --out b.json                  # reduced widths, minutes on a CPU
  python launch/bench.py --out bench/h100.json --profile traces  # full architectures
  python launch/bench.py --suite eg3d --quick --out eg3d.json --readme docs/benchmarks.md

For each case: compile time apart from steady state (the cases' programs compile side by side,
--compile_workers at a time, before any is timed), median and IQR of timed steps after warm-up
(each blocked on its result), throughput, analytic matmul/conv FLOPs next to XLA's cost
analysis, achieved TFLOP/s as a fraction of this machine's matmul peak (measured in the same
run) and of the vendor's peak (known GPUs/TPUs), and peak memory. Writes FILE.json and the
Markdown table FILE.md (and, with --readme, between the benchmark-table markers of a Markdown
file: docs/benchmarks.md holds the CPU and GPU tables); the files are rewritten after every case,
so a run stopped early keeps what it measured. Parts whose model is not built yet are reported as
missing. The command exits with status 1, naming them, when any suite or case did not measure
(an error, a missing or unreached suite).
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import ast
import pathlib
import shlex
import sys

from absl import app, flags, logging

SUITES = ("eg3d", "sat3d", "frldgt", "studio", "sat3d_memory", "encoder", "spotting")

_SUITE = flags.DEFINE_list("suite", list(SUITES[:4]), f"Suites to run, of {', '.join(SUITES)} "
                           "(with --in_order: in this order).")
_IN_ORDER = flags.DEFINE_bool(
    "in_order", False, "Start and finish each suite before the next, in --suite's order "
    "(priority first), instead of compiling every suite's programs side by side first: for runs "
    "with a time limit.")
_QUICK = flags.DEFINE_bool("quick", False,
                           "Reduced widths (the fixtures' architectures, tiny configs).")
_PROFILE = flags.DEFINE_string("profile", None, "Write a jax.profiler trace of each suite to "
                               "DIR/<suite> (view with TensorBoard or Perfetto).")
_OUT = flags.DEFINE_string("out", None, "JSON report path; the Markdown table goes next to it "
                           "(same name, .md).", required=True)
_RUNS = flags.DEFINE_integer("runs", None, "Timed steps per case (default 5; --quick 3).")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed steps per case after compilation.")
_README = flags.DEFINE_string("readme", None, "Also put the table between the benchmark-table "
                              "markers of this Markdown file (docs/benchmarks.md holds "
                              "the project's tables).")
_COMPILE_WORKERS = flags.DEFINE_integer(
    "compile_workers", None, "Programs compiled at once (default: 2 with --quick on a CPU of 2+ "
    "cores, else 1). Cases are timed one at a time, never beside a compilation.")
_NOTE = flags.DEFINE_multi_string("note", [], "A remark printed with the table (e.g. that the "
                                  "machine was shared).")
_EG3D_PRESET = flags.DEFINE_string("eg3d_preset", None, "EG3D preset (default tiny128 with "
                                   "--quick, ffhq512 without).")
_EG3D_BATCHES = flags.DEFINE_list("eg3d_batches", None, "EG3D batch sizes (default 1,8).")
_EG3D_DTYPES = flags.DEFINE_list("eg3d_dtypes", None, "EG3D compute dtypes (default "
                                  "float32,bfloat16).")
_EG3D_MODCONVS = flags.DEFINE_list("eg3d_modconvs", None, "EG3D modulated convolutions "
                                   "(default fused,nonfused).")
_SAT3D_CONFIG = flags.DEFINE_string("sat3d_config", None, "SAT3D config (default "
                                    "configs/sat3d_ffhq.py:tiny / :bench).")
_SAT3D_SET = flags.DEFINE_multi_string(
    "sat3d_set", [], "FIELD=VALUE override of the SAT3D config (as --config.FIELD=VALUE; the "
    "value is a Python literal or a string), e.g. generator=preset:ffhq512_small to compare the "
    "step with the eg3d suite at --eg3d_preset ffhq512_small.")
_SAT3D_MEMORY = flags.DEFINE_bool(
    "sat3d_memory", False, "Also run the sat3d_memory suite, last: compile (never run) the "
    "configs/sat3d_ffhq.py:bench step (FFHQ-512, batch 8) under each objective.remat policy and "
    "report XLA's memory analysis (arguments, outputs, temporaries) for this backend.")
_SAT3D_DTYPES = flags.DEFINE_list("sat3d_dtypes", None, "compute_dtype values of the SAT3D step "
                                  "cases (default: the config's own), e.g. float32,bfloat16.")
_SAT3D_VIEWS = flags.DEFINE_list("sat3d_views", ["1", "2", "4"], "views.count values of the "
                                  "SAT3D step cases (the config's own count is always added).")
_SAT3D_BREAKDOWN = flags.DEFINE_bool("sat3d_breakdown", True, "Time the SAT3D step's parts "
                                     "(mapping, backbone, renderer, super-resolution, CLIP, "
                                     "backward), each as its own program.")
_README_MARKERS = flags.DEFINE_string(
    "readme_markers", "benchmark-table", "With --readme: the table goes between "
    "'<!-- NAME:begin -->' and '<!-- NAME:end -->' (e.g. gpu-benchmark-table).")
_FRLDGT_CONFIG = flags.DEFINE_string("frldgt_config", None, "FRL-DGT config (default "
                                     "configs/frldgt_composite.py:synthetic_tiny / :synthetic).")


def _overrides(items) -> dict:
  """{'a.b': value} of 'a.b=value' items (values as Python literals, else strings)."""
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise app.UsageError(f"--sat3d_set takes FIELD=VALUE, got {item!r}")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unknown = [s for s in _SUITE.value if s not in SUITES]
  if unknown:
    raise app.UsageError(f"unknown suite(s) {unknown}; known: {', '.join(SUITES)}")
  suites = list(dict.fromkeys(_SUITE.value))
  if _SAT3D_MEMORY.value and "sat3d_memory" not in suites:
    suites.append("sat3d_memory")
  out = pathlib.Path(_OUT.value)
  if out.suffix != ".json":
    raise app.UsageError(f"--out must name a .json file, got {out}")
  if _README.value and not pathlib.Path(_README.value).is_file():
    raise app.UsageError(f"--readme {_README.value} does not exist")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # jax logs each backend it does not find at INFO

  from launch.benchmarks import report as report_lib  # pylint: disable=g-import-not-at-top
  from launch.benchmarks import runner  # pylint: disable=g-import-not-at-top  # jax after flags

  def write(rep: dict):
    return runner.write(rep, out, readme=_README.value, markers=_README_MARKERS.value)

  report = runner.run_all(
      suites=suites, quick=_QUICK.value, in_order=_IN_ORDER.value, on_progress=write,
      runs=_RUNS.value, warmup=_WARMUP.value,
      profile_dir=_PROFILE.value, notes=_NOTE.value,
      command=shlex.join(["python", "launch/bench.py", *sys.argv[1:]]),
      eg3d_preset=_EG3D_PRESET.value,
      eg3d_batches=[int(b) for b in _EG3D_BATCHES.value] if _EG3D_BATCHES.value else None,
      eg3d_dtypes=_EG3D_DTYPES.value, eg3d_modconvs=_EG3D_MODCONVS.value,
      sat3d_config=_SAT3D_CONFIG.value, frldgt_config=_FRLDGT_CONFIG.value,
      sat3d_overrides=_overrides(_SAT3D_SET.value) or None,
      sat3d_views=[int(v) for v in _SAT3D_VIEWS.value], sat3d_breakdown=_SAT3D_BREAKDOWN.value,
      sat3d_dtypes=_SAT3D_DTYPES.value, compile_workers=_COMPILE_WORKERS.value)
  json_path, md_path = write(report)
  print(f"\nreport: {json_path}\ntable:  {md_path}"
        + (f"\ntable:  {_README.value} (between its markers)" if _README.value else ""))
  failed = report_lib.failures(report)
  if failed:
    print(f"\n{len(failed)} part(s) did not measure:", file=sys.stderr)
    for line in failed:
      print(f"  {line}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
