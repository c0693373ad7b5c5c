"""The motion input choice (frldgt_jax/motion.py): TV-L1's convention, the flow's augmentation,
the model's variants, and the generated corpus's per-nuisance switches."""
import json
import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frldgt_jax import model as model_lib
from frldgt_jax import motion
from frldgt_jax.data import pipeline, synthetic
from frldgt_jax.errors import InputError
from frldgt_jax.warp import warp
from launch.trainer import from_file

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "frldgt_composite.py")


def _texture(size=64, seed=0):
  rng = np.random.default_rng(seed)
  image = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
  return (image - image.min()) / (image.max() - image.min())


def test_tvl1_flow_follows_the_dgm_convention():
  """A known shift, made with OpenCV: apex(p) = onset(p + (1.0, 0.5)); warp(onset, flow) must
  reproduce the apex (frldgt_jax.warp) and the flow must be (dx, dy) = (1.0, 0.5)."""
  onset = _texture()
  shift = np.float32([[1, 0, 1.0], [0, 1, 0.5]])
  apex = cv2.warpAffine(onset, shift, (64, 64), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE)
  flow = motion.tvl1_flow(onset, apex, match_brightness=False)
  assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
  np.testing.assert_allclose(flow[16:48, 16:48].mean((0, 1)), [1.0, 0.5], atol=0.05)
  warped = np.asarray(warp(jnp.asarray(onset)[None, :, :, None], jnp.asarray(flow)[None]))
  inner = (slice(8, 56), slice(8, 56))
  assert np.abs(warped[0, ..., 0] - apex)[inner].mean() < 0.1 * np.abs(onset - apex)[inner].mean()


def test_augmented_flow_still_maps_the_augmented_onset_onto_the_augmented_apex():
  """Zoom, rotation, shift and flip applied to the frames and to a smooth flow field: the
  augmented field must warp the augmented onset onto the augmented apex."""
  size = 64
  onset = _texture(size, 1)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  flow = np.stack([1.5 * np.sin(yy / 12.0), 1.0 * np.cos(xx / 15.0)], -1).astype(np.float32)
  apex = np.asarray(warp(jnp.asarray(onset)[None, :, :, None], jnp.asarray(flow)[None]))[0]
  onset = jnp.asarray(onset)[:, :, None]
  for seed in range(4):
    a, b, flipped, f = pipeline.augment(onset, jnp.asarray(apex), jax.random.key(seed),
                                        max_rotation_deg=8.0, max_scale=0.08, max_shift=0.03,
                                        flip_prob=0.5, flow=jnp.asarray(flow))
    rewarped = np.asarray(warp(a[None], f[None]))[0]
    inner = (slice(12, 52), slice(12, 52))
    err = np.abs(rewarped - np.asarray(b))[inner].mean()
    unflipped_err = np.abs(np.asarray(warp(a[None], jnp.asarray(flow)[None]))[0] -
                           np.asarray(b))[inner].mean()
    assert err < 0.01, (seed, bool(flipped), err)
    assert err < 0.5 * unflipped_err  # the untransformed field does not do it


def _model(choice):
  config = from_file(CONFIG, "synthetic_tiny").model
  config.unlock()
  config.motion = choice
  return model_lib.build_model(config)


@pytest.mark.parametrize("choice", motion.MOTIONS)
def test_each_motion_choice_has_the_branches_it_says(choice):
  model = _model(choice)
  params = jax.eval_shape(lambda: model_lib.init_variables(model, jax.random.key(0)))["params"]
  assert ("dgm" in params) == motion.uses_dgm(choice)
  assert ("embed_displacement" in params) == motion.uses_dgm(choice)
  assert ("embed_flow" in params) == motion.uses_flow(choice)
  assert "embed_apex" in params


