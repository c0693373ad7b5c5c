"""The one-command GPU run (.ci/gpu_bench) where TensorFlow is not installed, as on the GPU image.

`run` is run on the CPU with TensorFlow and TFDS unimportable (tests/no_tensorflow.py): it
unpacks the wheel bundle, measures the real SAT3D `:tiny` training step and writes its rows into
the docs' GPU markers; a suite that does not measure makes it exit non-zero, naming the suite.
The FRL-DGT suite's stacked step without TensorFlow is tests/benchmarks/test_frldgt_suite.py's
(on a smaller model, which the command's flags cannot ask for). The bundle itself, fetched from
the index, and the whole run on a stand-in of the image are .ci/gpu_image_check's, outside CI.
"""
import json
import pathlib
import subprocess
import zipfile

from launch.benchmarks import report
from tests.no_tensorflow import ROOT, blocked_env

PROBE = "gpu_bundle_probe"


def _deps(tmp_path: pathlib.Path) -> pathlib.Path:
  """A bundle folder holding one small real wheel (a module and its dist-info)."""
  deps = tmp_path / "deps"
  (deps / "wheels").mkdir(parents=True)
  with zipfile.ZipFile(deps / "wheels" / f"{PROBE}-1.0-py3-none-any.whl", "w") as wheel:
    wheel.writestr(f"{PROBE}.py", "BUNDLED = True\n")
    wheel.writestr(f"{PROBE}-1.0.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n")
  return deps


def _gpu_bench(tmp_path, *flags, deps=None):
  docs = tmp_path / "benchmarks.md"
  docs.write_text("# B\n<!-- gpu-benchmark-table:begin -->\nold\n"
                  "<!-- gpu-benchmark-table:end -->\n")
  env = blocked_env(tmp_path, GPU_DEPS=str(deps or _deps(tmp_path)),
                    GPU_BENCH_OUT=str(tmp_path / "gpu.json"), GPU_BENCH_README=str(docs))
  return subprocess.run([str(ROOT / ".ci" / "gpu_bench"), "run", "--quick", *flags],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_gpu_command_measures_without_tensorflow_and_a_failed_suite_keeps_the_rest(tmp_path):
  """One run of the command (each run re-imports JAX and measures the matmul peak): the FRL-DGT
  suite first, on an absent config, does not measure; the SAT3D `:tiny` step and EG3D's synthesis
  after it are measured, kept in the report and the table, and the command exits 1 naming the
  suite that did not measure."""
  proc = _gpu_bench(tmp_path, "--suite=frldgt,sat3d,eg3d", "--frldgt_config=configs/absent.py",
                    "--sat3d_views=2", "--sat3d_dtypes=float32", "--nosat3d_breakdown",
                    "--nosat3d_memory", "--eg3d_batches=1", "--eg3d_dtypes=float32",
                    "--eg3d_modconvs=nonfused", "--runs=1", "--warmup=0", "--compile_workers=1")
  assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "did not measure" in proc.stderr and "suite frldgt: missing" in proc.stderr
  assert (tmp_path / "deps" / "site" / f"{PROBE}.py").is_file()  # the bundle was unpacked
  rep = json.loads((tmp_path / "gpu.json").read_text())
  failures = report.failures(rep)
  assert len(failures) == 1 and failures[0].startswith("suite frldgt: missing"), failures
  # Measured after the failed suite, and kept.
  sat3d = rep["suites"]["sat3d"]
  assert sat3d["status"] == "ok"
  assert [c["case"] for c in sat3d["cases"]] == \
      ["train step (sat3d_ffhq.py:tiny), views 2, float32"]
  assert sat3d["cases"][0]["items_per_s"] > 0
  assert rep["suites"]["eg3d"]["status"] == "ok"
  assert rep["suites"]["eg3d"]["cases"]
  assert all(c["status"] == "ok" for c in rep["suites"]["eg3d"]["cases"])
  table = (tmp_path / "benchmarks.md").read_text()
  assert "old" not in table and "| sat3d |" in table


def test_run_without_a_bundle_says_to_fetch(tmp_path):
  empty = tmp_path / "empty"
  (empty / "wheels").mkdir(parents=True)
  proc = _gpu_bench(tmp_path, deps=empty)
  assert proc.returncode == 2 and "run '.ci/gpu_bench fetch' first" in proc.stderr


def test_failures_name_error_cases_and_unfinished_suites():
  rep = {"suites": {
      "sat3d": {"status": "ok", "cases": [{"case": "a", "status": "ok"},
                                          {"case": "b", "status": "error", "error": "OOM"}]},
      "eg3d": {"status": "running", "reason": "stopped", "cases": []},
      "studio": {"status": "pending", "reason": "not reached", "cases": []}}}
  assert report.failures(rep) == ["sat3d: b: OOM", "suite eg3d: running: stopped",
                                  "suite studio: pending: not reached"]


def test_rows_are_reported_as_each_case_finishes(monkeypatch):
  """In order, the report is handed out after every case: while the first suite runs it holds
  the cases measured so far ('running') and the next suite as 'pending', so a run stopped at a
  time limit has written them."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from launch.benchmarks import harness, runner  # pylint: disable=g-import-not-at-top

  def fake_start(name, *args, **kwargs):
    def start(options):
      def finish():
        cases = [harness.measure(name, f"case {i}", lambda x: x * 2.0, [jnp.ones(4)],
                                 items_per_call=1, item="items", runs=1, warmup=0,
                                 log=lambda s: None) for i in range(2)]
        return {"status": "ok", "cases": cases}
      return finish
    return start

  monkeypatch.setattr(runner, "_suite_start", fake_start)
  snapshots = []
  final = runner.run_all(["eg3d", "studio"], quick=True, in_order=True, runs=1, warmup=0,
                         on_progress=snapshots.append, log=lambda s: None)
  states = [(s["suites"]["eg3d"]["status"], len(s["suites"]["eg3d"]["cases"]),
             s["suites"]["studio"]["status"]) for s in snapshots]
  assert states[:3] == [("running", 1, "pending"), ("running", 2, "pending"),
                        ("ok", 2, "pending")]
  assert states[-1] == ("ok", 2, "ok") and report.failures(final) == []
