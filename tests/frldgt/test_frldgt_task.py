"""FRL-DGT task, configs and results files, on the tiny generated corpus (no full training run).

References: LOSO leakage is checked against the fold's own index sets; stacked and fold-by-fold
batches against each other; class weights against losses.class_weights; scores against
scikit-learn's f1_score / recall_score.
"""
import csv
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, recall_score

from frldgt_jax import losses, loso_data
from frldgt_jax import results as results_lib
from launch.tasks import frldgt as task_lib
from launch.trainer import InputSpec, from_file
from tests.xla import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ["frldgt_composite", "frldgt_casme2", "frldgt_samm", "frldgt_smic",
           "frldgt_casme2_5class"]


def tiny_config(tmp_root, variant="synthetic_tiny"):
  config = from_file(str(REPO / "configs" / "frldgt_composite.py"), variant)
  config.data.synthetic_root = str(tmp_root)
  return config


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
  """One tiny corpus per test session (test_sweep.py finds and reuses it)."""
  return tmp_path_factory.getbasetemp() / "frldgt_synthetic"


@pytest.fixture(scope="module")
def tiny(synthetic_root):
  config = tiny_config(synthetic_root)
  return config, loso_data.load_loso_data(config)


def _load_config(name, arg):
  return from_file(str(REPO / "configs" / f"{name}.py"), arg)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "synthetic", "synthetic_tiny,zero,shuffled,per_fold,bf16"])
def test_every_config_and_variant_is_consistent(name, arg):
  config = _load_config(name, arg)
  loso_data.validate_config(config)
  assert config.task == "launch.tasks.frldgt" and config.model.image_size == config.data.resolution
  assert config.model.num_classes == len(config.data.class_names)
  if "zero" in arg:
    assert config.model.displacement == "zero" and config.labels_shuffled
    assert config.sweep_mode == "per_fold" and config.model.compute_dtype == "bfloat16"
  # The resolution is shared by reference: overriding it moves the model's size too.
  config.data.resolution = 96
  assert config.model.image_size == 96


def test_the_paper_variant_is_one_modifier_away_from_the_recipe():
  """':paper' restores the DGM training the paper states (end to end at the model's step size,
  on the resampled frames) and, on the generated corpus, the stage 1 used before the DGM study;
  every other field is the recipe's."""
  fields = ("total_steps", "dgm_pretrain_steps", "optimizer.dgm_learning_rate",
            "optimizer.dgm_stage2_lr_scale", "model.dgm.smooth_weight",
            "augment.dgm_on_stored_frames")
  def at(flat, path):  # (the dict holding the field, its key)
    *parents, leaf = path.split(".")
    for key in parents:
      flat = flat[key]
    return flat, leaf
  def values(arg):
    flat = json.loads(_load_config("frldgt_casme2", arg).to_json_best_effort())
    return flat, tuple(node[leaf] for node, leaf in (at(flat, path) for path in fields))
  for arg, recipe, paper in (
      ("synthetic,reduced", (800, 600, 5e-3, 0.1, 0.01, True), (400, 200, 2e-3, 1.0, 0.0, False)),
      ("synthetic", (1000, 600, 5e-3, 0.1, 0.01, True), (700, 300, 2e-3, 1.0, 0.0, False)),
      ("", (3000, 500, 1e-3, 0.1, 0.1, True), (3000, 500, 1e-3, 1.0, 0.1, False))):
    ours, got = values(arg)
    theirs, got_paper = values(f"{arg},paper" if arg else "paper")
    assert got == recipe and got_paper == paper, arg
    for flat in (ours, theirs):
      flat.pop("variant")
      for path in fields:
        node, leaf = at(flat, path)
        node.pop(leaf)
    assert ours == theirs, arg


def test_unknown_variant_is_named():
  for name in CONFIGS:
    with pytest.raises(ValueError, match="synthtic"):
      _load_config(name, "synthtic")