def test_the_flow_reaches_the_logits_and_is_required():
  model = _model("tvl1")
  variables = model_lib.init_variables(model, jax.random.key(0))
  s = model.config.image_size
  onset = jnp.asarray(np.random.default_rng(0).random((2, s, s, 1)), jnp.float32)
  flow = jnp.ones((2, s, s, 2), jnp.float32)
  apply = jax.jit(model.apply)
  logits, _ = apply(variables, onset, onset[:, ::-1], flow=flow)
  other, _ = apply(variables, onset, onset[:, ::-1], flow=-flow)
  assert logits.shape == (2, 3) and not np.allclose(logits, other)
  with pytest.raises(InputError, match="needs flow"):
    jax.eval_shape(lambda: model.apply(variables, onset, onset))


def test_motion_none_needs_another_input():
  config = from_file(CONFIG, "synthetic_tiny").model
  config.unlock()
  config.motion, config.inputs = "none", ("displacement",)
  with pytest.raises(InputError, match="no input"):
    model_lib.build_model(config)
  config.motion = "optical"
  with pytest.raises(InputError, match="model.motion must be one of"):
    model_lib.build_model(config)


def _distractors(tmp_path, name, **nuisances):
  config = synthetic.CorpusConfig(subjects=1, clips_per_subject=2, databases=("casme2",),
                                  extra_clips=False, cropped=False, **nuisances)
  synthetic.generate_corpus(tmp_path / name, config)
  manifest = json.loads((tmp_path / name / "manifest.json").read_text())
  return [c["distractors"] for c in manifest["clips"]]


def test_one_switch_and_one_magnitude_per_nuisance(tmp_path):
  default = _distractors(tmp_path, "default", blink_rate=1.0)
  assert all({"drift_px_raw", "drift_deg", "flicker", "noise_sigma", "blink"} <= set(d)
             for d in default)
  # Switching one off leaves the others as they were.
  no_noise = _distractors(tmp_path, "no_noise", blink_rate=1.0, sensor_noise=False)
  for a, b in zip(default, no_noise):
    assert "noise_sigma" not in b
    assert {k: v for k, v in a.items() if k != "noise_sigma"} == b
  # A magnitude scales its nuisance; every nuisance off leaves none.
  strong = _distractors(tmp_path, "strong", blink_rate=1.0, head_translation_px=2.5,
                        sensor_noise_sigma=5.0)
  for a, b in zip(default, strong):
    assert b["drift_px_raw"] == pytest.approx(4 * a["drift_px_raw"])
    assert b["noise_sigma"] == pytest.approx(2 * a["noise_sigma"])
  assert _distractors(tmp_path, "off", distractors=False) == [{}, {}]
  with pytest.raises(ValueError, match="blink_rate"):
    synthetic.CorpusConfig(blink_rate=1.5)


def test_table_variants_set_the_motion_budget_and_one_nuisance():
  from frldgt_jax import loso_data  # pylint: disable=g-import-not-at-top
  casme2 = CONFIG.replace("frldgt_composite", "frldgt_casme2")
  config = from_file(casme2, "synthetic,reduced,dgm+tvl1,only_blinks")
  loso_data.validate_config(config)
  assert config.model.motion == "dgm+tvl1"
  assert config.total_steps - config.dgm_pretrain_steps == 200  # the reduced stage 2
  corpus = loso_data.corpus_config(config)
  assert corpus.databases == ("casme2",) and corpus.blinks and corpus.blink_rate == 1.0
  assert not any(corpus.nuisance_on(n) for n in synthetic.NUISANCES if n != "blinks")
  default = from_file(CONFIG, "synthetic")
  assert loso_data.synthetic_dirs(default)[0].parent.name == "subjects4_clips6_seed0"
  names = {loso_data.synthetic_dirs(from_file(casme2, f"synthetic,{v}"))[0].parent.name
           for v in ("clean", "only_noise", "only_jpeg", "reduced")}
  assert len(names) == 4  # each corpus in its own folder ('reduced' keeps the default one)
  assert from_file(CONFIG, "synthetic,nomotion").model.motion == "none"
