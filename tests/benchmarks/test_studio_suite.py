"""The studio suite runs its three programs (camera move, new edit, full generator) through
sat3d_jax/eg3d/rendering.py on the micro preset, float32, one timed call each."""
from launch.benchmarks.suites import SuiteOptions, studio


def test_micro_float32_measures_every_case():
  result = studio.run(SuiteOptions(quick=True, runs=1, warmup=0, log=lambda s: None),
                      dtypes=("float32",))
  assert result["status"] == "ok"
  assert [c["case"] for c in result["cases"]] == [
      f"micro: {case}" for case in (studio.CAMERA_MOVE, studio.NEW_EDIT, studio.FULL)]
  assert all(c["status"] == "ok" and c["items_per_s"] > 0 for c in result["cases"])
  assert "micro float32" in result["ratios"]
