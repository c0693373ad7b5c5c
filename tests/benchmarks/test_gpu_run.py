"""The one-command GPU run (.ci/gpu_bench) works where TensorFlow is not installed.

The GPU image has no TensorFlow, so this runs the same command on the CPU with `tensorflow` and
`tensorflow_datasets` made unimportable (a package of each name, first on PYTHONPATH, whose
import fails): the command must still end well and write its table into the README's GPU
markers, and the SAT3D benchmark's own path (the :tiny model, its task, the in-memory batch)
must build without importing TensorFlow.
"""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
NUMPY_TASK = "tests/benchmarks/numpy_task.py"


def _blocked_env(tmp_path) -> dict:
  block = tmp_path / "block"
  for name in ("tensorflow", "tensorflow_datasets"):
    (block / name).mkdir(parents=True)
    (block / name / "__init__.py").write_text(
        f"raise ImportError('{name} is blocked: the GPU run must not need it')\n")
  (tmp_path / "deps" / "site").mkdir(parents=True)
  return dict(os.environ, PYTHONPATH=f"{block}{os.pathsep}{ROOT}",
              PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
              GPU_DEPS=str(tmp_path / "deps"), GPU_BENCH_OUT=str(tmp_path / "gpu.json"),
              GPU_BENCH_README=str(tmp_path / "README.md"),
              XLA_FLAGS="--xla_force_host_platform_device_count=1")


def test_gpu_command_runs_without_tensorflow(tmp_path):
  env = _blocked_env(tmp_path)
  (tmp_path / "README.md").write_text("# R\n<!-- gpu-benchmark-table:begin -->\nold\n"
                                      "<!-- gpu-benchmark-table:end -->\n")
  proc = subprocess.run(
      [str(ROOT / ".ci" / "gpu_bench"), "run", "--quick", "--suite=sat3d",
       f"--sat3d_config={NUMPY_TASK}", "--nosat3d_memory", "--runs=1", "--warmup=0"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert json.loads((tmp_path / "gpu.json").read_text())["suites"]["sat3d"]["status"] == "ok"
  readme = (tmp_path / "README.md").read_text()
  assert "old" not in readme and "| sat3d |" in readme
  # The blocker works: importing TensorFlow fails in this environment.
  check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                         capture_output=True, text=True)
  assert check.returncode != 0 and "blocked" in check.stderr


def test_sat3d_benchmark_path_builds_without_tensorflow(tmp_path):
  code = (
      "import sys\n"
      "from launch.benchmarks import task_step\n"
      "from launch.benchmarks.suites import eg3d, sat3d\n"
      "from launch.tasks import sat3d as sat3d_task\n"
      "from sat3d_jax.model import Sat3dModel\n"
      "config = task_step.load_config('configs/sat3d_ffhq.py:tiny', {'eval_pairs': 0})\n"
      "model = Sat3dModel(config)\n"
      "setup = task_step.prepare_step(config, task=sat3d_task.make_task(config, model),\n"
      "                               init=False)\n"
      "batch = sat3d.synthetic_batch(config, model, setup)\n"
      "assert batch['views'].shape == (config.global_batch_size, config.views.count, 2)\n"
      "assert 'tensorflow' not in sys.modules\n"
      "print('ok')\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_blocked_env(tmp_path),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
