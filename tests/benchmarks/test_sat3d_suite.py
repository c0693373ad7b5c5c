"""The SAT3D suite's summary (the breakdown's sum against the step, the cost of each extra view)
and the run's SAT3D-step / EG3D-forward+backward FLOP-rate line, on hand-made case dicts."""
import pytest

from launch.benchmarks import runner
from launch.benchmarks.suites import eg3d, sat3d


def _case(name, median, tflops=None, dtype="float32", batch=2):
  return {"case": name, "status": "ok", "step_s": {"median": median}, "dtype": dtype,
          "batch": batch, "achieved_tflops": tflops}


def test_summary_sums_the_parts_and_prices_the_views():
  step = _case(sat3d.step_case("x.py", 2), 1.0)
  parts = [_case(f"breakdown: {n}", t) for n, t in [
      ("mapping + styles", 0.1), ("tri-plane backbone", 0.2), ("volume renderer", 0.2),
      ("super-resolution", 0.1), ("CLIP forward (QMM)", 0.1), ("forward with residuals", 0.7),
      ("backward pass", 0.4)]]
  views = {1: _case("v1", 0.6), 2: step, 4: _case("v4", 1.8)}
  lines = sat3d.summarise(step, parts, views)
  assert "sum to 1100.0 ms = 1.10x the whole step" in lines[0] and "within" in lines[0]
  assert "backward pass / forward (with residuals): 0.57x" in lines[1]
  assert "each extra view costs 400.0 ms" in lines[2]  # (1.8 - 0.6) / 3
  parts[-1] = _case("breakdown: backward pass", 2.0)
  assert "OUTSIDE" in sat3d.summarise(step, parts, views)[0]


def test_step_against_generator_needs_the_same_architecture():
  name = sat3d.step_case("x.py", 1)
  results = {
      "sat3d": {"setup": {"step_case": name, "generator": "preset:ffhq512_small"},
                "cases": [_case(name, 1.0, tflops=0.04)]},
      "eg3d": {"setup": {"preset": "ffhq512_small"},
               "cases": [_case(f"{eg3d.FORWARD_BACKWARD} to ws, x", 1.0, tflops=0.05),
                         _case(f"{eg3d.FORWARD_BACKWARD} to ws, y", 1.0, tflops=0.08,
                               dtype="bfloat16"),
                         _case("synthesis, x", 1.0, tflops=0.2)]}}
  (line,) = runner.step_against_generator(results)
  assert "0.80x" in line and "DIFFERENT" not in line
  results["eg3d"]["setup"]["preset"] = "tiny128"
  assert "DIFFERENT" in runner.step_against_generator(results)[0]
  assert runner.step_against_generator({"sat3d": results["sat3d"]}) == []


@pytest.mark.parametrize("views", [{}, {1: {"status": "error"}}])
def test_summary_without_enough_cases_says_nothing(views):
  assert sat3d.summarise(None, [], views) == []
