"""Faults during training, on the driver's small regression task (tests/trainer/driver_task.py).

- SIGKILL several times in a row, at random points and during an Orbax save: each next run
  resumes from the newest complete checkpoint and the end parameters equal an uninterrupted
  run's, bitwise (CPU).
- A damaged newest checkpoint (a byte flipped, a file truncated, deleted or added): named,
  moved aside, the run resumes from the one before; none intact: a clear stop, nothing moved,
  nothing written.
- No space left on the device during a save, from a real (small) tmpfs: Orbax writes through
  TensorStore's own file I/O, so only a real full filesystem exercises it (an LD_PRELOAD shim
  would work too but tests a fake; RLIMIT_FSIZE gives EFBIG, not ENOSPC, and kills with
  SIGXFSZ). Mounting needs root: without it the test is skipped, saying so.
"""
import os
import pathlib
import random
import shutil
import signal
import subprocess
import time

import pytest

from launch import trainer
from launch.common import cli
from launch.trainer import checkpoint as ckpt_lib
from tests.trainer import driver_task
from tests.trainer.test_driver import (ROOT, _assert_trees_equal, _env, _restore_params, _run,
                                       _train_cmd)

STEPS = 40


def _config(total_steps=STEPS, keep=10):
  config = driver_task.get_config()
  config.total_steps, config.keep_checkpoints, config.tensorboard = total_steps, keep, False
  return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Params of an uninterrupted in-process run after every checkpoint (10, 20, 30, 40); the kill
  test compares train.py's runs with it, so it also shows both give the same bits."""
  workdir = tmp_path_factory.mktemp("reference")
  trainer.train_and_evaluate(_config(), workdir)
  return {step: _restore_params(workdir, step)[1] for step in (10, 20, 30, 40)}