def test_a_retired_alignment_is_refused_for_a_new_run_naming_its_replacement(tmp_path):
  """'detect' (Haar cascades, builders before 2.0.0): one `error:` line at config validation,
  before any data is generated or any workdir written; runs saved with it still load and predict
  (tests/frldgt/test_sweep.py)."""
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  config = _load_config("frldgt_composite", "synthetic_tiny")
  config.data.alignment = "detect"
  with pytest.raises(InputError, match="'detect'.*use 'landmarks68'"):
    loso_data.validate_config(config)
  config.data.alignment = "haar"
  with pytest.raises(InputError, match="must be one of landmarks68, landmarks, cropped"):
    loso_data.validate_config(config)
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1))
  workdir = tmp_path / "run"
  proc = subprocess.run([sys.executable, str(REPO / "launch" / "train.py"),
                         "--config=configs/frldgt_composite.py:synthetic_tiny",
                         f"--config.data.synthetic_root={tmp_path / 'corpus'}",
                         "--config.data.alignment=detect", f"--workdir={workdir}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "'landmarks68'" in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert not workdir.exists() and not (tmp_path / "corpus").exists()


def test_missing_real_dataset_says_how_to_prepare_it(tmp_path):
  config = _load_config("frldgt_samm", "")
  config.data.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="prepare_data.py --dataset samm"):
    loso_data.load_loso_data(config)


def test_synthetic_dataset_is_generated_and_every_subject_is_one_fold(tiny):
  config, data = tiny
  corpus, _ = loso_data.synthetic_dirs(config)
  manifest = json.loads((corpus / "manifest.json").read_text())
  composite = [c for c in manifest["clips"] if c["in_composite"]]
  assert len(data.labels) == len(composite)
  subjects = sorted({f"{c['database']}/{c['subject']}" for c in composite})
  assert sorted(f.test_subject for f in data.folds) == subjects
  held_out = np.concatenate([f.test_idx for f in data.folds])
  assert sorted(held_out.tolist()) == list(range(len(data.labels)))  # each clip exactly once
  for f in data.folds:
    keys = data.prepared.subject_keys
    assert set(keys[f.test_idx]) == {f.test_subject}
    assert f.test_subject not in set(keys[f.train_idx])


def test_fold_selection(tiny):
  config, data = tiny
  assert loso_data.selected_folds(config, data.folds) == list(range(len(data.folds)))
  subject = data.folds[3].test_subject
  config = config.copy_and_resolve_references()
  config.folds = f"1,{subject}"
  assert loso_data.selected_folds(config, data.folds) == [1, 3]
  for bad, message in (("99", "does not exist"), ("nobody", "neither"), ("1,1", "twice")):
    config.folds = bad
    with pytest.raises(ValueError, match=message):
      loso_data.selected_folds(config, data.folds)


def _batches(task, start, count, spec=None):
  spec = spec or InputSpec(start_step=start)
  it = task.input_pipeline(spec)
  return [next(it) for _ in range(count)]


def test_batches_never_contain_the_held_out_subject_and_carry_fold_weights(tiny):
  config, data = tiny
  config = config.copy_and_resolve_references()
  config.class_balanced = True
  task = task_lib.make_task(config, data=data, device_multiple=1)
  pre = config.dgm_pretrain_steps
  slots = task.slots
  stage1 = _batches(task, 0, pre)
  stage2 = _batches(task, pre, config.total_steps - pre)
  assert len(stage1) == pre and set(stage1[0]) == {"pair_clip", "pair_i", "pair_j"}
  assert set(stage2[0]) == {"index", "label", "class_weights"}
  for m, slot in enumerate(slots):
    fold = data.folds[slot.fold]
    for b in stage1:
      assert np.isin(b["pair_clip"][m], fold.train_idx).all()
      assert (b["pair_i"][m] < b["pair_j"][m]).all() and (b["pair_j"][m] < config.data.frames).all()
    weights = losses.class_weights(data.labels[fold.train_idx], data.num_classes)
    for b in stage2:
      assert b["index"].shape == (len(slots), config.batch_size)
      assert np.isin(b["index"][m], fold.train_idx).all()
      assert not np.isin(b["index"][m], fold.test_idx).any()
      np.testing.assert_array_equal(b["label"][m], data.labels[b["index"][m]])
      np.testing.assert_allclose(b["class_weights"][m], np.tile(weights, (config.batch_size, 1)))


def test_pipeline_is_step_indexed_and_splits_over_processes(tiny):
  config, data = tiny
  task = task_lib.make_task(config, data=data, device_multiple=1)
  every = _batches(task, 0, config.total_steps)
  resumed = _batches(task, 6, config.total_steps - 6)
  for a, b in zip(every[6:], resumed):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  for axis in (0, 1):
    halves = [_batches(task, 5, 2, InputSpec(5, i, 2, axis)) for i in range(2)]
    for step in range(2):
      for key, value in every[5 + step].items():
        joined = np.concatenate([halves[0][step][key], halves[1][step][key]], axis=axis)
        np.testing.assert_array_equal(joined, value)
  uneven = config.batch_size + 1  # processes the batch axis does not divide over
  with pytest.raises(ValueError, match=f"cannot be split evenly over {uneven} processes"):
    _batches(task, 5, 1, InputSpec(5, 0, uneven, 1))


def test_a_fold_alone_gets_its_batches_and_identity_from_the_stack(tiny):
  config, data = tiny
  stacked = task_lib.make_task(config, data=data, device_multiple=1)
  alone = task_lib.make_task(config, data=data, fold_ids=[4], stacked=False)
  assert alone.num_models == 0 and alone.model_ids == (4,)
  assert stacked.num_models == len(data.folds) and stacked.model_ids[4] == 4
  for a, b in zip(_batches(stacked, 0, config.total_steps), _batches(alone, 0, config.total_steps)):
    for key in a:
      np.testing.assert_array_equal(a[key][4], b[key])


def test_stack_is_padded_with_dummy_folds_to_the_device_count(tiny):
  config, data = tiny
  assert jax.device_count() == 8  # tests/conftest.py
  task = task_lib.make_task(config, data=data, fold_ids=[0, 2, 5])
  assert task.num_models == 8
  assert [s.fold for s in task.slots[:3]] == [0, 2, 5]
  assert all(s.dummy for s in task.slots[3:]) and not any(s.dummy for s in task.slots[:3])
  ids = [s.model_id for s in task.slots]
  assert len(set(ids)) == 8 and min(ids[3:]) >= len(data.folds)
  config = config.copy_and_resolve_references()
  config.model_sharding = "batch"
  assert task_lib.make_task(config, data=data, fold_ids=[0, 2, 5]).num_models == 3


def test_shuffled_labels_stay_inside_each_folds_training_clips(tiny):
  config, data = tiny
  config = config.copy_and_resolve_references()
  config.labels_shuffled = True
  changed = 0
  for fold in data.folds:
    shuffled = loso_data.fold_labels(config, data, fold)
    np.testing.assert_array_equal(shuffled[fold.test_idx], data.labels[fold.test_idx])
    assert sorted(shuffled[fold.train_idx]) == sorted(data.labels[fold.train_idx])
    np.testing.assert_array_equal(shuffled, loso_data.fold_labels(config, data, fold))
    changed += int((shuffled != data.labels).sum())
  assert changed > 0
  task = task_lib.make_task(config, data=data, device_multiple=1)
  batch = _batches(task, config.dgm_pretrain_steps, 1)[0]
  for m, slot in enumerate(task.slots):
    expected = loso_data.fold_labels(config, data, data.folds[slot.fold])[batch["index"][m]]
    np.testing.assert_array_equal(batch["label"][m], expected)


STILL = {"max_rotation_deg": 0.0, "max_scale": 0.0, "max_shift": 0.0, "flip_prob": 0.0}


@pytest.fixture(scope="module")
def still(tiny):
  """Fold 1 of the tiny model with no geometric augmentation (nothing is resampled): one stage-1
  step and two stage-2 steps (the first at warmup learning rate 0) from its initial state."""
  config, data = tiny
  config = config.copy_and_resolve_references()
  config.augment.update(STILL)
  task = task_lib.make_task(config, data=data, fold_ids=[1], stacked=False)
  states = [jax.jit(task.init_state)(jax.random.key(0))]
  batches = _batches(task, 0, 1) + _batches(task, config.dgm_pretrain_steps, 2)
  step, frozen, metrics = jax.jit(task.train_step), task.frozen(), []
  for k, batch in enumerate(batches):
    state, m = step(states[-1], frozen, batch, jax.random.key(k + 1))
    states.append(state)
    metrics.append(m)
  return config, data, batches, states, metrics


def _moved(a, b):
  return jax.tree.map(lambda x, y: np.asarray(y) - np.asarray(x), a, b)


def test_stage_one_trains_only_the_dgm_and_stage_two_everything(still):
  config, _, _, (state, after1, after2, after3), (m1, m2, _) = still
  def changed(a, b):
    return jax.tree.map(lambda d: bool(np.any(d != 0)), _moved(a, b))
  moved = changed(state["params"], after1["params"])
  assert moved["dgm"]["head"]["kernel"]  # the zero-initialised head moves first
  others = {k: v for k, v in moved.items() if k != "dgm"}
  assert not any(jax.tree.leaves(others))
  assert float(m1["stage"]) == 1 and np.isfinite(float(m1["loss"]))
  assert not any(jax.tree.leaves(changed(after1["params"], after2["params"])))  # warmup: lr 0
  moved = changed(after1["params"], after3["params"])
  assert moved["head"]["kernel"] and moved["embed_displacement"]["kernel"]
  assert all(jax.tree.leaves(moved["dgm"]))  # the head is non-zero now: all of the DGM trains
  assert float(m2["stage"]) == 2 and float(m2["ce"]) > 0
  # L = L_CE + lambda * L_DGM
  np.testing.assert_allclose(float(m2["loss"]), float(m2["ce"]) + config.model.dgm_weight *
                             float(m2["dgm_loss"]), rtol=1e-5)


def test_the_dgms_stage_two_step_scale_and_its_field_of_the_stored_pair(still):
  """From the same state, batches and keys, with nothing resampled (so the DGM sees the same
  pair whether augment.dgm_on_stored_frames computes its field on the stored pair before the
  augmentation or the model computes it after): optimizer.dgm_stage2_lr_scale 0.1 moves the DGM
  a tenth as far as 1 does in stage 2, and every other parameter as far."""
  config, data, (_, b2, b3), (_, after1, _, after3), _ = still
  config = config.copy_and_resolve_references()
  assert config.optimizer.dgm_stage2_lr_scale == 1.0 and not config.augment.dgm_on_stored_frames
  config.optimizer.dgm_stage2_lr_scale = 0.1
  config.augment.dgm_on_stored_frames = True
  task = task_lib.make_task(config, data=data, fold_ids=[1], stacked=False)
  step, frozen = jax.jit(task.train_step), task.frozen()
  state = after1
  for k, batch in ((2, b2), (3, b3)):
    state, _ = step(state, frozen, batch, jax.random.key(k))
  full, scaled = _moved(after1["params"], after3["params"]), _moved(after1["params"],
                                                                    state["params"])
  assert np.abs(full["dgm"]["head"]["kernel"]).max() > 0
  for name in full:
    for a, b in zip(jax.tree.leaves(full[name]), jax.tree.leaves(scaled[name])):
      # params are float32: their rounding is 1e-7 of a move of about 1e-4
      np.testing.assert_allclose(b, (0.1 if name == "dgm" else 1.0) * a, rtol=1e-4, atol=1e-7)


def test_zero_displacement_control_has_no_dgm_and_a_noop_stage_one(tiny):
  config, data = tiny
  config = config.copy_and_resolve_references()
  config.model.displacement = "zero"
  task = task_lib.make_task(config, data=data, fold_ids=[0], stacked=False)
  state = task.init_state(jax.random.key(0))
  assert "dgm" not in state["params"] and "dgm_opt" not in state
  after, metrics = task.train_step(state, task.frozen(), _batches(task, 0, 1)[0],
                                   jax.random.key(1))
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), state, after)))
  assert float(metrics["loss"]) == 0.0


