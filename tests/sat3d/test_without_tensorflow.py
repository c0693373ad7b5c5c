"""The main job where TensorFlow is not installed (the GPU image): SAT3D's tiny config trains,
evaluates, checkpoints, resumes and writes TensorBoard events with its pairs drawn by NumPy;
resuming that run where TensorFlow would draw the pairs is refused in one line; the commands
that need TensorFlow say what to install, in one line, exit status 2.
"""
import json
import subprocess
import sys

from tests.no_tensorflow import ROOT, blocked_env

TINY = "configs/sat3d_ffhq.py:tiny"
# Smaller than :tiny's batch 4 of 2 views (what is checked does not depend on the shapes): its
# programs compile and run in less time.
SHORT = ["--config.log_every=2", "--config.checkpoint_every=2", "--config.eval_every=2",
         "--config.global_batch_size=2", "--config.views.count=1", "--config.eval_pairs=2",
         "--config.summary_every=0", "--config.pair_pool=0"]


def _run(args, env, timeout=600):  # minutes where another CPU-heavy job shares 2 cores
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _one_error_line(proc, *fragments):
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, proc.stderr
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


def test_sat3d_tiny_trains_and_resumes_without_tensorflow(tmp_path):
  cache = tmp_path / "xla_cache"  # the second run reads the first one's programs
  env = blocked_env(tmp_path, JAX_COMPILATION_CACHE_DIR=str(cache),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  workdir = tmp_path / "run"
  train = ["launch/train.py", f"--config={TINY}", f"--workdir={workdir}", *SHORT]
  first = _run([*train, "--config.total_steps=4"], env)
  assert first.returncode == 0, first.stdout + first.stderr
  assert "input pairs/numpy" in first.stdout
  resumed = _run([*train, "--config.total_steps=6"], env)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert "resuming from checkpoint step 4" in resumed.stdout
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r] == [2, 4, 6]
  assert [r["step"] for r in records if "eval/loss" in r] == [0, 2, 4, 6]
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()
                if p.name.isdigit())[-1] == "6"
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))

  # Where TensorFlow is installed, 'auto' draws with it: this run's pairs would change.
  other = _run([*train, "--config.total_steps=8"], dict(env, PYTHONPATH=str(ROOT)))
  _one_error_line(other, "input stream 'pairs/numpy'", "'pairs/tensorflow'")


def test_commands_that_need_tensorflow_say_what_to_install(tmp_path):
  env = blocked_env(tmp_path)
  for command in (["launch/sweep.py", "--config=configs/frldgt_composite.py:synthetic_tiny"],
                  ["launch/prepare_data.py"]):
    _one_error_line(_run(command, env), "needs tensorflow",
                    "pip install 'sat3d-frldgt-jax[tensorflow]'")
  # FRL-DGT's training reads TFDS datasets: the driver's command says so, not a traceback.
  frldgt = _run(["launch/train.py", "--config=configs/frldgt_composite.py:synthetic_tiny",
                 f"--workdir={tmp_path / 'frldgt'}"], env)
  _one_error_line(frldgt, "needs tensorflow")
  # --help works without it (absl ends --help with status 1).
  usage = _run(["launch/sweep.py", "--help"], env)
  assert "Leave-one-subject" in usage.stdout and "error" not in usage.stderr, usage.stderr
