"""EG3D inversion: similarity measures against skimage / TensorFlow, camera estimation, W/W+
inversion of a rendered image, pivotal tuning and the command line end to end.

The generator is the eg3d_tiny128 reference fixture (random weights, 128 px); its images are not
faces, so a photograph cannot be reconstructed well: the photo test checks the pipeline, the
rendered-image test checks the optimisation (PSNR > 25 dB, data range 2).
"""
import json
import math
import pathlib

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sat3d_jax import eg3d, inversion

# The fixture's latent 0 (psi 0.7) rendered from the fixture's second camera (yaw +0.35,
# pitch -0.15 from the frontal view; eg3d_tiny128.json "cameras").
KNOWN_ROW, KNOWN_CAMERA_ROW = 0, 1


@pytest.fixture(scope="module")
def generator(eg3d_fixture_dir):
  return eg3d.load_generator(eg3d_fixture_dir / "eg3d_tiny128.npz")


@pytest.fixture(scope="module")
def known(generator, eg3d_fixture_dir):
  with np.load(eg3d_fixture_dir / "eg3d_tiny128.npz") as npz:
    ws = npz["io/ws"][KNOWN_ROW:KNOWN_ROW + 1]
    c = npz["io/c"][KNOWN_CAMERA_ROW:KNOWN_CAMERA_ROW + 1]
  return ws, c, inversion.render(generator, ws, c)


