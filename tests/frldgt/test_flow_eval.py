"""The true motion of the generated corpus and the scores of a field against it.

frldgt_jax/data/synthetic.py `true_motion` is checked on clips it generates: warping the aligned
onset by the true field explains the aligned apex better than zero, half or one and a half times
the field (the optimum of a photometric fit sits at the true scale), and with the AUs switched off
what is left is the rigid head drift, an affine field. frldgt_jax/flow_eval.py is checked on
fields whose scores are known in closed form.
"""
import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from frldgt_jax import flow_eval
from frldgt_jax.data import align, databases, synthetic
from frldgt_jax.warp import warp

SIZE = 64


def test_scores_of_known_fields():
  rng = np.random.default_rng(0)
  true = rng.normal(size=(3, 8, 8, 2))
  region = np.zeros((3, 8, 8), bool)
  region[:, 2:6, 2:6] = True
  norm = np.linalg.norm(true, axis=-1)
  exact = flow_eval.flow_errors(true, true, region, threshold=0.0)
  assert exact["au_epe"] == 0 and exact["outside_epe"] == 0
  assert exact["au_cosine"] == pytest.approx(1) and exact["au_gain"] == pytest.approx(1)
  zero = flow_eval.flow_errors(np.zeros_like(true), true, region, threshold=0.0)
  assert zero["au_epe"] == pytest.approx(np.mean([n[r].mean() for n, r in zip(norm, region)]))
  assert zero["outside_epe"] == pytest.approx(np.mean([n[~r].mean()
                                                       for n, r in zip(norm, region)]))
  assert zero["au_cosine"] == 0 and zero["au_gain"] == 0
  backwards = flow_eval.flow_errors(-true, true, region, threshold=0.0)
  assert backwards["au_cosine"] == pytest.approx(-1) and backwards["au_gain"] == pytest.approx(-1)
  half = flow_eval.flow_errors(0.5 * true, true, region, threshold=0.0)
  assert half["au_gain"] == pytest.approx(0.5) and half["au_cosine"] == pytest.approx(1)
  assert half["au_epe"] == pytest.approx(0.5 * zero["au_epe"])
  # A perpendicular field: cosine 0, gain 0, whatever its size.
  perpendicular = np.stack([-true[..., 1], true[..., 0]], axis=-1) * 3
  turned = flow_eval.flow_errors(perpendicular, true, region, threshold=0.0)
  assert turned["au_cosine"] == pytest.approx(0, abs=1e-12)
  assert turned["au_gain"] == pytest.approx(0, abs=1e-12)
  # Pixels whose true motion is below the threshold do not vote on the direction.
  slow = flow_eval.flow_errors(-true, true, region, threshold=np.inf)
  assert np.isnan(slow["au_cosine"]) and slow["au_epe"] == backwards["au_epe"]
  with pytest.raises(ValueError, match="region"):
    flow_eval.flow_errors(true, true, region[:, :4])
  np.testing.assert_array_equal(flow_eval.au_region(true, 1.0), norm >= 1.0)


def _corpus(tmp_path, **fields):
  config = synthetic.CorpusConfig(subjects=1, clips_per_subject=3, databases=("casme2",),
                                  extra_clips=False, faults=False, cropped=False,
                                  sensor_noise=False, jpeg=False, illumination=False,
                                  blinks=False, **fields)
  return synthetic.generate_corpus(tmp_path, config)


def _aligned_pair(root, clip):
  """The stored onset and apex frames as the TFDS builder aligns them (float [S, S])."""
  marks = align.read_landmarks_csv(root / "landmarks_casme2.csv")
  matrix = align.similarity_from_landmarks(marks[(clip["subject_native"], clip["sample_native"])],
                                           SIZE)
  def frame(number):
    name = databases.get("casme2").frame_file(number, clip["subject_native"], None)
    image = cv2.imread(str(root / clip["raw_dir"] / name), cv2.IMREAD_GRAYSCALE)
    return align.align(image, matrix, SIZE).astype(np.float32) / 255
  return frame(clip["onset_index"]), frame(clip["apex_index"])


def test_true_motion_explains_the_stored_apex(tmp_path):
  manifest = _corpus(tmp_path)
  truth = synthetic.true_motion(tmp_path, SIZE)
  assert sorted(truth) == sorted(("casme2", c["sample"]) for c in manifest["clips"])
  for clip in manifest["clips"]:
    onset, apex = _aligned_pair(tmp_path, clip)
    field = truth[("casme2", clip["sample"])]
    region = flow_eval.au_region(field.au)
    assert 0.02 < region.mean() < 0.5
    def residual(scale, onset=onset, apex=apex, field=field, region=region):
      warped = np.asarray(warp(jnp.asarray(onset)[None, ..., None],
                               jnp.asarray(scale * field.total)[None]))[0, ..., 0]
      return float(np.mean(np.abs(warped - apex)[region]))
    at_truth = residual(1.0)
    assert at_truth < 0.8 * residual(0.0), clip["sample"]
    assert at_truth < residual(0.5) and at_truth < residual(1.5), clip["sample"]
    assert at_truth < residual(-1.0)


def test_without_action_units_the_true_motion_is_the_rigid_drift(tmp_path):
  manifest = _corpus(tmp_path, au_amplitude_px=0.0, head_translation_px=2.5,
                     head_rotation_deg=0.6)
  truth = synthetic.true_motion(tmp_path, SIZE)
  ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
  design = np.stack([xs.ravel(), ys.ravel(), np.ones(SIZE * SIZE)], axis=1)
  moved = 0
  for clip in manifest["clips"]:
    field = truth[("casme2", clip["sample"])]
    np.testing.assert_allclose(field.au, 0, atol=1e-6)
    flat = field.total.reshape(-1, 2).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    assert np.abs(design @ coef - flat).max() < 1e-3
    moved += np.abs(flat).max() > 0.05
  assert moved  # the drift is there (and it is what alignment from the onset leaves)


def test_true_motion_needs_an_alignment_it_knows(tmp_path):
  _corpus(tmp_path)
  with pytest.raises(ValueError, match="landmarks68"):
    synthetic.true_motion(tmp_path, SIZE, alignment="landmarks68")
  with pytest.raises(KeyError, match="not in the corpus"):
    synthetic.true_motion(tmp_path, SIZE, keys=[("casme2", "EP99_99")])