def test_sigkill_repeatedly_including_during_saves_then_resume_is_bitwise(recorder, tmp_path,
                                                                            reference):
  """Three SIGKILLs in a row (one at a random step after the first checkpoint, two while Orbax
  writes a checkpoint), then
  a run to the end: the same parameters as an uninterrupted run, and no partial checkpoint
  ever restored (each resume prints the step it restored, a complete one)."""
  workdir = tmp_path / "killed"
  rng = random.Random(19)
  for kill in ("at a random step", "during a save", "during a save"):
    before = set(ckpt_lib.saved_steps(workdir / "checkpoints"))
    proc = subprocess.Popen(_train_cmd(workdir, f"total_steps={STEPS}", "seconds_per_step=0.05",
                                       "tensorboard=False"),
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    random_wait = rng.uniform(0.5, 2.0)
    started = None
    while time.time() < deadline and proc.poll() is None:
      ckpts = workdir / "checkpoints"
      if kill == "during a save":
        if ckpts.is_dir() and any("tmp" in p.name for p in ckpts.iterdir()):
          break
      elif ckpt_lib.saved_steps(ckpts):
        started = started or time.time()
        if time.time() - started > random_wait:
          break
      time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill ({kill})"
    name = f"SIGKILL {kill}, then resume"
    recorder.count(name, "accepted")
    after = ckpt_lib.saved_steps(workdir / "checkpoints")
    assert max(after, default=0) < STEPS and (not before or max(after) >= max(before))
  done = _run(workdir, f"total_steps={STEPS}", "tensorboard=False")
  assert "resuming from checkpoint step" in done.stdout
  _assert_trees_equal(_restore_params(workdir, STEPS)[1], reference[STEPS])


def _damage(step_dir: pathlib.Path, how: str) -> str:
  files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"
                 and p.name != ckpt_lib.CHECKSUM_FILE)
  target = files[0]
  data = target.read_bytes()
  if how == "byte flipped":
    target.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1])
                       + data[len(data) // 2 + 1:])
  elif how == "truncated":
    target.write_bytes(data[:len(data) // 3])
  elif how == "file deleted":
    target.unlink()
  elif how == "file added":
    (target.parent / "stray").write_bytes(b"x")
  return str(target.relative_to(step_dir))


@pytest.fixture(scope="module")
def thirty_steps(tmp_path_factory):
  """A workdir trained to step 30 (checkpoints 10, 20, 30), copied by each test."""
  workdir = tmp_path_factory.mktemp("thirty")
  trainer.train_and_evaluate(_config(30), workdir)
  return workdir


@pytest.mark.parametrize("how", ["byte flipped", "truncated", "file deleted", "file added"])
def test_damaged_latest_checkpoint_is_named_and_the_one_before_is_used(
    recorder, tmp_path, thirty_steps, reference, capsys, how):
  workdir = tmp_path / "run"
  shutil.copytree(thirty_steps, workdir)
  _damage(workdir / "checkpoints" / "30", how)
  result = trainer.train_and_evaluate(_config(), workdir)
  out = capsys.readouterr().out
  assert "checkpoint step 30" in out and "is damaged" in out, out
  assert "resuming from checkpoint step 20" in out
  assert (workdir / "checkpoints" / ckpt_lib.DAMAGED_DIR / "30").is_dir()
  assert result.step == STEPS
  _assert_trees_equal(_restore_params(workdir, STEPS)[1], reference[STEPS])
  recorder.count(f"damaged latest checkpoint ({how})", "accepted")


def test_no_intact_checkpoint_is_a_clear_stop_that_moves_and_writes_nothing(
    recorder, tmp_path, thirty_steps):
  workdir = tmp_path / "run"
  shutil.copytree(thirty_steps, workdir)
  for step in (10, 20, 30):
    _damage(workdir / "checkpoints" / str(step), "truncated")
  listing = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  with pytest.raises(trainer.CheckpointError, match=r"no intact checkpoint .*step 30: .*"
                     r"Not starting over from step 0"):
    trainer.train_and_evaluate(_config(), workdir)
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == listing
  assert trainer.CheckpointError in cli.user_errors()  # the command line: one line, exit 2
  recorder.count("no intact checkpoint", "refused")


def test_missing_checksum_record_restores_unverified_with_a_note(tmp_path, thirty_steps,
                                                                 reference, capsys):
  """Killed between Orbax's commit and the record: the (complete) step is used, and said so."""
  workdir = tmp_path / "run"
  shutil.copytree(thirty_steps, workdir)
  (workdir / "checkpoints" / "30" / ckpt_lib.CHECKSUM_FILE).unlink()
  trainer.train_and_evaluate(_config(), workdir)
  out = capsys.readouterr().out
  assert "step 30 has no checksum record" in out and "resuming from checkpoint step 30" in out
  _assert_trees_equal(_restore_params(workdir, STEPS)[1], reference[STEPS])


@pytest.fixture
def small_filesystem(tmp_path):
  """A 16 MiB tmpfs mounted at tmp_path/disk (needs root; skipped, saying why, without)."""
  mount = tmp_path / "disk"
  mount.mkdir()
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs to fill (needs root): {proc.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: pathlib.Path, leave: int) -> pathlib.Path:
  """Writes a ballast file until only about `leave` bytes are free."""
  ballast = mount / "ballast"
  stat = os.statvfs(mount)
  free = stat.f_bavail * stat.f_frsize
  with open(ballast, "wb") as f:
    f.write(b"\0" * max(free - leave, 0))
  return ballast


def test_no_space_left_during_a_save(recorder, small_filesystem, reference, thirty_steps):
  """The disk fills after step 20: the save of step 30 fails with a clear CheckpointError,
  step 20 stays intact, and once space is freed the run resumes and ends bitwise equal."""
  workdir = small_filesystem / "run"
  shutil.copytree(thirty_steps, workdir)
  shutil.rmtree(workdir / "checkpoints" / "30")
  ballast = _fill(small_filesystem, leave=32 << 10)  # logs fit, a checkpoint does not
  with pytest.raises(trainer.CheckpointError, match=r"could not write checkpoint step 30 .*"
                     r"No space left on device; the previous checkpoint \(step 20\) is intact"):
    trainer.train_and_evaluate(_config(), workdir)
  assert ckpt_lib.saved_steps(workdir / "checkpoints")[0] == 20
  assert ckpt_lib.damage(workdir / "checkpoints" / "20") is None
  _assert_trees_equal(_restore_params(workdir, 20)[1], reference[20])
  ballast.unlink()
  trainer.train_and_evaluate(_config(), workdir)
  _assert_trees_equal(_restore_params(workdir, STEPS)[1], reference[STEPS])
  recorder.count("no space left during a save", "refused")
