"""The generic training driver: sharding, checkpoints, resume, non-finite guard, multi-process.

Uses tests/trainer/driver_task.py (a small regression task) through the real entry point
`launch/train.py` in subprocesses, and `train_and_evaluate` in-process where that is enough.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tensorboard.backend.event_processing import event_accumulator

from launch.trainer import train_and_evaluate
from launch.trainer import cli
from launch.trainer import mesh as mesh_lib
from tests.no_tensorflow import blocked_env
from tests.trainer import driver_task
from tests.xla import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "tests/trainer/driver_task.py"
# A subprocess imports JAX and TensorFlow and compiles: minutes where another CPU-heavy job shares
# a 2-core machine (pytest-timeout stops a whole test at 900 s anyway).
TIMEOUT = 600


def _env(devices: int = 8) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = xla_flags(devices)
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return env


def _train_cmd(workdir, *overrides, config=CONFIG):
  return [sys.executable, str(ROOT / "launch" / "train.py"), f"--config={config}",
          f"--workdir={workdir}", *[f"--config.{o}" for o in overrides]]


def _run(workdir, *overrides, devices=8, check=True):
  proc = subprocess.run(_train_cmd(workdir, *overrides), cwd=ROOT, env=_env(devices),
                        capture_output=True, text=True, timeout=TIMEOUT)
  if check and proc.returncode != 0:
    raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
  return proc


def _restore_params(workdir, step=None):
  """Reads the saved params of a run with Orbax directly (independent of the driver)."""
  directory = pathlib.Path(workdir) / "checkpoints"
  if step is None:
    step = max(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  checkpointer = ocp.StandardCheckpointer()
  path = directory / str(step) / "state"
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  restored = checkpointer.restore(path, target)
  return step, jax.tree.map(np.asarray, restored["params"])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """One uninterrupted 30-step run on 8 devices keeping every checkpoint (10, 20, 30): the
  tests compare at steps 20 and 30. In this process (the driver of launch/train.py, without a
  start-up of its own): the runs compared with it are launch/train.py's."""
  workdir = tmp_path_factory.mktemp("reference")
  config = driver_task.get_config()
  config.total_steps = 30
  config.keep_checkpoints = 10
  assert train_and_evaluate(config, workdir).step == 30
  return workdir


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_default_workdir_named_after_config():
  assert cli.default_workdir("configs/sat3d_ffhq.py") == pathlib.Path("workdirs/sat3d_ffhq")
  assert cli.default_workdir("configs/sat3d_ffhq.py:tiny") == pathlib.Path(
      "workdirs/sat3d_ffhq_tiny")


def test_global_batch_is_split_across_eight_devices(tmp_path):
  assert jax.device_count() == 8
  config = driver_task.get_config()
  config.total_steps = 5
  result = train_and_evaluate(config, tmp_path)
  mesh = result.mesh
  assert mesh.size == 8
  batch = mesh_lib.global_batch(
      {"x": np.zeros((32, 16), np.float32), "y": np.zeros((32, 1), np.float32)}, mesh, 0)
  shards = batch["x"].addressable_shards
  assert len(shards) == 8 and {s.data.shape for s in shards} == {(4, 16)}
  assert len({s.device for s in shards}) == 8
  compiled = result.train_step.lower(result.state, result.frozen, batch,
                                     np.int32(5), result.model_ids).compile()
  batch_sharding = compiled.input_shardings[0][2]["x"]
  assert batch_sharding.shard_shape((32, 16)) == (4, 16)
  state_sharding = jax.tree.leaves(compiled.input_shardings[0][0])[0]
  assert state_sharding.is_fully_replicated