def _face_free_image():
  y, x = np.mgrid[0:160, 0:200]
  return np.stack([x * 255 // 199, y * 255 // 159, np.full_like(x, 90)], -1).astype(np.uint8)


# ------------------------------------------------------------------------------ similarity

def _test_pair(size=96):
  import skimage.data
  import skimage.transform
  a = skimage.transform.resize(skimage.data.astronaut()[40:240, 150:350], (size, size),
                               anti_aliasing=True).astype(np.float32) * 2 - 1
  noise = np.random.default_rng(0).normal(0, 0.15, a.shape).astype(np.float32)
  b = np.clip(a + noise, -1, 1) * 0.9 + 0.05
  return a, b


def test_ssim_matches_skimage_single_scale():
  from skimage.metrics import structural_similarity
  a, b = _test_pair()
  reference = structural_similarity(a, b, data_range=2.0, channel_axis=-1, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
  ours = float(inversion.ssim(jnp.asarray(a[None]), jnp.asarray(b[None]))[0])
  assert abs(ours - reference) < 1e-5, (ours, reference)
  assert float(inversion.ssim(jnp.asarray(a[None]), jnp.asarray(a[None]))[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("size,scales", [(181, 5), (128, 4)])  # 181: odd sizes get padded
def test_ms_ssim_matches_tensorflow(size, scales):
  import tensorflow as tf
  a, b = _test_pair(size)
  factors = inversion.ms_ssim_power_factors(size)
  assert len(factors) == scales and sum(factors) == pytest.approx(1.0, abs=1e-4)
  if scales == 5:
    assert factors == pytest.approx(inversion.MS_SSIM_POWER_FACTORS)
  reference = float(tf.image.ssim_multiscale(a[None], b[None], max_val=2.0,
                                             power_factors=factors)[0])
  ours = float(jax.jit(inversion.ms_ssim)(jnp.asarray(a[None]), jnp.asarray(b[None]))[0])
  assert abs(ours - reference) < 1e-5, (ours, reference)


def test_psnr_closed_form():
  x = jnp.zeros((1, 4, 4, 3))
  assert float(inversion.psnr(x, x + 0.02)[0]) == pytest.approx(10 * math.log10(4 / 0.02 ** 2),
                                                               rel=1e-5)


def test_clip_feature_loss_compares_embeddings():
  from sat3d_jax import clip_utils
  spec, params = clip_utils.tiny_clip(0)
  a, b = (jnp.asarray(v[None]) for v in _test_pair(32))
  weights = inversion.LossWeights(l2=0, l1=0, ms_ssim=0, clip=1).as_array()
  target = inversion.clip_target(spec, params, a)

  @jax.jit
  def run(x):
    loss = lambda x: inversion.reconstruction_loss(x, a, weights, params, target.target_embeds,
                                                   spec)
    (other, parts), grad = jax.value_and_grad(loss, has_aux=True)(x)
    same, _ = loss(a)
    cosine = jnp.sum(clip_utils.image_embeddings(params, a, spec)
                     * clip_utils.image_embeddings(params, x, spec))
    return same, other, parts["clip"], grad, cosine

  same, other, clip_part, grad, cosine = run(b)
  assert float(same) == pytest.approx(0.0, abs=1e-6)
  assert float(other) == pytest.approx(1 - float(cosine), abs=1e-6)
  assert float(other) > 1e-4 and float(clip_part) == pytest.approx(float(other))
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


# ------------------------------------------------------------------------------ faces
# (the crop and the head pose: tests/faces/)

def test_no_face_is_a_clear_error(tmp_path, eg3d_fixture_dir):
  from launch.common import faces
  with pytest.raises(faces.FaceNotFoundError, match="gradient.png: no face found"):
    faces.detect_landmarks(_face_free_image(), "gradient.png")
  path = tmp_path / "gradient.png"
  iio.imwrite(path, _face_free_image())
  done = _cli("invert", "--generator", eg3d_fixture_dir / "eg3d_tiny128.npz", "--image", path,
              "--out", tmp_path / "out", "--quiet")
  assert done.returncode == 2, done.stderr[-3000:]
  assert "error: " in done.stderr and "gradient.png: no face found" in done.stderr
  assert "--landmarks" in done.stderr and "Traceback" not in done.stderr
  assert not (tmp_path / "out").exists()  # nothing written before the failure


def test_camera_label_file_errors(tmp_path):
  good = tmp_path / "good.json"
  good.write_text(json.dumps(list(np.asarray(eg3d.orbit_labels(0.1, 0.0, (0, 0, 0.2), 2.7))
                                  .astype(float))))
  assert inversion.read_camera_label(good).shape == (1, 25)
  short = tmp_path / "short.json"
  short.write_text(json.dumps([1.0] * 24))
  with pytest.raises(ValueError, match="short.json.*25 numbers"):
    inversion.read_camera_label(short)
  bad_row = tmp_path / "bad_row.json"
  bad_row.write_text(json.dumps([1.0] * 25))
  with pytest.raises(ValueError, match="bad_row.json.*last row"):
    inversion.read_camera_label(bad_row)


# ------------------------------------------------------------------------------ optimisation

def test_inversion_of_a_rendered_image_reconstructs_it(generator, known):
  ws_true, c_true, target = known
  config = inversion.InversionConfig(w_steps=40, wplus_steps=30)
  result = inversion.invert(generator, target, camera=c_true[0], config=config, progress=False)
  assert result.ws.shape == (1, generator.num_ws, generator.w_dim)
  np.testing.assert_array_equal(result.c, c_true)
  assert result.angles is None
  # PSNR recomputed here from an independent rendering of the returned latent.
  image = np.asarray(inversion.render(generator, result.ws, result.c), np.float64)
  mse = np.mean((image - np.asarray(target, np.float64)) ** 2)
  psnr = 10 * np.log10(2.0 ** 2 / mse)
  print(f"inversion of a rendered image: PSNR {psnr:.2f} dB after {len(result.history)} steps "
        f"(start {result.history[0]['psnr']:.2f} dB)")
  assert psnr > 25.0
  assert psnr == pytest.approx(result.psnr, abs=1e-3)
  assert result.history[-1]["loss"] < 0.05 * result.history[0]["loss"]


def test_camera_estimation_recovers_yaw_and_pitch(generator, known):
  ws_true = known[0]
  rig = inversion.CameraRig.of(generator)
  truth = (0.2, -0.1)
  target = inversion.render(generator, ws_true, rig.labels(jnp.asarray([truth])))
  yaws, pitches = (-0.3, 0.0, 0.3), (-0.2, 0.0, 0.2)
  start, _ = inversion.grid_camera(generator, target, ws_true, yaws, pitches)
  (yaw, pitch), history = inversion.estimate_camera(generator, target, ws_true, yaws=yaws,
                                                    pitches=pitches, steps=25, lr=0.02)
  print(f"camera: truth {truth}, grid start {start}, estimate ({yaw:.4f}, {pitch:.4f})")
  assert abs(yaw - truth[0]) < 0.03 and abs(pitch - truth[1]) < 0.03
  assert math.hypot(yaw - truth[0], pitch - truth[1]) < math.hypot(start[0] - truth[0],
                                                                   start[1] - truth[1])
  assert history[-1]["loss"] < history[0]["loss"]


# ------------------------------------------------------------------------------ command line
# The commands run as subprocesses: absl flags are process-global, so entry points are never
# imported into the test process.

def _cli(command, *args):
  """Runs launch/COMMAND.py with these flags from the repository root."""
  import subprocess
  import sys
  import warnings
  with warnings.catch_warnings():  # JAX's warning about fork() does not apply to fork + exec
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    return subprocess.run([sys.executable, f"launch/{command}.py", *map(str, args)],
                          check=False, capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[2], timeout=600)


def _read_mp4_frames(path):
  """(ffmpeg's metadata, number of frames) of an MP4."""
  import warnings

  import imageio_ffmpeg
  with warnings.catch_warnings():  # ffmpeg runs by fork + exec: JAX's fork() warning does not apply
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
  return meta, frames


def test_photograph_end_to_end(tmp_path, generator, eg3d_fixture_dir):
  import skimage.data

  from sat3d_jax import latent_file
  photo = tmp_path / "astronaut.png"
  iio.imwrite(photo, skimage.data.astronaut())
  out = tmp_path / "out"
  done = _cli("invert", "--generator", eg3d_fixture_dir / "eg3d_tiny128.npz", "--image", photo,
              "--out", out, "--w_steps", "3", "--wplus_steps", "2", "--camera_yaws=-0.2,0,0.2",
              "--camera_pitches", "0", "--frames", "3", "--quiet")
  assert done.returncode == 0, done.stderr[-3000:]
  latent = latent_file.read_latent_file(str(out / "latent.npz"))
  assert latent["ws"].shape == (1, generator.num_ws, generator.w_dim)
  assert latent["c"].shape == (1, 25) and "generator" not in latent
  # The camera is an orbit camera at the generator's radius looking at its pivot.
  origin = latent["c"][0, :16].reshape(4, 4)[:3, 3]
  assert np.linalg.norm(origin) == pytest.approx(2.7, rel=1e-4)
  assert iio.imread(out / "astronaut_aligned.png").shape == (128, 128, 3)
  assert iio.imread(out / "astronaut_reconstruction.png").shape == (128, 256, 3)
  assert iio.imread(out / "astronaut_loss.png").ndim == 3
  meta, frames = _read_mp4_frames(out / "astronaut_turntable.mp4")
  assert tuple(meta["size"]) == (128, 128) and frames == 3
  summary = json.loads((out / "summary.json").read_text())
  entry = summary["images"][0]
  assert entry["camera"] == "head_pose" and entry["steps"] == {"w": 3, "w+": 2}
  assert entry["landmark_source"] == "mtcnn" and len(entry["five_points"]) == 5
  # The astronaut faces the camera nearly frontally, slightly turned.
  assert all(abs(v) < 25 for v in entry["head_pose_degrees"].values())
  np.testing.assert_allclose(latent["c"][0], entry["c"], atol=1e-5)


def _write_rendered(tmp_path, known):
  """The generator's own rendering as a PNG and its camera as a 25-value label JSON."""
  _, c_true, target = known
  image = tmp_path / "rendered.png"
  iio.imwrite(image, np.clip(np.asarray(target[0]) * 127.5 + 128, 0, 255).astype(np.uint8))
  label = tmp_path / "label.json"
  label.write_text(json.dumps(np.asarray(c_true[0], float).tolist()))
  return image, label


def test_pivotal_tuning_writes_a_loadable_generator(tmp_path, generator, known,
                                                    eg3d_fixture_dir):
  from sat3d_jax import latent_file
  image, label = _write_rendered(tmp_path, known)
  out = tmp_path / "out"
  done = _cli("invert", "--generator", eg3d_fixture_dir / "eg3d_tiny128.npz", "--image", image,
              "--aligned", "--camera", label, "--out", out, "--w_steps", "2",
              "--wplus_steps", "2", "--pti_steps", "3", "--frames", "0", "--quiet")
  assert done.returncode == 0, done.stderr[-3000:]
  latent = latent_file.read_latent_file(str(out / "latent.npz"))
  np.testing.assert_allclose(latent["c"], known[1], atol=1e-6)
  tuned_dir = pathlib.Path(latent["generator"])
  assert tuned_dir == (out / "tuned_generator").absolute()
  tuned = eg3d.load_generator(tuned_dir)
  note = json.loads((tuned_dir / "config.json").read_text())["pivotal_tuning"]
  assert note["steps"] == 3 and note["images"] == [str(image)]
  changed = {k for k in generator.params
             if not np.array_equal(np.asarray(generator.params[k]), np.asarray(tuned.params[k]))}
  assert changed and changed <= set(inversion.tunable_names(generator))
  assert not any(k.startswith("backbone.mapping.") for k in changed)
  # The tuned generator renders the latent closer to the (quantised) image than the original.
  photo = jnp.asarray(iio.imread(image)[None].astype(np.float32) / 127.5 - 1)
  before = float(jnp.mean((inversion.render(generator, latent["ws"], latent["c"]) - photo) ** 2))
  after = float(jnp.mean((inversion.render(tuned, latent["ws"], latent["c"]) - photo) ** 2))
  print(f"pivotal tuning (3 steps): MSE {before:.5f} -> {after:.5f}")
  assert after < before
  assert iio.imread(out / "rendered_reconstruction.png").shape == (128, 384, 3)


# ------------------------------------------------------------------------------ SAT3D chain

def test_inverted_latent_is_a_transfer_source_and_reference(tmp_path, generator, known,
                                                            eg3d_fixture_dir):
  """invert.py's latent file, used by transfer.py as the source and then as the reference, with
  a SAT3D run on the generator it was inverted with. The run is written in the driver's format
  with a planted mask ('hairstyle' owns every channel, P = 1), so a hairstyle transfer must turn
  the source into the reference: the outcome is known in advance."""
  from configs.sat3d_ffhq import get_config
  from launch.tasks.sat3d import make_task
  from launch.trainer.checkpoint import Checkpoints
  from sat3d_jax import latent_file
  from sat3d_jax.model import Sat3dModel

  fixture = eg3d_fixture_dir / "eg3d_tiny128.npz"
  config = get_config("tiny")
  config.generator = str(fixture)  # as --config.generator=... would set it for train.py
  model = Sat3dModel(config)
  task = make_task(config, model)
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text(json.dumps(json.loads(config.to_json_best_effort())))
  (run / "task.json").write_text(json.dumps(task.describe()))
  state = task.init_state(None)
  mask = np.zeros(state["mask"].shape, np.float32)
  mask[list(model.attributes).index("hairstyle")] = 50.0
  checkpoints = Checkpoints(run / "checkpoints", async_save=False)
  checkpoints.save(1, {"mask": jnp.asarray(mask), "opt": state["opt"]},
                   {"step": 1, "input_position": 1, "time": 0.0})
  checkpoints.close()

  image, label = _write_rendered(tmp_path, known)
  inverted = tmp_path / "inverted"
  done = _cli("invert", "--generator", fixture, "--image", image, "--aligned",
              "--camera", label, "--out", inverted, "--w_steps", "2",
              "--wplus_steps", "2", "--frames", "0", "--quiet")
  assert done.returncode == 0, done.stderr[-3000:]
  latent = inverted / "latent.npz"
  assert latent_file.read_latent_file(str(latent))["ws"].shape == (1, generator.num_ws,
                                                                    generator.w_dim)
  # The W+ reconstruction invert.py rendered from the latent and its camera.
  reconstruction = iio.imread(inverted / "rendered_reconstruction.png")[:, 128:256]

  def transfer(source, reference, out):
    # transfer.py rebuilds the run's model from config.json (test_sat3d_cli checks it is this
    # one).
    done = _cli("transfer", "--workdir", run, "--source", source, "--reference", reference,
                "--attributes", "hairstyle", "--views", "1", "--frames", "2", "--batch", "2",
                "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    grid = iio.imread(out / "grid.png")
    assert grid.shape == (3 * 128, 2 * 128, 3)  # the latent's camera, then one sweep view
    _, frames = _read_mp4_frames(out / "turntable.mp4")
    assert frames == 2
    return done.stdout, grid.reshape(3, 128, 2, 128, 3).transpose(0, 2, 1, 3, 4).astype(int)

  printed, as_source = transfer(str(latent), "3", tmp_path / "as_source")
  assert f"source: {latent} row 0" in printed
  assert np.abs(as_source[0, 0] - reconstruction).max() <= 2  # the inverted person
  assert np.abs(as_source[2] - as_source[1]).max() <= 2  # planted mask: result = reference
  printed, as_reference = transfer("3", str(latent), tmp_path / "as_reference")
  assert f"reference: {latent} row 0" in printed
  assert np.abs(as_reference[1, 0] - reconstruction).max() <= 2
  assert np.abs(as_reference[2] - as_reference[1]).max() <= 2
  # Seed 3 is the same person in both grids (the reference there, the source here).
  assert np.abs(as_reference[0] - as_source[1]).max() <= 2
