"""SAT3D through the real driver on :tiny (random micro EG3D + tiny CLIP), 8 fake devices."""
import dataclasses
import json
import pathlib
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs.sat3d_ffhq import get_config
from launch.tasks import sat3d as sat3d_task
from launch.trainer import train_and_evaluate
from sat3d_jax import latent_file, model as model_lib, pairs


def _tiny(**overrides):
  config = get_config("tiny")
  config.global_batch_size = 8  # one example per fake device
  config.views.count = 1
  config.total_steps = 2
  config.log_every = 1
  config.checkpoint_every = 2
  config.summary_every = 2
  config.tensorboard = False
  for k, v in overrides.items():
    setattr(config, k, v)
  return config


@pytest.fixture(scope="module")
def model():
  return model_lib.Sat3dModel(_tiny())


def test_tiny_trains_data_parallel_and_checkpoints_only_the_mask(tmp_path, model):
  config = _tiny(eval_pairs=8, eval_every=2)
  result = train_and_evaluate(config, tmp_path, task=sat3d_task.make_task(config, model))
  assert result.step == 2 and result.mesh.size == 8
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if "loss" in r]
  assert [r["step"] for r in train] == [1, 2]
  assert all(np.isfinite(r["loss"]) and "loss_target" in r for r in train)
  # The fixed evaluation set: before the first step and at the end, every term, 8 pairs.
  evals = [r for r in records if "eval/loss" in r]
  assert [r["step"] for r in evals] == [0, 2]
  a = len(model.attributes)
  for r in evals:
    assert r["eval/count"] == 8
    o = config.objective
    assert r["eval/loss"] == pytest.approx(
        o.target_weight * r["eval/loss_target"] + o.preserve_weight * r["eval/loss_preserve"]
        + o.sparsity_weight * r["eval/loss_sparsity"], rel=1e-5)
  # The initial mask: every attribute row 0, "other" other_logit -> mass A / (A + e^other).
  assert evals[0]["eval/loss_sparsity"] == pytest.approx(
      a / (a + np.exp(config.objective.other_logit)), rel=1e-5)
  assert sorted(p.name.split("_")[0] for p in (tmp_path / "images").glob("*.png")) == [
      "edit", "reference", "source"]
  # The checkpoint holds the mask and its optimiser state, nothing of EG3D or CLIP.
  meta = ocp.StandardCheckpointer().metadata(tmp_path / "checkpoints" / "2" / "state")
  tree = meta.item_metadata.tree
  assert set(tree) == {"mask", "opt"}
  assert tuple(tree["mask"].shape) == (len(model.attributes) + 1, model.num_channels)
  # Frozen params were not donated: still alive and equal to the generator's.
  name = next(iter(model.generator.params))
  np.testing.assert_array_equal(np.asarray(result.frozen["generator"][name]),
                                np.asarray(model.generator.params[name]))
  assert json.loads((tmp_path / "task.json").read_text())["num_style_channels"] == \
      model.num_channels
  # Resuming (also after a kill) is the driver's, tested on every task in test_driver.py.


_DRAW = pairs.PairDraw(batch_size=8, z_dim=16, num_attributes=5, target_attributes=(0, 2, 4),
                       max_targets=2, views=3, yaw_mean=0.0, yaw_std=0.3, yaw_limit=0.8,
                       pitch_mean=0.0, pitch_std=0.1, pitch_limit=0.35)


BACKENDS = pytest.mark.parametrize("backend", pairs.BACKENDS)


@BACKENDS
def test_pairs_pipeline_is_step_indexed_and_process_sharded(backend):
  kwargs = dict(seed=3, total_steps=10, backend=backend)
  full = list(pairs.make_pairs_pipeline(_DRAW, start_step=0, **kwargs))
  resumed = list(pairs.make_pairs_pipeline(_DRAW, start_step=6, **kwargs))
  for a, b in zip(full[6:], resumed):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  halves = [next(pairs.make_pairs_pipeline(_DRAW, start_step=0, rows=slice(4 * i, 4 * i + 4),
                                           **kwargs)) for i in range(2)]
  for k in full[0]:
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), full[0][k])
  targets = np.concatenate([b["targets"] for b in full])
  assert set(np.unique(targets.sum(1))) <= {1.0, 2.0}
  assert targets[:, [1, 3]].sum() == 0  # only the allowed target attributes
  views = np.concatenate([b["views"] for b in full])
  assert np.abs(views[..., 0]).max() <= 0.8 and np.abs(views[..., 1]).max() <= 0.35