def test_metrics_tensorboard_images_and_run_info(tmp_path):
  config = driver_task.get_config()
  config.total_steps = 10
  config.tensorboard = True
  train_and_evaluate(config, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "loss" in r]
  assert [r["step"] for r in train] == [5, 10]
  assert all(np.isfinite(r["loss"]) for r in train)
  assert any("eval/mse" in r for r in records)
  # TensorBoard reads the event files (written by tensorboardX, no TensorFlow): the same losses
  # at the same steps as metrics.jsonl, and the image summary.
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"),
                                              size_guidance={"images": 0, "scalars": 0})
  events.Reload()
  logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
  assert [s for s, _ in logged] == [5, 10]
  np.testing.assert_allclose([v for _, v in logged], [r["loss"] for r in train], rtol=1e-6)
  assert any(t.startswith("eval/") for t in events.Tags()["scalars"])
  assert "w1" in events.Tags()["images"]
  assert list((tmp_path / "images").glob("w1_*.png"))
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 10
  assert "jax" in json.loads((tmp_path / "versions.json").read_text())


def test_evaluation_before_the_first_step_and_every_eval_every(tmp_path, capsys):
  config = driver_task.get_config()
  config.total_steps, config.eval_every = 10, 5
  train_and_evaluate(config, tmp_path)
  config.total_steps = 15  # resumed: the step-0 evaluation is not repeated
  train_and_evaluate(config, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [r for r in records if "eval/mse" in r]
  assert [r["step"] for r in evals] == [0, 5, 10, 15]
  assert all(set(r) == {"step", "eval/mse", "eval/count"} for r in evals)  # no steps/s
  assert evals[-1]["eval/mse"] < evals[0]["eval/mse"]
  train = [r for r in records if "loss" in r]
  assert [r["step"] for r in train] == [5, 10, 15]
  assert all(r["steps_per_sec"] > 0 for r in train)
  printed = capsys.readouterr().out
  assert (f"train loss (mean over each logged interval): {train[0]['loss']:.5g} at step 5 -> "
          f"{train[1]['loss']:.5g} at step 10") in printed


# SIGKILL and resume (several kills in a row, also during an Orbax save), damaged checkpoints and
# a full disk: tests/robustness/test_faults.py.


def test_same_command_with_more_steps_continues_also_on_fewer_devices(tmp_path, reference_run):
  first = _run(tmp_path, "total_steps=10")
  assert "resuming" not in first.stdout
  second = _run(tmp_path, "total_steps=20")
  assert "resuming from checkpoint step 10" in second.stdout
  steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()
           if "loss" in json.loads(l)]
  assert steps == [5, 10, 15, 20]
  _, params = _restore_params(tmp_path, 20)
  _assert_trees_equal(params, _restore_params(reference_run, 20)[1])
  # The checkpoint written on 8 devices resumes on 4.
  third = _run(tmp_path, "total_steps=30", devices=4)
  assert "on 4 device(s)" in third.stdout and "resuming from checkpoint step 20" in third.stdout
  _, a = _restore_params(tmp_path, 30)
  _, b = _restore_params(reference_run, 30)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_run_and_latest_checkpoint_is_finite(tmp_path):
  proc = _run(tmp_path, "total_steps=40", "nan_at_step=23", check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert "non-finite loss" in proc.stderr and "at step 23" in proc.stderr
  step, params = _restore_params(tmp_path)
  assert step == 20
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_config_typo_is_an_error(tmp_path):
  proc = _run(tmp_path, "totl_steps=5", check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert "totl_steps" in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


def test_missing_weights_on_a_fresh_clone_are_one_short_message(tmp_path):
  """The default SAT3D config without converted weights: what to do, exit 2, no traceback and
  none of TensorFlow's start-up logging."""
  proc = subprocess.run([sys.executable, str(ROOT / "launch" / "train.py"),
                         "--config=configs/sat3d_ffhq.py", f"--workdir={tmp_path}"],
                        cwd=ROOT, env={k: v for k, v in _env(1).items()
                                       if k != "TF_CPP_MIN_LOG_LEVEL"},
                        capture_output=True, text=True, timeout=TIMEOUT)
  assert proc.returncode == 2, proc.stderr
  err = proc.stderr.strip().splitlines()
  assert err[0].startswith("error: EG3D generator not found at 'weights/eg3d/ffhq512-128'")
  assert "python launch/convert_eg3d.py" in proc.stderr and len(err) <= 8, proc.stderr
  for chatter in ("Traceback", "oneDNN", "absl::InitializeLog", "deprecated"):
    assert chatter not in proc.stderr, proc.stderr
  # --debug shows the traceback behind the message. (Where TensorFlow cannot be imported: its
  # import is most of a start-up, and the traceback does not depend on it.)
  debug = subprocess.run([sys.executable, str(ROOT / "launch" / "train.py"), "--debug",
                          "--config=configs/sat3d_ffhq.py", f"--workdir={tmp_path}"],
                         cwd=ROOT, env=blocked_env(tmp_path / "env"), capture_output=True,
                         text=True, timeout=TIMEOUT)
  assert debug.returncode != 0 and "Traceback" in debug.stderr
  assert "EG3D generator not found at 'weights/eg3d/ffhq512-128'" in debug.stderr


def test_a_batch_that_does_not_divide_over_the_devices(capsys):
  """All devices by default: a global batch of 4 on 8 devices trains on 4 of them (one note);
  an explicit device count the batch does not divide over is a config error."""
  from launch import trainer  # pylint: disable=g-import-not-at-top
  config = driver_task.get_config()
  task = trainer.Task(init_state=lambda rng: {"w": jax.numpy.zeros(())},
                      train_step=None, input_pipeline=None, global_batch_size=4)
  assert jax.device_count() == 8
  assert trainer.plan_run(config, task).mesh.size == 4
  assert "does not divide over 8 devices: training on 4" in capsys.readouterr().out
  with config.unlocked():
    config.num_devices = 3
  with pytest.raises(trainer.ConfigError, match="config.num_devices=3"):
    trainer.plan_run(config, task)


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path):
  proc = subprocess.Popen(_train_cmd(tmp_path, "total_steps=400", "checkpoint_every=1000",
                                     "seconds_per_step=0.1"),
                          cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + TIMEOUT
  metrics = tmp_path / "metrics.jsonl"
  while time.time() < deadline and not (metrics.exists() and metrics.read_text()):
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=TIMEOUT)
  assert proc.returncode == 128 + signal.SIGTERM, err
  step, params = _restore_params(tmp_path)
  assert 5 <= step < 400
  assert f"stopped by SIGTERM at step {step}" in out


def test_stacked_models_are_sharded_and_independent(tmp_path):
  config = driver_task.get_config()
  config.total_steps = 5
  config.num_models = 8
  result = train_and_evaluate(config, tmp_path / "stacked")
  w = result.state["params"]["w1"]
  assert w.shape[0] == 8
  assert {s.data.shape[0] for s in w.addressable_shards} == {1}
  assert not np.allclose(np.asarray(w[0]), np.asarray(w[1]))
  # Model m of the stack equals model m trained alone (same rngs via model_ids, same batches).
  alone = driver_task.get_config()
  alone.total_steps = 5
  alone.model_id = 3
  single = train_and_evaluate(alone, tmp_path / "alone")
  np.testing.assert_allclose(np.asarray(single.state["params"]["w1"]), np.asarray(w[3]),
                             rtol=1e-5, atol=1e-6)
  config.model_sharding = "batch"
  replicated = train_and_evaluate(config, tmp_path / "replicated")
  np.testing.assert_allclose(np.asarray(replicated.state["params"]["w1"]), np.asarray(w),
                             rtol=1e-5, atol=1e-6)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path, reference_run):
  multi = tmp_path / "multi"
  port = _free_port()
  procs = [subprocess.Popen(
      _train_cmd(multi, "total_steps=20") + [f"--coordinator_address=localhost:{port}",
                                             "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=TIMEOUT) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f"{out}\n{err}"
  assert "on 8 device(s)" in outs[0][0]
  _, a = _restore_params(multi, 20)
  _, b = _restore_params(reference_run, 20)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_a_task_module_that_does_not_exist_is_a_config_error():
  from launch import trainer  # pylint: disable=g-import-not-at-top
  config = driver_task.get_config()
  for name, message in (("launch.tasks.nope", "does not exist"), ("", "config.task is empty")):
    with config.unlocked():
      config.task = name
    with pytest.raises(trainer.ConfigError, match=message):
      trainer.load_task(config)
