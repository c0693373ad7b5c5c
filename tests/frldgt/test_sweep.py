"""The LOSO sweep end to end on the tiny generated corpus (launch/tasks/loso.py, launch/sweep.py).

Two folds of the tiny config (two keep every property checked here, at two thirds of the cost of
three) are trained fold by fold and stacked (8 fake devices: the stack is padded with dummy
folds); results.json is checked against scikit-learn on predictions.csv, the two modes against
each other, and a fold-by-fold sweep killed (SIGKILL) between folds and while its second fold
trains is restarted: it must not retrain the first, must resume the second from its checkpoint
and must not change any prediction.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from frldgt_jax import loso_data
from frldgt_jax import results as results_lib
from launch.tasks import frldgt as task_lib
from launch.tasks import loso
from launch.trainer import from_file
from tests.xla import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[2]
FOLDS = "0,1"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
  return tmp_path_factory.getbasetemp() / "frldgt_synthetic"  # shared with test_frldgt_task.py


def tiny_config(root, mode):
  config = from_file(str(REPO / "configs" / "frldgt_composite.py"), "synthetic_tiny")
  config.data.synthetic_root = str(root)
  config.folds = FOLDS
  config.sweep_mode = mode
  return config


@pytest.fixture(scope="module")
def data(synthetic_root):
  return loso_data.load_loso_data(tiny_config(synthetic_root, "per_fold"))


def _sweep(mode, root, data, tmp_path_factory):
  workdir = tmp_path_factory.mktemp(mode)
  return workdir, loso.run_sweep(tiny_config(root, mode), workdir, data=data)


@pytest.fixture(scope="module")
def per_fold(synthetic_root, data, tmp_path_factory):
  return _sweep("per_fold", synthetic_root, data, tmp_path_factory)


@pytest.fixture(scope="module")
def stacked(synthetic_root, data, tmp_path_factory):
  return _sweep("stacked", synthetic_root, data, tmp_path_factory)


def test_results_json_agrees_with_predictions_csv(per_fold, data):
  workdir, results = per_fold
  on_disk = json.loads((workdir / "results.json").read_text())
  p = results_lib.read_predictions_csv(workdir / "predictions.csv")
  labels = [0, 1, 2]
  assert on_disk["UF1"] == pytest.approx(f1_score(p.label, p.prediction, labels=labels,
                                                  average="macro", zero_division=0))
  assert on_disk["UAR"] == pytest.approx(recall_score(p.label, p.prediction, labels=labels,
                                                      average="macro", zero_division=0))
  for name, s in on_disk["per_database"].items():
    sel = p.dataset == name
    assert s["n"] == int(sel.sum())
    assert s["UF1"] == pytest.approx(f1_score(p.label[sel], p.prediction[sel], labels=labels,
                                              average="macro", zero_division=0))
  assert on_disk["UF1"] == pytest.approx(results["UF1"])
  assert on_disk["steps_per_fold"] == 12 and on_disk["wall_time_s"] > 0
  assert on_disk["mode"] == "per_fold"
  for name in ("megc_log.txt", "confusion.png", "results.md"):
    assert (workdir / name).stat().st_size > 0


def test_every_selected_subject_is_held_out_exactly_once(per_fold, data):
  workdir, _ = per_fold
  p = results_lib.read_predictions_csv(workdir / "predictions.csv")
  folds = [data.folds[k] for k in map(int, FOLDS.split(","))]
  keys = [f"{d}/{s}" for d, s in zip(p.dataset, p.subject)]
  # One block of rows per fold, in fold order, holding exactly that subject's clips.
  assert list(dict.fromkeys(keys)) == [f.test_subject for f in folds]
  for f in folds:
    rows = sorted(p.sample[np.asarray(keys) == f.test_subject].tolist())
    assert rows == sorted(data.prepared.sample[f.test_idx].tolist())
    np.testing.assert_array_equal(p.label[np.asarray(keys) == f.test_subject],
                                  data.labels[f.test_idx])


def test_held_out_subject_never_reaches_its_folds_training_batches(data, synthetic_root):
  config = tiny_config(synthetic_root, "stacked")
  config.folds = "all"
  task = task_lib.make_task(config, data=data)
  from launch.trainer import InputSpec  # pylint: disable=g-import-not-at-top
  for step, batch in enumerate(task.input_pipeline(InputSpec())):
    key = "pair_clip" if step < config.dgm_pretrain_steps else "index"
    for m, slot in enumerate(task.slots):
      fold = data.folds[slot.fold]
      assert not np.isin(batch[key][m], fold.test_idx).any()
      subjects = set(data.prepared.subject_keys[batch[key][m]])
      assert fold.test_subject not in subjects


def test_stacked_and_per_fold_sweeps_agree(per_fold, stacked):
  (dir_a, a), (dir_b, b) = per_fold, stacked
  assert b["mode"] == "stacked"
  pa = results_lib.read_predictions_csv(dir_a / "predictions.csv")
  pb = results_lib.read_predictions_csv(dir_b / "predictions.csv")
  np.testing.assert_array_equal(pa.sample, pb.sample)
  assert np.mean(pa.prediction == pb.prediction) >= 0.99
  assert abs(a["UF1"] - b["UF1"]) <= 0.01
  # Same seeds, same batches, same rngs: the logits agree up to float reassociation.
  la, lb = np.load(dir_a / "logits.npz"), np.load(dir_b / "logits.npz")
  np.testing.assert_array_equal(la["index"], lb["index"])
  np.testing.assert_allclose(la["logits"], lb["logits"], atol=2e-3)
  # The stack held dummy folds (2 folds on 8 devices) whose predictions were dropped.
  task_json = json.loads((dir_b / "stacked" / "task.json").read_text())
  assert sum(f["dummy"] for f in task_json["folds"]) == 6


def _sweep_command(workdir, root, cache, folds):
  # JAX hashes every command-line argument that starts with "--xla" into its persistent cache
  # keys (jax/_src/cache_key.py, _hash_xla_flags), so with "--xla_cache_dir=..." the sweep's
  # keys differ from this process's and it recompiles every program the per_fold fixture
  # compiled. absl takes the flag with one dash too: the sweep then reads them from the cache.
  return [sys.executable, str(REPO / "launch" / "sweep.py"),
          "--config", str(REPO / "configs" / "frldgt_composite.py") + ":synthetic_tiny,per_fold",
          f"--config.data.synthetic_root={root}", f"--config.folds={folds}",
          f"--workdir={workdir}", f"-xla_cache_dir={cache}"]


def _checkpointed(fold_dir: pathlib.Path) -> bool:
  """True once a fold has a finalised checkpoint (Orbax renames a step's folder when done)."""
  ckpt = fold_dir / "checkpoints"
  return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def test_killed_sweep_resumes_without_retraining_finished_folds(per_fold, synthetic_root,
                                                                 xla_cache_dir, tmp_path):
  """SIGKILL between folds (as soon as fold 0 has finished), then again while fold 1 trains
  (after its first checkpoint), then the same command: fold 0 is not retrained, fold 1 resumes
  from its checkpoint and finishes once, predictions are unchanged."""
  workdir = tmp_path / "killed"
  command = _sweep_command(workdir, synthetic_root, xla_cache_dir, "0,1")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  fold1 = workdir / "fold_01"
  fold0_done = workdir / "fold_00" / loso.UNIT_FILE
  for kill_when in (fold0_done.exists, lambda: _checkpointed(fold1)):
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 900
    while not kill_when() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.01)
    if proc.poll() is not None:
      pytest.fail("the sweep ended before it could be killed: "
                  + proc.stderr.read().decode()[-3000:])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (fold1 / loso.UNIT_FILE).exists()
  fold0_mtime = fold0_done.stat().st_mtime_ns

  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "fold 0 (" in done.stdout and "finished earlier, skipping" in done.stdout
  assert "resuming from checkpoint step" in done.stdout
  log = (workdir / loso.LOG_FILE).read_text()
  assert log.count("start fold 0") == 1 and log.count("finished fold 0") == 1
  assert log.count("start fold 1") >= 2 and log.count("finished fold 1") == 1
  assert (workdir / "fold_00" / loso.UNIT_FILE).stat().st_mtime_ns == fold0_mtime
  # Same predictions and logits as the uninterrupted sweep's folds 0 and 1.
  reference, _ = per_fold
  ref = np.load(reference / "logits.npz")
  got = np.load(workdir / "logits.npz")
  keep = np.isin(ref["folds"], [0, 1])
  np.testing.assert_array_equal(ref["index"][keep], got["index"])
  np.testing.assert_allclose(ref["logits"][keep], got["logits"], atol=1e-5)