@BACKENDS
def test_eval_set_is_fixed_held_out_and_process_sharded(backend):
  full = list(pairs.make_eval_pipeline(_DRAW, seed=3, num_pairs=24, backend=backend))
  again = list(pairs.make_eval_pipeline(_DRAW, seed=3, num_pairs=24, backend=backend))
  assert len(full) == 3
  for a, b in zip(full, again, strict=True):  # no step enters: the same set every time
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  train = list(pairs.make_pairs_pipeline(_DRAW, seed=3, start_step=0, total_steps=50,
                                         backend=backend))
  train_z = np.concatenate([b["z_src"] for b in train] + [b["z_ref"] for b in train])
  eval_z = np.concatenate([b["z_src"] for b in full] + [b["z_ref"] for b in full])
  # Never a training latent (the first 50 steps' 800 of them).
  assert np.min(np.abs(eval_z[:, None, :] - train_z[None]).max(-1)) > 0.1
  halves = [list(pairs.make_eval_pipeline(_DRAW, seed=3, num_pairs=24, backend=backend,
                                          rows=slice(4 * i, 4 * i + 4))) for i in range(2)]
  for k in full[0]:
    np.testing.assert_array_equal(np.concatenate([h[1][k] for h in halves]), full[1][k])
  other_seed = next(pairs.make_eval_pipeline(_DRAW, seed=4, num_pairs=8, backend=backend))
  assert not np.array_equal(other_seed["z_src"], full[0]["z_src"])
  with pytest.raises(ValueError, match="evaluation set size 20 must be a positive multiple of "
                                       "the batch size 8"):
    pairs.make_eval_pipeline(_DRAW, seed=3, num_pairs=20)


@BACKENDS
def test_pair_pool_cycles_the_first_examples_of_the_stream(backend):
  fresh = list(pairs.make_pairs_pipeline(_DRAW, seed=3, start_step=0, total_steps=2,
                                         backend=backend))
  pooled = list(pairs.make_pairs_pipeline(_DRAW, seed=3, start_step=0, total_steps=5,
                                          pool_size=16, backend=backend))
  resumed = list(pairs.make_pairs_pipeline(_DRAW, seed=3, start_step=3, total_steps=5,
                                           pool_size=16, backend=backend))
  for step, batch in enumerate(pooled):
    for k in batch:  # step s trains on draw s mod 2 of the fresh stream
      np.testing.assert_array_equal(batch[k], fresh[step % 2][k])
  for step, batch in enumerate(resumed, start=3):  # resuming at step 3 keeps the cycle
    for k in batch:
      np.testing.assert_array_equal(batch[k], pooled[step][k])
  with pytest.raises(ValueError, match="pool_size=12 must be 0 .* multiple of the batch size 8"):
    pairs.make_pairs_pipeline(_DRAW, seed=3, start_step=0, total_steps=5, pool_size=12)


