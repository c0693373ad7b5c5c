"""The benchmark harness: FLOP counter against closed forms and XLA, timing/report structure on
the driver's toy task, missing suites, the LOSO both-ways comparison, the CLI end to end.

No wall-clock time is asserted anywhere; only structure, counts and consistency.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from launch.benchmarks import compile_events, flops, harness, peak, report, task_step
from launch.benchmarks.suites import SuiteOptions, frldgt, sat3d
from tests.xla import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOY = "tests/trainer/driver_task.py"
QUIET = SuiteOptions(quick=True, peaks={"measured": {"float32": 1.0}, "vendor": {}}, runs=2,
                     warmup=1, log=lambda _: None)


# --- Analytic FLOPs -------------------------------------------------------------------------
def test_matmul_flops_closed_form():
  a, b = jnp.ones((3, 5)), jnp.ones((5, 7))
  count = flops.count_flops(jnp.matmul, a, b)
  assert count.total == 2 * 3 * 5 * 7
  assert count.by_primitive == {"dot_general": 2 * 3 * 5 * 7}


def test_grouped_conv_flops_closed_form():
  n, h, w, cin, cout, groups, k = 2, 9, 7, 12, 8, 4, 3
  x = jnp.ones((n, h, w, cin))
  kernel = jnp.ones((k, k, cin // groups, cout))

  def conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (2, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=groups)
  out_h, out_w = (h - k) // 2 + 1, w - k + 1
  expected = 2 * n * out_h * out_w * cout * (cin // groups) * k * k
  assert flops.count_flops(conv, x, kernel).total == expected


def test_conv_gradient_costs_twice_the_forward_and_valid_conv_matches_xla():
  x, kernel = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 16))

  def conv(x, kernel, padding="SAME"):
    return lax.conv_general_dilated(x, kernel, (2, 2), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  forward = 2 * 2 * 4 * 4 * 16 * 4 * 3 * 3  # 4x4 outputs, padding taps included
  assert flops.count_flops(conv, x, kernel).total == forward
  # The input gradient is an lhs-dilated convolution: only taps on real elements count.
  grads = jax.grad(lambda x, k: conv(x, k).sum(), argnums=(0, 1))
  assert flops.count_flops(grads, x, kernel).total == 3 * forward
  # Without padding XLA counts exactly the same taps.
  valid = lambda x, k: conv(x, k, "VALID")
  assert flops.xla_flops(jax.jit(valid).lower(x, kernel).compile()) == \
      flops.count_flops(valid, x, kernel).total


def test_vmapped_matmul_counts_the_batch():
  a, b = jnp.ones((6, 3, 5)), jnp.ones((6, 5, 7))
  assert flops.count_flops(jax.vmap(jnp.matmul), a, b).total == 6 * 2 * 3 * 5 * 7


def test_scan_counts_body_times_length():
  w = jnp.ones((4, 4))

  def f(x):
    y, _ = lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=11)
    return y
  assert flops.count_flops(f, jnp.ones((2, 4))).total == 11 * 2 * 2 * 4 * 4


def test_cond_counts_the_costlier_branch_and_while_is_uncounted():
  w = jnp.ones((8, 8))

  def f(x, p):
    y = lax.cond(p, lambda v: v @ w @ w @ w, lambda v: v @ w, x)
    # A while loop has no static trip count: reported apart, not added.
    z = lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] @ w), (0, y))[1]
    return jax.jit(lambda v: v @ w)(z)  # nested jit is entered
  count = flops.count_flops(f, jnp.ones((2, 8)), True)
  one = 2 * 2 * 8 * 8
  assert count.total == 3 * one + one
  assert count.uncounted == {"while body (per iteration)": one}


def test_grad_and_remat_are_counted_as_executed():
  w = jnp.ones((16, 32))
  x = jnp.ones((4, 16))
  loss = lambda w: jnp.sum(jax.checkpoint(lambda w: jnp.tanh(x @ w))(w) ** 2)
  # Forward once, forward again inside the rematerialised backward, then dL/dw = x^T @ g.
  assert flops.count_flops(jax.grad(loss), w).total == 3 * 2 * 4 * 16 * 32


def test_analytic_count_agrees_with_xla_on_an_mlp():
  sizes = (256, 512, 512, 128)
  keys = jax.random.split(jax.random.key(0), len(sizes))
  params = [(jax.random.normal(k, (m, n)) / np.sqrt(m), jnp.zeros(n))
            for k, m, n in zip(keys, sizes[:-1], sizes[1:])]
  x = jax.random.normal(keys[-1], (64, sizes[0]))

  def mlp(params, x):
    for w, b in params:
      x = jax.nn.relu(x @ w + b)
    return x
  analytic = flops.count_flops(mlp, params, x).total
  assert analytic == sum(2 * 64 * m * n for m, n in zip(sizes[:-1], sizes[1:]))
  xla = flops.xla_flops(jax.jit(mlp).lower(params, x).compile())
  # XLA adds the bias adds and ReLUs (one flop per element): a fraction of a percent here.
  assert xla == pytest.approx(analytic, rel=0.01)


# --- Harness and report on the driver's toy task ---------------------------------------------
def _toy_step_flops(batch=32, dim=16, hidden=32):
  """Closed form of tests/trainer/driver_task.py's step: forward x@w1, h@w2; backward dW2 = h^T g,
  dh = g W2^T, dW1 = x^T dh (no gradient w.r.t. the data)."""
  macs = batch * dim * hidden + batch * hidden + batch * hidden + batch * hidden + \
      dim * batch * hidden
  return 2 * macs


@pytest.fixture(scope="module")
def toy_suite():
  return task_step.task_suite("toy", TOY, item="rows", options=QUIET)


def test_task_step_case_has_the_documented_keys(toy_suite):
  assert toy_suite["status"] == "ok"
  (case,) = toy_suite["cases"]
  assert set(harness.CASE_KEYS) <= set(case)
  assert case["status"] == "ok" and case["runs"] == 2 and len(case["step_s"]["all"]) == 2
  step = case["step_s"]
  assert step["min"] <= step["q25"] <= step["median"] <= step["q75"] <= step["max"]
  assert step["iqr"] == pytest.approx(step["q75"] - step["q25"])
  assert case["items_per_step"] == 32 and case["batch"] == 32
  assert case["items_per_s"] == pytest.approx(32 / step["median"])
  assert case["flops"]["total"] == _toy_step_flops()
  # conftest's 8 CPU devices: the batch is sharded over all of them, and XLA analyses one
  # device's program (its elementwise work and replicated optimizer update on top).
  devices = len(jax.devices())
  assert case["devices"] == devices
  assert case["flops"]["xla"] == case["flops"]["xla_per_device"] * devices
  assert case["flops"]["xla"] >= case["flops"]["total"]
  assert case["achieved_tflops"] == pytest.approx(_toy_step_flops() / step["median"] / 1e12)
  # Against the peak of every device the step runs on (1 TFLOP/s each in QUIET).
  assert case["fraction_of_measured_peak"] == pytest.approx(case["achieved_tflops"] / devices)
  assert case["fraction_of_vendor_peak"] is None  # no vendor peak on a CPU
  memory = case["memory"]
  assert memory["device_peak_bytes"] is None and "memory_stats" in memory["device_peak_note"]
  assert memory["xla_executable_bytes"]["total"] > 0


def test_pool_compiles_and_a_cache_read_is_not_reported_as_a_compilation():
  """Cases prepared in a CompilePool run like inline ones; a program whose twin was compiled
  earlier in the run is read from the persistent cache, and its case says so. The programs
  compile in well under jax's default one-second threshold for keeping them: the cache keeps
  them all the same (on a quick machine the suites' small programs were compiled twice)."""
  before = harness.persistent_cache_dir()
  min_time = jax.config.jax_persistent_cache_min_compile_time_secs
  restore = harness.use_persistent_cache()
  assert harness.persistent_cache_dir() not in (None, before)  # a fresh, empty cache
  pool = harness.CompilePool(2)
  try:
    x = jnp.ones((32, 48))
    count = 2 * 32 * 48 * 32
    first = harness.prepare("t", "first", lambda a: jnp.tanh(a @ a.T), [x], items_per_call=32,
                            item="rows", pool=pool, log=lambda _: None)
    first.compiled()
    with compile_events.record() as events:  # an identical program from another function
      twin = harness.prepare("t", "twin", lambda a: jnp.tanh(a @ a.T), [x], items_per_call=32,
                             item="rows", pool=pool, log=lambda _: None)
      twin.compiled()
    assert events.cache_hits == 1 and events.cache_misses == 0
    cases = [harness.run(p, warmup=1, runs=2, pool=pool, log=lambda _: None)
             for p in (first, twin)]
  finally:
    pool.close()
    restore()
  assert harness.persistent_cache_dir() == before
  assert jax.config.jax_persistent_cache_min_compile_time_secs == min_time
  for case, from_cache in zip(cases, (False, True)):
    assert case["compile_from_cache"] is from_cache
    assert any("persistent compilation cache" in n for n in case["notes"]) is from_cache
    assert case["compile_workers"] == 2 and case["flops"]["total"] == count
    assert len(case["step_s"]["all"]) == 2


def test_summarise_times_matches_numpy():
  times = [0.3, 0.1, 0.4, 0.2, 0.5]
  s = harness.summarise_times(times)
  q25, q50, q75 = np.percentile(times, [25, 50, 75])
  assert (s["median"], s["q25"], s["q75"], s["min"], s["max"]) == (q50, q25, q75, 0.1, 0.5)


def _report(suites):
  return {"schema": report.SCHEMA, "date": "2026-11-25T00:00:00+00:00",
          "command": "python launch/bench.py --quick --out b.json", "quick": True,
          "machine": {"name": "Test CPU, 2 cores", "backend": "cpu", "device_count": 1,
                      "jax": jax.__version__, "load_average_1m": 1.0},
          "notes": ["machine shared"],
          "matmul_peak": {"measured": {"float32": {"tflops": 1.0, "size": 256, "by_size": {}}},
                          "vendor": peak.vendor_peak("cpu", "cpu")},
          "suites": suites}


def test_report_json_and_markdown(toy_suite, tmp_path):
  rep = _report({"toy": toy_suite, "sat3d": harness.missing_suite("not built yet")})
  path = report.write_json(rep, tmp_path / "b.json")
  loaded = json.loads(path.read_text())
  assert set(report.REPORT_KEYS) <= set(loaded)
  assert loaded["suites"]["toy"]["cases"][0]["flops"]["total"] == _toy_step_flops()
  table = report.markdown(loaded)
  assert "Test CPU, 2 cores" in table and "machine shared" in table
  header = next(l for l in table.splitlines() if l.startswith("| suite"))
  assert [c.strip() for c in header.strip("|").split("|")] == list(report.COLUMNS)
  row = next(l for l in table.splitlines() if l.startswith("| toy"))
  assert len(row.strip("|").split("|")) == len(report.COLUMNS)
  assert "**sat3d**: missing — not built yet" in table


def test_update_readme_replaces_only_the_marked_section(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\noutro\n")
  assert report.update_readme(readme, "| new |\n")
  assert readme.read_text() == (f"intro\n{report.README_BEGIN}\n| new |\n"
                                f"{report.README_END}\noutro\n")
  plain = tmp_path / "PLAIN.md"
  plain.write_text("no markers\n")
  assert not report.update_readme(plain, "| new |") and plain.read_text() == "no markers\n"
  # Markers quoted inside a line of text are not the markers (docs/benchmarks.md quotes them).
  quoted = (f"put between `{report.README_BEGIN}` and `{report.README_END}` lines\n"
            f"{report.README_BEGIN}\nold\n{report.README_END}\n")
  readme.write_text(quoted)
  assert report.update_readme(readme, "| new |")
  assert readme.read_text() == quoted.replace("\nold\n", "\n| new |\n")


# --- Missing parts ---------------------------------------------------------------------------
def test_missing_config_file_is_reported_missing():
  suite = sat3d.run(QUIET, config_ref="configs/no_such_config.py:tiny")
  assert suite["status"] == "missing" and suite["cases"] == []
  assert "no_such_config.py does not exist yet" in suite["reason"]


def test_missing_task_module_is_reported_missing(tmp_path):
  config = tmp_path / "cfg.py"
  config.write_text("from launch.trainer import base_config\n"
                    "def get_config(arg=''):\n"
                    "  c = base_config()\n  c.task = 'frldgt_jax.no_such_task'\n  return c\n")
  suite = frldgt.run(QUIET, config_ref=f"{config}:synthetic_tiny")
  assert suite["status"] == "missing"
  assert "frldgt_jax.no_such_task does not exist yet" in suite["reason"]


def test_config_overrides_must_name_existing_fields():
  config = task_step.load_config(TOY, {"global_batch_size": 8})
  assert config.global_batch_size == 8
  with pytest.raises(KeyError, match="global_batch_sise"):
    task_step.load_config(TOY, {"global_batch_sise": 8})


# --- Peaks and the EG3D suite -----------------------------------------------------------------
@pytest.mark.parametrize("kind,platform,bf16", [
    ("NVIDIA H100 80GB HBM3", "gpu", 989.4), ("NVIDIA H100 PCIe", "gpu", 756.0),
    ("NVIDIA H200", "gpu", 989.4), ("NVIDIA A100-SXM4-40GB", "gpu", 312.0),
    ("TPU v4", "tpu", 275.0), ("TPU v5 lite", "tpu", 197.0), ("TPU v5p", "tpu", 459.0),
    ("cpu", "cpu", None), ("Some Future GPU", "gpu", None)])
def test_vendor_peak_table(kind, platform, bf16):
  assert peak.vendor_peak(kind, platform)["tflops"].get("bfloat16") == bf16


def test_measured_matmul_peak_structure():
  measured = peak.measured_matmul_peak({"float32": (64, 128)}, runs=2, log=lambda _: None)
  entry = measured["float32"]
  assert set(entry["by_size"]) == {"64", "128"}
  assert entry["tflops"] == max(entry["by_size"].values()) > 0


def test_eg3d_suite_reduced_case():
  from launch.benchmarks.suites import eg3d  # pylint: disable=g-import-not-at-top
  suite = eg3d.run(QUIET, preset="micro", batches=(1,), dtypes=("float32",),
                   modconvs=("nonfused",))
  assert suite["status"] == "ok"
  case, both = suite["cases"]
  for c in (case, both):
    assert c["status"] == "ok", c.get("error")
    assert c["item"] == "images" and c["items_per_step"] == 1
  by = case["flops"]["by_primitive"]
  assert by.get("conv_general_dilated", 0) > 0 and by.get("dot_general", 0) > 0
  # XLA counts elementwise work on top of the matmuls and convolutions.
  assert case["flops"]["xla"] > 0.5 * case["flops"]["total"]
  # Forward+backward to ws: the forward again plus the input gradients of the layers (about the
  # forward's cost; no weight gradients), measured 1.99x the forward on this architecture.
  assert both["case"].startswith(eg3d.FORWARD_BACKWARD)
  assert 1.5 * case["flops"]["total"] <= both["flops"]["total"] <= 4 * case["flops"]["total"]


# --- The command line ------------------------------------------------------------------------
def test_bench_cli_end_to_end(tmp_path):
  out = tmp_path / "b.json"
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             XLA_FLAGS=xla_flags(1))
  proc = subprocess.run(
      [sys.executable, str(ROOT / "launch" / "bench.py"), "--quick", "--suite=sat3d,frldgt",
       f"--out={out}", f"--sat3d_config={TOY}", "--frldgt_config=configs/absent.py:tiny",
       "--runs=2", f"--profile={tmp_path / 'trace'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  # A suite that did not measure (here: no such config) makes the command fail, naming it, and
  # the report still holds what was measured.
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "1 part(s) did not measure" in proc.stderr and "suite frldgt: missing" in proc.stderr
  rep = json.loads(out.read_text())
  assert rep["suites"]["frldgt"]["status"] == "missing"
  assert rep["suites"]["sat3d"]["status"] == "ok"
  assert rep["suites"]["sat3d"]["cases"][0]["flops"]["total"] == _toy_step_flops()
  assert rep["machine"]["cpu_cores"] >= 1 and rep["machine"]["name"]
  assert rep["matmul_peak"]["measured"]["float32"]["tflops"] > 0
  assert any((tmp_path / "trace" / "sat3d").rglob("*.xplane.pb"))
  table = out.with_suffix(".md").read_text()
  assert "| sat3d |" in table and "**frldgt**: missing" in table
  assert str(out) in proc.stdout
