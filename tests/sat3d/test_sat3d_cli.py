"""launch/transfer.py and launch/evaluate.py end to end, and the pieces they are built from.

The run under test is written with the driver's own pieces (the resolved config as config.json,
the task's describe() as task.json, launch.trainer.checkpoint for the Orbax state) with a
*planted* mask: the 'hairstyle' row owns every channel (logit 50, P = 1.0 in float32), every
other row has 0. That makes outcomes known in advance: a hairstyle transfer is a whole-style
swap (the result measures as the reference), a beard transfer leaves the source as it is, and
the channel-swap baseline copies all channels for hairstyle and one for beard.

The commands run as subprocesses (absl flags are process-global, so entry points are never
imported into the test process); each rebuilds the run's models from its config.json, as a user's
run does.
"""
import importlib.util
import json
import pathlib
import subprocess
import sys
import warnings

import imageio.v3 as iio
import imageio_ffmpeg
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from launch.tasks.sat3d import make_task
from launch.trainer.checkpoint import Checkpoints
from sat3d_jax import baselines, evaluation, latent_file, run_io, style_file
from sat3d_jax.clip_utils import save_tiny_clip
from sat3d_jax.eg3d import get_preset, parse_config
from sat3d_jax.model import Sat3dModel

REPO = pathlib.Path(__file__).resolve().parents[2]
PLANTED_LOGIT = 50.0
STEP = 7


def _tiny_config():
  spec = importlib.util.spec_from_file_location("sat3d_ffhq_config",
                                                REPO / "configs" / "sat3d_ffhq.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("tiny")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, model, planted mask logits) of a tiny SAT3D run in the driver's format."""
  workdir = tmp_path_factory.mktemp("sat3d_run")
  config = _tiny_config()
  model = Sat3dModel(config)
  task = make_task(config, model)
  (workdir / "config.json").write_text(
      json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True))
  (workdir / "task.json").write_text(json.dumps(task.describe(), indent=2))
  state = task.init_state(jax.random.key(0))
  mask = np.zeros(state["mask"].shape, np.float32)
  mask[list(model.attributes).index("hairstyle")] = PLANTED_LOGIT
  checkpoints = Checkpoints(workdir / "checkpoints", async_save=False)
  checkpoints.save(STEP, {"mask": jnp.asarray(mask), "opt": state["opt"]},
                   {"step": STEP, "input_position": STEP, "time": 0.0})
  checkpoints.close()
  return workdir, model, mask