# ----------------------------------------------------------------------------- results files

def _random_predictions(n=60, seed=0, classes=3):
  rng = np.random.default_rng(seed)
  dataset = rng.choice(["casme2", "samm", "smic"], n)
  subject = np.asarray([f"s{int(k)}" for k in rng.integers(0, 5, n)])
  order = np.lexsort((subject, dataset))
  dataset, subject = dataset[order], subject[order]
  keys = [f"{d}/{s}" for d, s in zip(dataset, subject)]
  fold = np.asarray([sorted(set(keys), key=keys.index).index(k) for k in keys])
  label = rng.integers(0, classes, n)
  prediction = np.where(rng.random(n) < 0.6, label, rng.integers(0, classes, n))
  return results_lib.Predictions(dataset, subject, np.asarray([f"clip{i}" for i in range(n)]),
                                 label, prediction, fold)


def test_results_match_scikit_learn_and_survive_the_csv(tmp_path):
  names = ("negative", "positive", "surprise")
  p = _random_predictions()
  results = results_lib.write_all(tmp_path, p, names, {"steps_per_fold": 7, "wall_time_s": 1.0})
  labels = list(range(3))
  assert results["UF1"] == pytest.approx(f1_score(p.label, p.prediction, labels=labels,
                                                  average="macro", zero_division=0))
  assert results["UAR"] == pytest.approx(recall_score(p.label, p.prediction, labels=labels,
                                                      average="macro", zero_division=0))
  assert results["confusion"] == sk_confusion(p.label, p.prediction, labels=labels).tolist()
  for name in ("casme2", "samm", "smic"):
    sel = p.dataset == name
    assert results["per_database"][name] == pytest.approx({
        "UF1": f1_score(p.label[sel], p.prediction[sel], labels=labels, average="macro",
                        zero_division=0),
        "UAR": recall_score(p.label[sel], p.prediction[sel], labels=labels, average="macro",
                            zero_division=0), "n": int(sel.sum())})
  on_disk = json.loads((tmp_path / "results.json").read_text())
  recomputed = results_lib.results_from_predictions_csv(tmp_path / "predictions.csv", names)
  for key in ("UF1", "UAR", "per_database", "per_class", "confusion", "n", "folds"):
    assert on_disk[key] == pytest.approx(recomputed[key]) if key in ("UF1", "UAR") \
        else on_disk[key] == recomputed[key]
  assert on_disk["steps_per_fold"] == 7
  with open(tmp_path / "predictions.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert tuple(rows[0]) == ("dataset", "subject", "sample", "label", "prediction")
  assert len(rows) == len(p) + 1
  # MEGC log: a header per fold, then '<sample> <gt> <pred>' for each of its clips.
  log = (tmp_path / "megc_log.txt").read_text().splitlines()
  expected = []
  for k in dict.fromkeys(p.fold.tolist()):
    rows_k = np.flatnonzero(p.fold == k)
    expected.append(f"{p.dataset[rows_k[0]]} {p.subject[rows_k[0]]}")
    expected += [f"{p.sample[i]} {p.label[i]} {p.prediction[i]}" for i in rows_k]
  assert log == expected
  assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = (tmp_path / "results.md").read_text()
  assert f"| all (pooled) | {results['UF1']:.4f} | {results['UAR']:.4f} | {len(p)} |" in table


def test_bad_predictions_csv_names_the_row(tmp_path):
  path = tmp_path / "predictions.csv"
  path.write_text("dataset,subject,sample,label,prediction\ncasme2,sub01,EP01,1,2\n"
                  "casme2,sub01,EP02,1,x\n")
  with pytest.raises(ValueError, match="row 3"):
    results_lib.read_predictions_csv(path)
  path.write_text("dataset,subject,sample,label,prediction\ncasme2,sub01,EP01,1,3\n")
  with pytest.raises(ValueError, match="row 2: prediction 3"):
    results_lib.read_predictions_csv(path)