def test_a_config_typo_is_an_error_naming_the_field(tmp_path):
  command = [sys.executable, str(REPO / "launch" / "sweep.py"),
             "--config", str(REPO / "configs" / "frldgt_composite.py") + ":synthetic_tiny",
             "--config.batchsize=4", f"--workdir={tmp_path}"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert done.returncode == 2, done.stderr
  assert "batchsize" in done.stderr and "Traceback" not in done.stderr
  assert len(done.stderr.strip().splitlines()) <= 3, done.stderr
  assert not (tmp_path / "results.json").exists()


def test_a_workdir_of_another_config_is_refused(per_fold, synthetic_root, data):
  workdir, _ = per_fold
  config = tiny_config(synthetic_root, "per_fold")
  config.optimizer.learning_rate = 0.5
  with pytest.raises(ValueError, match="another config"):
    loso.run_sweep(config, workdir, data=data)


LEGACY = REPO / "tests" / "fixtures" / "legacy_ee41ea4"


def test_a_sweep_begun_before_the_restructuring_resumes(per_fold, synthetic_root, data, tmp_path):
  """tests/fixtures/legacy_ee41ea4/sweep: `launch/sweep.py ... :synthetic_tiny,per_fold
  --config.folds=0` run at commit ee41ea4 (task 'frldgt_jax.task', no optimizer.name field, its
  corpus elsewhere). Asked for folds 0 and 1, today's code keeps its fold 0 and trains fold 1."""
  workdir = tmp_path / "legacy"
  shutil.copytree(LEGACY / "sweep", workdir)
  legacy_fingerprint = json.loads((workdir / "sweep.json").read_text())["fingerprint"]
  config = tiny_config(synthetic_root, "per_fold")
  config.folds = "0,1"
  said = []
  loso.run_sweep(config, workdir, data=data, say=said.append)
  assert any("begun by an earlier version" in m for m in said), said
  assert any("fold 0 (" in m and "finished earlier, skipping" in m for m in said), said
  log = (workdir / loso.LOG_FILE).read_text()
  assert log.count("start fold 0") == 1 and log.count("start fold 1") == 1
  info = json.loads((workdir / "sweep.json").read_text())
  assert info["previous_fingerprints"] == [legacy_fingerprint]
  assert info["config"]["task"] == "launch.tasks.frldgt"
  # The old fold 0 and the new fold 1 predict what today's uninterrupted sweep predicts.
  reference, _ = per_fold
  ref, got = np.load(reference / "logits.npz"), np.load(workdir / "logits.npz")
  keep = np.isin(ref["folds"], [0, 1])
  np.testing.assert_array_equal(ref["index"][keep], got["index"])
  np.testing.assert_allclose(ref["logits"][keep], got["logits"], atol=1e-5)
  # Another experiment is still refused: a field added since, at another value than the one
  # the old sweep ran with, and a changed hyperparameter.
  for field, value in (("name", "adam"), ("learning_rate", 0.5)):
    other = tiny_config(synthetic_root, "per_fold")
    other.optimizer[field] = value
    fresh = tmp_path / f"legacy_{field}"
    shutil.copytree(LEGACY / "sweep", fresh)
    with pytest.raises(ValueError, match="another config"):
      loso.run_sweep(other, fresh, data=data)


# README.md, "Use it from Python": its FRL-DGT block needs a trained fold (tests/
# test_use_from_python.py runs the SAT3D blocks). Run in a fresh single-device process: the fold
# was trained on this session's 8 fake devices and must load on 1.
_README_RUNNER = """
import sys
import jax
import numpy as np
from tests.test_use_from_python import readme_python_blocks
line, code = readme_python_blocks()[3]
namespace = {"__name__": "__readme__"}
exec(compile(code, f"README.md:{line}", "exec"), namespace)
assert jax.device_count() == 1, jax.devices()
np.save(sys.argv[1], namespace["probabilities"])
"""


def test_readme_scores_a_clip_with_a_trained_fold(per_fold, data, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  workdir, _ = per_fold
  (tmp_path / "workdirs").mkdir()
  (tmp_path / "workdirs" / "frldgt_composite_synthetic").symlink_to(workdir)
  clip = int(data.folds[0].test_idx[0])
  frames = data.prepared.frames[clip]                                # [T, S, S, 1] uint8
  Image.fromarray(frames[0, :, :, 0]).save(tmp_path / "onset.png")
  Image.fromarray(frames[-1, :, :, 0]).save(tmp_path / "apex.png")
  out = tmp_path / "probabilities.npy"
  env = dict(os.environ, PYTHONPATH=str(REPO),
             XLA_FLAGS=xla_flags(1))
  done = subprocess.run([sys.executable, "-c", _README_RUNNER, str(out)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  probabilities = np.load(out)
  assert probabilities.shape == (data.num_classes,)
  assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
  for name, p in zip(data.class_names, probabilities):
    assert f"'{name}': {round(float(p), 3)}" in done.stdout
  sweep = np.load(workdir / "logits.npz")
  row = np.flatnonzero((sweep["folds"] == 0) & (sweep["index"] == clip))
  assert len(row) == 1
  logits = sweep["logits"][row[0]]
  expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
  np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_load_fold_refuses_what_it_cannot_use(per_fold, data):
  from frldgt_jax import run_io  # pylint: disable=g-import-not-at-top
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  workdir, _ = per_fold
  with pytest.raises(InputError, match="no config.json.*here are fold_00, fold_01$"):
    run_io.load_fold(workdir)
  with pytest.raises(InputError, match="fold 1 was not trained here"):
    run_io.load_fold(workdir / "fold_00", fold=1)
  fold = run_io.load_fold(workdir / "fold_00")
  assert fold.class_names == data.class_names and fold.step == 12
  frame = data.prepared.frames[int(data.folds[0].test_idx[0]), 0]    # [S, S, 1] uint8
  with pytest.raises(InputError, match=r"onset: .*got shape \(31, 31, 1\)"):
    fold.probabilities(frame[1:, 1:], frame)
  with pytest.raises(InputError, match="apex: float frames must lie in"):
    fold.probabilities(frame, frame.astype(np.float32))
  np.testing.assert_allclose(fold.probabilities(frame, frame),
                             fold.probabilities(frame / 255.0, frame[..., 0] / 255.0), atol=1e-6)


def test_a_fold_saved_with_a_retired_alignment_still_loads_and_predicts(per_fold, data,
                                                                       tmp_path):
  """A new run cannot ask for alignment 'detect' (tests/frldgt/test_frldgt_task.py); a fold whose
  config.json names it (trained with a builder before 2.0.0) loads, aligns a clip as its data was
  and predicts as before."""
  from frldgt_jax import clip_input, run_io, video  # pylint: disable=g-import-not-at-top
  workdir, _ = per_fold
  saved = tmp_path / "fold_00"
  shutil.copytree(workdir / "fold_00", saved)
  config = json.loads((saved / "config.json").read_text())
  config["data"]["alignment"] = "detect"
  (saved / "config.json").write_text(json.dumps(config))
  old, today = run_io.load_fold(saved), run_io.load_fold(workdir / "fold_00")
  assert old.config.data.alignment == "detect"
  frame = data.prepared.frames[int(data.folds[0].test_idx[0]), 0]
  np.testing.assert_array_equal(old.probabilities(frame, frame), today.probabilities(frame, frame))
  size = old.config.data.resolution
  clip = video.Clip("c", "c", np.full((4, 2 * size, 2 * size), 128, np.uint8), np.arange(4), None)
  points = np.array([[0.64, 0.76], [1.36, 0.76], [1.0, 1.56]]) * size
  prepared = clip_input.prepare_clip(clip, size=size, alignment=old.config.data.alignment,
                                     match_brightness=True, need_flow=False,
                                     detector=lambda image, name: (points, "stub"))
  assert "as the run's 'detect' data" in prepared.alignment_used
  assert old.probabilities(prepared.onset_frame, prepared.apex_frame).shape == (3,)


def _predict(args, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1))
  return subprocess.run([sys.executable, str(REPO / "launch" / "predict.py"), *args], cwd=tmp_path,
                        env=env, capture_output=True, text=True, timeout=600)


def test_final_model_then_predict_on_mp4_clips(per_fold, synthetic_root, data, tmp_path):
  from frldgt_jax import video  # pylint: disable=g-import-not-at-top
  from frldgt_jax.data import align  # pylint: disable=g-import-not-at-top
  workdir, _ = per_fold
  config = tiny_config(synthetic_root, "per_fold")
  config.final_model = True
  loso.run_sweep(config, workdir, data=data)  # the folds are reused, the final model trained
  info = json.loads((workdir / "final" / "final.json").read_text())
  assert info["clips"] == len(data.labels) and "not an evaluation" in info["note"]
  assert info["step"] == config.total_steps
  assert "final model" in (workdir / loso.LOG_FILE).read_text()
  for name in ("per_subject.png", "learning_curves.png"):
    assert (workdir / name).stat().st_size > 1000

  corpus, _ = loso_data.synthetic_dirs(config)
  manifest = json.loads((corpus / "manifest.json").read_text())
  clips = [c for c in manifest["clips"] if c["database"] == "casme2"][:2]
  (tmp_path / "videos").mkdir()
  mp4 = tmp_path / "videos" / f"{clips[0]['sample']}.mp4"
  video.write_video(mp4, video.read_frame_folder(corpus / clips[0]["raw_dir"]).frames)
  names = (mp4.stem, pathlib.Path(clips[1]["raw_dir"]).name)
  marks = {(c["subject"], name): np.asarray(c["landmarks_onset"])
           for c, name in zip(clips, names)}
  align.write_landmarks_csv(tmp_path / "landmarks.csv", marks)

  done = _predict(["--workdir", str(workdir), "--video", str(mp4), "--out", "one",
                   "--landmarks", "landmarks.csv"], tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  record = json.loads((tmp_path / "one" / "prediction.json").read_text())
  assert record["class"] in data.class_names
  assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
  assert 0 == record["onset"] < record["apex"] < record["frames"] and record["apex_spotted"]
  assert "final" in record["model_used"] and "landmarks CSV" in record["alignment_used"]
  x0, y0, x1, y1 = record["face_box"]
  assert 0 < x1 - x0 < 640 and 0 < y1 - y0 < 480
  for name in ("prediction.png", "motion.png"):
    assert (tmp_path / "one" / name).stat().st_size > 1000

  frames = corpus / clips[1]["raw_dir"]
  done = _predict(["--workdir", str(workdir), "--video", "videos", "--frames", str(frames),
                   "--ensemble", "--apex", "5", "--out", "many", "--landmarks", "landmarks.csv"],
                  tmp_path)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = (tmp_path / "many" / "predictions.csv").read_text().splitlines()
  assert len(rows) == 3
  for name in (mp4.stem, frames.name):
    record = json.loads((tmp_path / "many" / name / "prediction.json").read_text())
    assert "ensemble of 2 fold models" in record["model_used"]
    assert record["apex"] == 5 and not record["apex_spotted"]


def test_predict_without_a_face_or_a_final_model_says_so(per_fold, tmp_path):
  from frldgt_jax import clip_input, video  # pylint: disable=g-import-not-at-top
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from launch.common import faces  # pylint: disable=g-import-not-at-top
  blank = video.Clip("blank", "blank.mp4", np.full((6, 120, 160), 128, np.uint8),
                     np.arange(6), 25.0)
  with pytest.raises(InputError, match="blank.mp4.*no face"):
    clip_input.prepare_clip(blank, size=32, alignment="landmarks68", match_brightness=True,
                            need_flow=False, detector=faces.detect_landmarks)
  workdir = tmp_path / "sweep"
  workdir.mkdir()
  done = _predict(["--workdir", str(workdir), "--video", "x.mp4", "--out", "o"], tmp_path)
  assert done.returncode == 2 and "no final model" in done.stderr
  assert "Traceback" not in done.stderr


def test_dgm_truth_scores_every_kept_checkpoint_of_every_fold(per_fold, data):
  from frldgt_jax import dgm_truth  # pylint: disable=g-import-not-at-top
  workdir, _ = per_fold
  rows, facts = dgm_truth.score_sweep(workdir)
  folds = sorted(map(int, FOLDS.split(",")))
  assert sorted({r["fold"] for r in rows}) == folds and facts["folds"] == len(folds)
  kept = dgm_truth.saved_steps(workdir / "fold_00")
  assert len(kept) >= 2
  for k in folds:
    mine = [r for r in rows if r["fold"] == k]
    assert sorted(r["step"] for r in mine if r["method"] == "dgm") == kept
    assert {r["method"] for r in mine} == {"dgm", "tvl1", "zero"}
    assert all(r["clips"] == len(data.folds[k].test_idx) for r in mine)
    for r in mine:
      if r["method"] == "dgm":
        assert r["stage"] == (1 if r["step"] <= facts["dgm_pretrain_steps"] else 2)
    zero = next(r for r in mine if r["method"] == "zero")
    assert zero["au_epe"] > 0 and zero["au_gain"] == 0 and zero["au_cosine"] == 0
  means = dgm_truth.summary(rows)
  assert [(m["method"], m["step"]) for m in means] == (
      [("dgm", s) for s in kept] + [("tvl1", None), ("zero", None)])
  table = dgm_truth.format_table(means, facts)
  assert table.count("\n| dgm |") == len(kept) and "| tvl1 |" in table