def _cli(command, *args):
  """Runs launch/COMMAND.py with these flags from the repository root."""
  with warnings.catch_warnings():  # JAX's warning about fork() does not apply to fork + exec
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    return subprocess.run([sys.executable, f"launch/{command}.py", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=600)


def _user_error(result, *fragments):
  """A user error: exit status 2, `error: ...` on stderr naming each fragment, no traceback."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "error: " in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in result.stderr, (fragment, result.stderr[-3000:])


# ---------------------------------------------------------------------------------------------
# Pieces.

def test_run_io_restores_the_saved_mask_and_config(trained):
  workdir, model, mask = trained
  run = run_io.load_run(workdir)  # rebuilds the generator and the QMM from config.json
  for name, value in model.generator.params.items():
    np.testing.assert_array_equal(run.model.generator.params[name], value, err_msg=name)
  np.testing.assert_array_equal(run.model.qmm.group_embeds, model.qmm.group_embeds)
  assert run.attributes == tuple(model.attributes)
  assert run.step == STEP
  np.testing.assert_array_equal(run.mask_logits, mask)
  assert run.config.generator == "preset:micro" and run.config.objective.temperature == 1.0
  p = run.probabilities()
  assert p[list(run.attributes).index("hairstyle")].min() == 1.0
  with pytest.raises(ValueError, match=r"no checkpoint for step 3; saved steps: \[7\]"):
    run_io.load_mask(workdir, step=3)
  other = workdir.parent / "not_sat3d"
  other.mkdir(exist_ok=True)
  (other / "config.json").write_text(json.dumps({"task": "frldgt_jax.task"}))
  with pytest.raises(ValueError, match="not a SAT3D run"):
    run_io.load_config(other)


def test_style_mixing_bands_follow_the_stylegan_convention():
  # EG3D FFHQ-512: num_ws = 14; StyleGAN's coarse 4-8 px, middle 16-32 px, fine 64 px and up.
  arch = parse_config(get_preset("ffhq512"))
  assert arch.num_ws == 14
  assert baselines.style_mixing_bands(arch) == {"coarse": (0, 4), "middle": (4, 8),
                                                "fine": (8, 14)}
  ws_src, ws_ref = np.zeros((14, 3)), np.ones((14, 3))
  mixed = baselines.mix_ws(ws_src, ws_ref, (4, 8))
  assert mixed[:4].sum() == 0 and mixed[4:8].min() == 1 and mixed[8:].sum() == 0


def test_pearson_columns_matches_numpy_corrcoef():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 5))
  x[:, 3] = 2.0  # a constant channel: r = 0 by convention
  y = np.stack([x[:, 0] * 3 + rng.normal(size=40) * 0.1, rng.normal(size=40)], -1)
  r = baselines.pearson_columns(x, y)
  for c in (0, 1, 2, 4):
    for k in range(2):
      np.testing.assert_allclose(r[c, k], np.corrcoef(x[:, c], y[:, k])[0, 1], atol=1e-12)
  assert np.all(r[3] == 0)
  corr = baselines.attribute_correlations(x, {"a": y})["a"]
  assert baselines.correlated_channels(corr, 1).tolist() == [0]
  assert baselines.correlated_channels(corr, 2, allowed=np.array([1, 2, 3])).tolist() == \
      sorted(np.array([1, 2])[np.argsort(-corr[[1, 2]])][:2].tolist())
  swapped = baselines.swap_channels(np.zeros(5), np.arange(5.0) + 1, [1, 3])
  assert swapped.tolist() == [0, 2, 0, 4, 0]


def test_scores_closed_form():
  # One pair, two views; attribute a with groups (x, y), attribute b likewise.
  q_src = {"a": np.array([[[1.0, 0.0], [1.0, 0.0]]]), "b": np.array([[[0.5, 0.5]] * 2])}
  q_ref = {"a": np.array([[[0.0, 1.0], [0.0, 1.0]]]), "b": np.array([[[0.0, 1.0]] * 2])}
  q_edit = {"a": np.array([[[0.25, 0.75], [0.75, 0.25]]]), "b": np.array([[[0.25, 0.75]] * 2])}
  cos = np.array([[0.5, 1.0]])
  s = evaluation.score_attribute("a", q_src, q_ref, q_edit, cos, "l1")
  # transfer: L1(edit, ref) = 0.5 and 1.5, L1(src, ref) = 2 and 2 -> 1 - 2 / 4.
  assert s["transfer"] == pytest.approx(0.5)
  # preservation on b: L1(edit, src) = 0.5 per view, L1(ref, src) = 1 per view -> 1 - 1 / 2.
  assert s["preservation"] == pytest.approx(0.5)
  assert s["identity_clip"] == pytest.approx(0.75)
  assert s["multiview_std"] == pytest.approx(0.25)  # |0.75 - 0.25| / 2 for both groups
  same = evaluation.score_attribute("a", q_src, q_ref, q_src, np.ones((1, 2)), "sym_kl")
  assert same["transfer"] == 0.0 and same["preservation"] == 1.0


# ---------------------------------------------------------------------------------------------
# launch/transfer.py

def _grid_cells(path, rows, cols):
  grid = iio.imread(path)
  h, w = grid.shape[0] // rows, grid.shape[1] // cols
  return grid, grid.reshape(rows, h, cols, w, 3).transpose(0, 2, 1, 3, 4)


def test_transfer_from_seeds_and_latent_files(trained, tmp_path):
  """Seeds with delta 0: the result is the source, bit for bit. Then latent files holding the
  same ws (the source with a 'generator' copy, the reference with a camera) render as the seeds
  do, the reference's camera adds a column, and the planted hairstyle mask (P = 1 everywhere)
  turns the source into the reference."""
  workdir, model, _ = trained
  gen = model.generator
  res = gen.img_resolution
  out_seed, out_file = tmp_path / "seed", tmp_path / "file"
  common = ["--workdir", workdir, "--views", "2"]
  done = _cli("transfer", *common, "--source", "1", "--reference", "2", "--delta", "0",
              "--attributes", "hairstyle,beard", "--frames", "3", "--out", out_seed)
  assert done.returncode == 0, done.stderr[-3000:]
  assert str(out_seed.resolve()) in done.stdout
  grid, by_seed = _grid_cells(out_seed / "grid.png", 3, 2)
  assert grid.shape == (3 * res, 2 * res, 3)
  np.testing.assert_array_equal(by_seed[2], by_seed[0])  # result == source, bit for bit
  assert not np.array_equal(by_seed[1], by_seed[0])
  frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out_seed / "turntable.mp4"))
  assert frames == 3
  styles = style_file.read_style_file(out_seed / "result_styles.npz")
  assert styles["labels"] == ["source", "reference", "result"]
  np.testing.assert_array_equal(styles["styles"][2], styles["styles"][0])
  assert styles["styles"].shape == (3, model.num_channels)

  tuned = tmp_path / "tuned_generator"
  tuned.mkdir()
  np.savez(tuned / "params.npz", **{k: np.asarray(v) for k, v in gen.params.items()})
  (tuned / "config.json").write_text(json.dumps(gen.config))
  ws = np.asarray(model.ws_from_z(gen.params, jnp.asarray(
      evaluation.latents_for_seeds([1, 2], gen.z_dim))))
  latent_file.write_latent_file(tmp_path / "src.npz", ws[:1], generator=str(tuned))
  cam = np.asarray(model.cameras(jnp.array([[0.2, 0.1]])))
  latent_file.write_latent_file(tmp_path / "ref.npz", ws, c=np.concatenate([cam, cam]))
  done = _cli("transfer", *common, "--source", tmp_path / "src.npz",
              "--reference", tmp_path / "ref.npz", "--reference_index", "1",
              "--attributes", "hairstyle", "--frames", "0", "--out", out_file)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "pivotal-tuned generator" in done.stdout and "the reference's camera" in done.stdout
  assert not (out_file / "turntable.mp4").exists()
  grid, by_file = _grid_cells(out_file / "grid.png", 3, 3)
  assert grid.shape == (3 * res, 3 * res, 3)
  # The same styles and cameras in another batch layout: equal up to float rounding.
  assert np.abs(by_file[:2, 1:].astype(int) - by_seed[:2].astype(int)).max() <= 1
  # P[hairstyle] = 1 on every channel: the result is the reference up to float rounding.
  assert np.abs(by_file[2].astype(int) - by_file[1].astype(int)).max() <= 2


def test_clis_reject_bad_input(trained, tmp_path):
  """Each is one `error:` line and exit status 2, before anything is written."""
  workdir, model, _ = trained
  _user_error(_cli("transfer", "--workdir", workdir, "--source", "1", "--reference", "2",
                   "--attributes", "hairstyle,baerd", "--out", tmp_path / "x"),
              "unknown attribute 'baerd'", "beard", "hairstyle")
  assert not (tmp_path / "x").exists()
  _user_error(_cli("transfer", "--workdir", workdir, "--source", tmp_path / "no.npz",
                   "--reference", "2", "--attributes", "beard", "--out", tmp_path / "x"),
              "neither an integer seed nor an existing latent file")
  _user_error(_cli("transfer", "--workdir", tmp_path / "no_run", "--source", "1",
                   "--reference", "2", "--attributes", "beard", "--out", tmp_path / "x"),
              f"{tmp_path / 'no_run'}: no config.json")
  # A latent inverted with another generator (EG3D FFHQ-512: 14 ws of 512) than the run's
  # micro one (10 ws of 512), as source or as reference.
  assert (model.generator.num_ws, model.generator.w_dim) == (10, 512)
  other = tmp_path / "ffhq512_latent.npz"
  latent_file.write_latent_file(other, np.zeros((1, 14, 512), np.float32))
  for source, reference in ((other, "1"), ("1", other)):
    _user_error(_cli("transfer", "--workdir", workdir, "--source", source, "--reference",
                     reference, "--attributes", "beard", "--out", tmp_path / "x"),
                f"{other}: its 'ws' rows are (num_ws, w_dim) = (14, 512), but the run's "
                "generator preset:micro needs (10, 512)")
  assert not (tmp_path / "x").exists()
  _user_error(_cli("evaluate", "--workdir", workdir, "--pairs", "1", "--attributes", "smiel",
                   "--out", tmp_path / "e.json"),
              "unknown attribute 'smiel'", "smile")
  assert not (tmp_path / "e.json").exists()


# ---------------------------------------------------------------------------------------------
# launch/evaluate.py

def test_evaluate_end_to_end(trained, tmp_path):
  workdir, model, _ = trained
  out = tmp_path / "eval" / "report.json"
  # A second judge CLIP: the run's own tiny CLIP (seed 0) saved as a Hugging Face directory,
  # so its verdicts must equal the first judge's.
  judge_dir = save_tiny_clip(tmp_path / "judge_clip", seed=model.config.seed)
  done = _cli("evaluate", "--workdir", workdir, "--pairs", "2", "--views", "2",
              "--attributes", "hairstyle,beard", "--correlation_samples", "4",
              "--judge_clip", judge_dir, "--out", out)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(out.read_text())
  second = report["results"][f"judge_clip:{judge_dir}"]
  methods = ["sat3d", "mix_coarse", "mix_middle", "mix_fine", "channel_swap", "source"]
  assert report["protocol"]["methods"] == methods
  assert report["protocol"]["measured_attributes"] == list(model.attributes)
  results = report["results"]["heldout_phrasings"]
  assert sorted(results) == ["beard", "hairstyle"]
  # dlib's identity: the micro generator's random images hold no face, each of the 2 pairs x 2
  # views is counted as not found (and the mean, over no image, is null), never dropped.
  assert report["protocol"]["identity"]["same_person_below"] == 0.6
  numeric = [k for k in evaluation.METRICS if k != "identity"]
  for attribute in results:
    for m in methods:
      assert set(evaluation.METRICS) <= set(results[attribute][m])
      for metric in numeric:
        assert isinstance(results[attribute][m][metric], float)
      assert results[attribute][m]["identity"] is None
      assert results[attribute][m]["identity_not_found"] == 4
      assert results[attribute][m]["identity_measured"] == 0
    # The unedited source: its own identity, and the floor / ceiling of the ratios, exactly.
    src = results[attribute]["source"]
    assert src["transfer"] == 0.0 and src["preservation"] == 1.0
    assert src["identity_clip"] == pytest.approx(1.0, abs=1e-5)
    assert src["gap_source_reference"] > 0
  # Planted mask: hairstyle owns every channel, so both SAT3D and the swap (whose budget is
  # round(sum P) = all channels) turn the source into the reference; beard owns none.
  swap = report["protocol"]["channel_swap"]["per_attribute"]
  assert swap["hairstyle"]["channels"] == model.num_channels and swap["beard"]["channels"] == 1
  hair = results["hairstyle"]
  assert hair["channel_swap"]["transfer"] == 1.0 and hair["channel_swap"]["preservation"] == 0.0
  assert hair["sat3d"]["transfer"] == pytest.approx(1.0, abs=1e-3)
  assert hair["sat3d"]["preservation"] == pytest.approx(0.0, abs=1e-3)
  assert results["beard"]["sat3d"]["transfer"] == pytest.approx(0.0, abs=1e-3)
  for attribute in results:
    for m in methods:
      for metric in numeric:
        assert second[attribute][m][metric] == pytest.approx(results[attribute][m][metric],
                                                             abs=1e-4), (attribute, m, metric)
  markdown = out.with_suffix(".md").read_text()
  assert ("| method | transfer | preservation | identity | identity_clip | multiview_std |"
          in markdown)
  assert "| hairstyle | sat3d |" in markdown and "| beard | source |" in markdown