def test_both_backends_draw_the_same_distribution_and_types():
  """NumPy's pairs are not TensorFlow's numbers but the same distribution: dtypes and shapes
  equal, and over 400 steps the moments agree within a few standard errors (z: 51,200 values;
  views: clipped normals, 9,600 values per axis; target counts uniform on 1..max_targets)."""
  draw = dataclasses.replace(_DRAW, num_latents=0)
  batches = {b: list(pairs.make_pairs_pipeline(draw, seed=5, start_step=0, total_steps=400,
                                               backend=b)) for b in pairs.BACKENDS}
  tf_first, np_first = batches["tensorflow"][0], batches["numpy"][0]
  assert {k: (v.dtype, v.shape) for k, v in tf_first.items()} == \
      {k: (v.dtype, v.shape) for k, v in np_first.items()}
  assert not np.array_equal(tf_first["z_src"], np_first["z_src"])
  stats = {}
  for b, stream in batches.items():
    z = np.concatenate([x["z_src"] for x in stream]).ravel()
    views = np.concatenate([x["views"] for x in stream]).reshape(-1, 2)
    counts = np.concatenate([x["targets"] for x in stream]).sum(1)
    stats[b] = dict(z_mean=z.mean(), z_std=z.std(), yaw_std=views[:, 0].std(),
                    pitch_std=views[:, 1].std(), yaw_max=np.abs(views[:, 0]).max(),
                    count_mean=counts.mean())
  t, n = stats["tensorflow"], stats["numpy"]
  assert abs(t["z_mean"] - n["z_mean"]) < 0.02 and abs(t["z_std"] - n["z_std"]) < 0.02
  assert abs(t["yaw_std"] - n["yaw_std"]) < 0.02 and abs(t["pitch_std"] - n["pitch_std"]) < 0.01
  assert t["yaw_max"] <= 0.8 and n["yaw_max"] <= 0.8
  assert abs(t["count_mean"] - 1.5) < 0.06 and abs(n["count_mean"] - 1.5) < 0.06
  latents = dataclasses.replace(_DRAW, num_latents=7)
  indices = next(pairs.make_pairs_pipeline(latents, seed=5, start_step=0, total_steps=1,
                                           backend="numpy"))
  assert indices["src_index"].dtype == np.int32 and indices["src_index"].max() < 7


def test_unknown_pairs_backend_is_a_config_error():
  with pytest.raises(ValueError, match="pairs backend must be 'auto' or one of"):
    pairs.resolve_backend("jax")
  assert pairs.resolve_backend("auto") == "tensorflow"  # installed in the test environment
  assert pairs.resolve_backend("numpy") == "numpy"


def test_latent_files_round_trip_and_bad_files_are_clear(tmp_path):
  path = tmp_path / "lat.npz"
  ws = np.random.default_rng(0).normal(size=(3, 14, 512)).astype(np.float32)
  latent_file.write_latent_file(path, ws, c=np.zeros((3, 25)), generator="tuned/")
  with pytest.raises(ValueError, match="pivotal-tuned generator 'tuned/' does not exist"):
    latent_file.read_latent_file(path)
  (tmp_path / "tuned").mkdir()
  out = latent_file.read_latent_file(path)
  np.testing.assert_array_equal(out["ws"], ws)
  # A relative generator path is read from the latent file's folder and returned absolute.
  assert out["generator"] == str((tmp_path / "tuned").resolve())
  np.savez(tmp_path / "bad.npz", w=ws)
  with pytest.raises(ValueError, match="no 'ws' array"):
    latent_file.read_latent_file(tmp_path / "bad.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="junk.npz"):
    latent_file.read_latent_file(tmp_path / "junk.npz")


def test_missing_weights_say_where_they_go():
  config = get_config("")
  with pytest.raises(FileNotFoundError, match="convert_eg3d.py"):
    model_lib.build_generator(config)
  config.clip = "/nonexistent/clip"
  with pytest.raises(FileNotFoundError, match="Hugging Face CLIP"):
    model_lib.build_qmm(config)


def test_unknown_variant_is_an_error():
  with pytest.raises(ValueError, match="unknown variant 'tinny'"):
    get_config("tinny")


def test_a_workdir_made_before_the_restructuring_loads_and_resumes(tmp_path, model):
  """tests/fixtures/legacy_ee41ea4/sat3d_tiny: `launch/train.py --config
  configs/sat3d_ffhq.py:tiny --config.total_steps=2 --config.eval_pairs=0` run at commit
  ee41ea4 (its config.json names the task 'sat3d_jax.task'; its config has no optimizer.name)."""
  from sat3d_jax import run_io  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "legacy"
  fixtures = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
  shutil.copytree(fixtures / "legacy_ee41ea4" / "sat3d_tiny", workdir)
  run = run_io.load_run(workdir, model=model)
  assert run.step == 2 and run.config.task == "sat3d_jax.task"
  assert run.mask_logits.shape == (len(model.attributes) + 1, model.num_editable)
  assert np.all(np.isfinite(run.probabilities()))
  # Training resumes from its checkpoint with today's config file.
  config = get_config("tiny")
  config.total_steps = 3
  config.eval_pairs = 0
  config.tensorboard = False
  result = train_and_evaluate(config, workdir, task=sat3d_task.make_task(config, model))
  assert result.step == 3
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r][-1] == 3
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) \
      == [2, 3]
