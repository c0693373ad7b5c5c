"""The FRL-DGT benchmark suite in quick mode (:synthetic_tiny made smaller, folds 0,1, one timed
run): its training-step cases (both stages, stacked and one fold) come out ok with TensorFlow
(the LOSO sweeps run, their held-out predictor compiled beforehand) and without it (in-memory
clips and batches; the sweeps reported as not run, and nothing on the way imports TensorFlow).

No wall-clock time is asserted; only statuses, case names and what was imported.
"""
import json
import os
import pathlib
import subprocess
import sys

from launch.benchmarks import report
from tests.xla import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEP_CASES = {f"train step, stage {stage}, {way}"
              for stage in ("1 (DGM pre-training)", "2 (end to end)")
              for way in ("2 folds stacked", "one fold (0)")}
# :synthetic_tiny with a one-level DGM, one AU region and 4 steps per fold (2 of DGM
# pre-training): the same kinds of program (DGM pre-training, end to end with the DGM, stacked
# and one fold) at a quarter of the compile time, and short sweeps.
SMALLER = {"model.regions": ("glabella_nose",), "model.dgm.widths": (8,),
           "model.dgm.convs_per_level": 1, "total_steps": 4, "dgm_pretrain_steps": 2}


def _run_suite(env: dict, synthetic_root: pathlib.Path) -> dict:
  """The quick suite (one timed run) in a subprocess on one CPU device: {'suite': the suite
  dict, 'imported': the TensorFlow modules it imported}. Both tests compile the same programs,
  so the second reads them from the session's compilation cache (tests/conftest.py)."""
  overrides = {**SMALLER, "data.synthetic_root": str(synthetic_root)}
  code = (
      "import json, sys\n"
      "from launch.benchmarks.suites import SuiteOptions, frldgt\n"
      "suite = frldgt.run(SuiteOptions(quick=True, runs=1, warmup=0, log=lambda _: None),\n"
      f"                   overrides={overrides!r})\n"
      "print(json.dumps({'suite': suite,\n"
      "                  'imported': sorted({m.partition('.')[0] for m in sys.modules}\n"
      "                                     & {'tensorflow', 'tensorflow_datasets'})}))\n")
  env = dict(env, XLA_FLAGS=xla_flags(1))
  # Most of pytest-timeout's 900 s: the whole test is this run (on a busy 2-core machine too).
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=850)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _step_cases(suite: dict) -> dict:
  assert suite["status"] == "ok", suite
  cases = {c["case"]: c for c in suite["cases"]}
  assert set(cases) == STEP_CASES, suite
  assert all(c["status"] == "ok" and c["items_per_s"] > 0 for c in cases.values()), suite
  return cases


def test_suite_runs_the_steps_and_both_sweeps_with_tensorflow(tmp_path_factory):
  # The corpus of tests/frldgt (same folder): built once per session.
  root = tmp_path_factory.getbasetemp() / "frldgt_synthetic"
  suite = _run_suite(dict(os.environ, PYTHONPATH=str(ROOT)), root)["suite"]
  _step_cases(suite)
  assert "the prepared dataset" in suite["notes"][0]
  # The sweeps ran on the programs compiled up front, the held-out predictor's among them
  # (make_predictor(...).trace: the AttributeError this suite raised before).
  (comparison,) = suite["comparisons"]
  assert comparison["status"] == "ok", suite["notes"]
  assert [w["mode"] for w in comparison["ways"]] == ["stacked", "per_fold"]
  # Each sweep read every program from the cache (a program it compiled itself, e.g. a
  # predictor traced on other arguments than the sweep passes, would warn and drop the total).
  assert comparison["warnings"] == [], comparison["warnings"]
  assert all(w["total_s"] is not None for w in comparison["ways"])
  assert 0.0 <= comparison["identical_predictions"] <= 1.0


def _blocked_env(tmp_path) -> dict:
  """PYTHONPATH with `tensorflow` and `tensorflow_datasets` packages whose import fails (and
  appends the importing stack to imports.log) ahead of the repository."""
  block = tmp_path / "block"
  for name in ("tensorflow", "tensorflow_datasets"):
    (block / name).mkdir(parents=True)
    (block / name / "__init__.py").write_text(
        "import os, traceback\n"
        "with open(os.environ['BLOCKED_IMPORTS_LOG'], 'a') as f:\n"
        "  f.write(''.join(traceback.format_stack()) + '\\n---\\n')\n"
        f"raise ImportError('{name} is blocked')\n")
  return dict(os.environ, PYTHONPATH=f"{block}{os.pathsep}{ROOT}",
              BLOCKED_IMPORTS_LOG=str(tmp_path / "imports.log"))


def test_suite_measures_the_steps_without_tensorflow(tmp_path):
  out = _run_suite(_blocked_env(tmp_path), tmp_path / "none")
  suite = out["suite"]
  _step_cases(suite)
  assert "in-memory clips" in suite["notes"][0]
  # The sweeps need the prepared dataset (TFDS): reported as not run, with the reason.
  (comparison,) = suite["comparisons"]
  assert comparison["status"] == "not run" and "TensorFlow" in comparison["reason"]
  # Nothing was imported from TensorFlow, and the only attempt was the suite's own check.
  assert out["imported"] == []
  attempts = (tmp_path / "imports.log").read_text().split("\n---\n")[:-1]
  assert attempts and all("tensorflow_missing" in a for a in attempts), attempts
  assert not (tmp_path / "none").exists()  # no corpus generated, nothing read from disk


def test_a_comparison_not_run_is_shown_with_its_reason():
  suite = {"status": "ok", "cases": [], "comparisons": [
      {"name": "LOSO sweep both ways", "status": "not run", "ways": [],
       "reason": "TensorFlow cannot be imported here"}]}
  text = report.markdown({
      "machine": {"name": "m", "backend": "cpu", "device_count": 1, "jax": "x"}, "date": "d",
      "matmul_peak": {"measured": {}, "vendor": {}}, "command": "c", "suites": {"frldgt": suite}})
  assert ("**frldgt: LOSO sweep both ways** — not run: TensorFlow cannot be imported here"
          in text)
