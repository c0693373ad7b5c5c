"""The inversion encoder (sat3d_jax/encoder.py): the model, its file, the committed tiny encoder
against optimisation on held-out samples, and launch/invert.py --encoder."""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.encoder_ffhq import get_config
from launch.tasks import encoder as encoder_task
from launch.trainer import train_and_evaluate
from sat3d_jax import encoder as encoder_lib, encoder_eval, inversion, latent_file, media
from sat3d_jax.eg3d.generator import generator_from_spec
from sat3d_jax.errors import InputError
from tests.sat3d.test_inversion import _cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "encoder_tiny" / "encoder.npz"
SPEC = encoder_lib.EncoderSpec(input_size=32, widths=(8, 16), blocks=1, hidden=8, num_ws=3,
                               w_dim=4, groups=4)


def test_untrained_encoder_answers_the_mean_at_the_frontal_camera():
  params = encoder_lib.init_params(SPEC, jax.random.key(0), 48)
  stats = {"mean": jnp.arange(4.0), "std": jnp.ones(4)}
  images = jax.random.uniform(jax.random.key(1), (2, 48, 48, 3), minval=-1, maxval=1)
  ws, angles = encoder_lib.encode(SPEC, params, stats, images)
  assert ws.shape == (2, 3, 4) and angles.shape == (2, 2)
  np.testing.assert_array_equal(ws, np.broadcast_to(np.arange(4.0), (2, 3, 4)))
  np.testing.assert_array_equal(angles, 0.0)


def test_encoder_file_round_trip_and_bad_file(tmp_path):
  params = encoder_lib.init_params(SPEC, jax.random.key(0), 32)
  params = jax.tree.map(lambda x: x + 0.01, params)  # heads no longer zero
  stats = {"mean": jnp.arange(4.0), "std": jnp.full(4, 2.0)}
  enc = encoder_lib.TrainedEncoder(SPEC, params, stats, "preset:micro", 7, "x")
  path = tmp_path / "enc.npz"
  encoder_lib.save_encoder_file(path, enc)
  back = encoder_lib.load_encoder(path)
  assert back.spec == SPEC and back.step == 7 and back.generator == "preset:micro"
  images = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3), minval=-1, maxval=1)
  for a, b in zip(enc(images), back(images)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  np.savez(tmp_path / "other.npz", x=np.zeros(2))
  with pytest.raises(InputError, match="not a SAT3D encoder file"):
    encoder_lib.load_encoder(tmp_path / "other.npz")


@pytest.fixture(scope="module")
def tiny():
  """The committed tiny encoder, its generator and 3 held-out samples."""
  enc = encoder_lib.load_encoder(FIXTURE)
  generator = generator_from_spec(enc.generator, seed=0)
  return enc, generator, encoder_eval.held_out(generator, 3)


def test_committed_encoder_is_small_and_fits_its_generator(tiny):
  enc, generator, _ = tiny
  assert FIXTURE.stat().st_size < 2_000_000
  enc.check_generator(generator)
  other = generator_from_spec("preset:tiny128")
  if other.num_ws != generator.num_ws:
    with pytest.raises(InputError, match="the encoder predicts"):
      enc.check_generator(other)


# Measured on these 3 held-out samples (docs/encoder.md, "Measured against optimisation"):
# the encoder's L2 over the start's (0.1199 / 0.9796), and the L2 of the encoder + 100 W+ steps
# (the default 200 W + 200 W+ steps reached 0.0026 on these 3, 0.0042 on all 8; encoder + 100
# 0.0050 on the 8).
MEASURED_ENCODER_OVER_START = 0.1224
MEASURED_ENCODER_100_L2 = 0.0060


def test_committed_encoder_beats_the_start_and_nears_the_default_optimisation(tiny):
  enc, generator, samples = tiny
  table = encoder_eval.compare(generator, enc, samples, steps=(100,), optimise_steps=(),
                               default=False)
  # With 2x slack on what was measured.
  assert table["encoder"]["l2"] < 2 * MEASURED_ENCODER_OVER_START * table["start"]["l2"]
  assert table["encoder + 100"]["l2"] < 2 * MEASURED_ENCODER_100_L2
  assert table["encoder + 100"]["l2"] < table["encoder"]["l2"] / 4


def test_invert_cli_with_encoder_writes_a_latent_file(tiny, tmp_path):
  enc, generator, samples = tiny
  photo = tmp_path / "face.png"
  media.write_png(photo, media.to_uint8(samples.images[0]))
  out = tmp_path / "inv"
  proc = _cli("invert", "--generator", enc.generator, "--encoder", FIXTURE, "--image", photo,
              "--aligned", "--out", out, "--frames", 0, "--wplus_steps", 2, "--quiet")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "encoder:" in proc.stdout
  latent = latent_file.read_latent_file(out / "latent.npz")
  assert latent["ws"].shape == (1, generator.num_ws, generator.w_dim)
  # The written code is the encoder's start moved by 2 W+ steps: the reconstruction it renders
  # is as the command reported.
  image = inversion.render(generator, latent["ws"], latent["c"])
  assert float(inversion.psnr(image, jnp.asarray(samples.images[:1]))[0]) > 5.0


def test_invert_cli_rejects_an_encoder_of_another_generator(tmp_path):
  proc = _cli("invert", "--generator", "preset:tiny128", "--encoder", FIXTURE, "--image",
              tmp_path / "x.png", "--aligned", "--out", tmp_path / "o")
  assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_tiny_trains_data_parallel_resumes_and_its_workdir_inverts(tmp_path):
  config = get_config("tiny")
  config.total_steps, config.log_every, config.checkpoint_every = 2, 1, 2
  config.eval_samples, config.eval_every, config.summary_every = 8, 2, 2
  config.stats_samples, config.tensorboard = 256, False
  result = train_and_evaluate(config, tmp_path, task=encoder_task.make_task(config))
  assert result.step == 2 and result.mesh.size == 8
  config.total_steps = 3  # resumes from the checkpoint of step 2
  result = train_and_evaluate(config, tmp_path, task=encoder_task.make_task(config))
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
  evals = [r for r in records if "eval/loss" in r]
  assert evals[0]["step"] == 0 and all(r["eval/count"] == 8 for r in evals)
  r = evals[0]  # the loss is its terms, weighted as the config says
  assert r["eval/loss"] == pytest.approx(
      r["eval/wplus"] + r["eval/camera"] + r["eval/l2"] + 0.5 * r["eval/ms_ssim"], rel=1e-4)
  enc = encoder_lib.load_encoder(tmp_path)
  assert enc.step == 3 and enc.generator == "preset:micro"
  meta = json.loads((tmp_path / "task.json").read_text())
  assert meta["num_ws"] == enc.spec.num_ws
