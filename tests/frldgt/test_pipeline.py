"""LOSO folds, stateless samplers, the batches made from them and augmentation (data/pipeline.py).

Each process's share of a batch is tested on the task's pipeline (test_frldgt_task.py).
"""
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from frldgt_jax import training
from frldgt_jax.data import pipeline as P

T, S = 6, 12


def make_data(seed=0):
  """An in-memory prepared split: 3 databases, 9 subjects with 2..6 clips, 3 classes."""
  rng = np.random.default_rng(seed)
  database, subject = [], []
  for db, subjects in (("casme2", ["sub01", "sub02", "sub11"]), ("samm", ["6", "10", "32"]),
                       ("smic", ["s01", "s02", "s20"])):
    for k, s in enumerate(subjects):
      n = 2 + (k * 7 + len(db)) % 5
      database += [db] * n
      subject += [s] * n
  n = len(subject)
  return P.PreparedData(
      frames=rng.integers(0, 256, (n, T, S, S, 1), dtype=np.uint8),
      label=rng.integers(0, 3, n).astype(np.int64), label5=np.full(n, -1, np.int64),
      database=np.asarray(database), subject=np.asarray(subject),
      sample=np.asarray([f"clip{i}" for i in range(n)]),
      onset_index=np.zeros(n, np.int64), apex_index=np.full(n, T - 1, np.int64),
      offset_index=np.full(n, T + 2, np.int64),
      frame_indices=np.tile(np.arange(T), (n, 1)))


def test_folds_hold_out_each_subject_exactly_once():
  data = make_data()
  keys = data.subject_keys
  folds = P.loso_folds(keys)
  assert [f.test_subject for f in folds] == [
      "casme2/sub01", "casme2/sub02", "casme2/sub11", "samm/6", "samm/10", "samm/32",
      "smic/s01", "smic/s02", "smic/s20"]
  assert [f.index for f in folds] == list(range(9))
  held_out = np.concatenate([f.test_idx for f in folds])
  np.testing.assert_array_equal(np.sort(held_out), np.arange(len(data)))
  for f in folds:
    assert set(keys[f.test_idx]) == {f.test_subject}
    assert f.test_subject not in set(keys[f.train_idx])
    np.testing.assert_array_equal(np.sort(np.concatenate([f.train_idx, f.test_idx])),
                                  np.arange(len(data)))
  again = P.loso_folds(keys[::-1].copy())
  assert [f.test_subject for f in again] == [f.test_subject for f in folds]


@pytest.mark.parametrize("class_balanced", [False, True])
def test_held_out_subject_never_reaches_a_training_batch(class_balanced):
  data = make_data()
  keys = data.subject_keys
  for fold in P.loso_folds(keys):
    for step in range(150):
      index = P.train_batch_indices(3, step, fold, 8, class_balanced=class_balanced,
                                    labels=data.label)
      assert fold.test_subject not in set(keys[index])
      clip, i, j = P.frame_pair_indices(3, step, fold, 8, T)
      assert fold.test_subject not in set(keys[clip])


def test_a_fold_that_leaks_is_refused():
  folds = P.loso_folds(make_data().subject_keys)
  leaky = folds[0]._replace(train_idx=np.concatenate([folds[0].train_idx, folds[0].test_idx]))
  with pytest.raises(AssertionError, match="held-out subject casme2/sub01"):
    for step in range(50):
      P.train_batch_indices(0, step, leaky, 8)


def test_sampler_is_a_function_of_seed_fold_and_step():
  fold = P.loso_folds(make_data().subject_keys)[4]
  first = [P.train_batch_indices(7, s, fold, 5) for s in range(12)]
  resumed = [P.train_batch_indices(7, s, fold, 5) for s in range(11, 5, -1)]
  for s, batch in zip(range(11, 5, -1), resumed):
    np.testing.assert_array_equal(batch, first[s])
  assert not np.array_equal(P.train_batch_indices(8, 3, fold, 5), first[3])
  balanced = P.train_batch_indices(7, 3, fold, 5, class_balanced=True, labels=make_data().label)
  np.testing.assert_array_equal(
      balanced, P.train_batch_indices(7, 3, fold, 5, class_balanced=True,
                                      labels=make_data().label))


def test_uniform_sampler_visits_every_training_clip_once_per_epoch():
  fold = P.loso_folds(make_data().subject_keys)[2]
  n = len(fold.train_idx)
  batch = 4
  positions = np.concatenate([P.train_batch_indices(1, s, fold, batch)
                              for s in range(3 * n // batch + 1)])[:3 * n]
  for epoch in range(3):
    np.testing.assert_array_equal(np.sort(positions[epoch * n:(epoch + 1) * n]),
                                  np.sort(fold.train_idx))


def test_class_balanced_sampler_draws_classes_evenly():
  data = make_data()
  labels = data.label.copy()
  labels[: len(labels) * 2 // 3] = 0  # make class 0 dominant
  fold = P.loso_folds(data.subject_keys)[0]
  drawn = np.concatenate([P.train_batch_indices(0, s, fold, 30, class_balanced=True,
                                                labels=labels) for s in range(100)])
  share = np.bincount(labels[drawn], minlength=3) / len(drawn)
  # 3000 draws: the standard deviation of each share is about 0.009.
  np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.04)
  with pytest.raises(ValueError, match="labels >= 0"):
    P.train_batch_indices(0, 0, fold, 4, class_balanced=True, labels=-np.ones_like(labels))


def test_batch_sampler_stacks_each_folds_own_batch():
  """training.make_batch_sampler (the task's batches): row m of a stacked step is fold m's own
  sampler output, with its own labels; stage 1 holds fold m's frame pairs."""
  data = make_data()
  folds = P.loso_folds(data.subject_keys)
  config = ml_collections.ConfigDict(dict(seed=5, dgm_pretrain_steps=3, batch_size=6,
                                          pair_batch_size=4, class_balanced=False))
  labels = [np.roll(data.label, k) for k in range(len(folds))]   # each fold its own labels
  weights = np.ones((len(folds), 3), np.float32)
  sampler = training.make_batch_sampler(config, folds, labels, weights, num_frames=T,
                                        stacked=True)
  stage2 = sampler(9)
  assert stage2["index"].shape == (len(folds), 6)
  for m, fold in enumerate(folds):
    np.testing.assert_array_equal(stage2["index"][m], P.train_batch_indices(5, 9, fold, 6))
    np.testing.assert_array_equal(stage2["label"][m], labels[m][stage2["index"][m]])
  stage1 = sampler(2)
  for m, fold in enumerate(folds):
    clip, i, j = P.frame_pair_indices(5, 2, fold, 4, T)
    for key, value in (("pair_clip", clip), ("pair_i", i), ("pair_j", j)):
      np.testing.assert_array_equal(stage1[key][m], value)
  alone = training.make_batch_sampler(config, folds[4:5], labels[4:5], weights[4:5],
                                      num_frames=T, stacked=False)(9)
  np.testing.assert_array_equal(alone["index"], stage2["index"][4])


def test_frame_pairs_are_ordered_and_cover_all_pairs():
  fold = P.loso_folds(make_data().subject_keys)[0]
  seen = set()
  for step in range(40):
    clip, i, j = P.frame_pair_indices(0, step, fold, 16, T)
    assert np.all(i < j) and i.min() >= 0 and j.max() < T
    assert np.isin(clip, fold.train_idx).all()
    seen |= set(zip(i.tolist(), j.tolist()))
  assert seen == set(itertools.combinations(range(T), 2))
  onset_seen = set()
  for step in range(40):
    clip, i, j = P.frame_pair_indices(0, step, fold, 16, T, pairs="onset")
    assert np.all(i == 0) and np.isin(clip, fold.train_idx).all()
    onset_seen |= set(j.tolist())
  assert onset_seen == set(range(1, T))
  with pytest.raises(ValueError, match="pairs"):
    P.frame_pair_indices(0, 0, fold, 16, T, pairs="apex")


# ----------------------------------------------------------------------------- augmentation

def test_augment_keeps_shape_and_range_and_treats_both_frames_alike():
  rng = np.random.default_rng(0)
  onset = jnp.asarray(rng.random((S, S, 1), np.float32))
  apex = jnp.asarray(rng.random((S, S, 1), np.float32))
  fn = jax.jit(P.augment)
  flips = []
  for k in range(20):
    key = jax.random.key(k)
    a, b, flipped = fn(onset, apex, key)
    assert a.shape == (S, S, 1) and a.dtype == jnp.float32 and flipped.shape == ()
    assert float(a.min()) >= float(onset.min()) - 1e-6
    assert float(a.max()) <= float(onset.max()) + 1e-6
    same_a, same_b, same_flip = fn(onset, onset, key)
    np.testing.assert_array_equal(same_a, same_b)  # one transform for both frames
    np.testing.assert_array_equal(same_a, a)
    assert bool(same_flip) == bool(flipped)
    flips.append(bool(flipped))
  assert 0 < sum(flips) < 20


def test_augment_flip_alone_mirrors_both_frames():
  rng = np.random.default_rng(1)
  onset = jnp.asarray(rng.random((S, S, 2), np.float32))
  apex = jnp.asarray(rng.random((S, S, 2), np.float32))
  a, b, flipped = P.augment(onset, apex, jax.random.key(0), max_rotation_deg=0.0,
                            max_scale=0.0, max_shift=0.0, flip_prob=1.0)
  assert bool(flipped)
  np.testing.assert_allclose(a, onset[:, ::-1], atol=1e-6)
  np.testing.assert_allclose(b, apex[:, ::-1], atol=1e-6)
  a, b, flipped = P.augment(onset, apex, jax.random.key(0), max_rotation_deg=0.0,
                            max_scale=0.0, max_shift=0.0, flip_prob=0.0)
  assert not bool(flipped)
  np.testing.assert_allclose(a, onset, atol=1e-6)


def test_augment_rotation_is_small_and_about_the_centre():
  size = 41
  image = np.zeros((size, size, 1), np.float32)
  image[20, 36] = 1.0  # a dot 16 px right of the centre (20, 20)
  for k in range(10):
    out, _, flipped = P.augment(jnp.asarray(image), jnp.asarray(image), jax.random.key(k),
                                max_scale=0.0, max_shift=0.0, flip_prob=0.0)
    out = np.asarray(out)[:, :, 0]
    assert not bool(flipped)
    ys, xs = np.mgrid[:size, :size]
    cy, cx = (out * ys).sum() / out.sum(), (out * xs).sum() / out.sum()
    radius = np.hypot(cy - 20, cx - 20)
    angle = np.degrees(np.arctan2(cy - 20, cx - 20))
    assert abs(radius - 16) < 0.6 and abs(angle) <= 5.0 + 1.0


def test_jitter_picks_neighbouring_stored_frames():
  frames = jnp.arange(T, dtype=jnp.float32)[:, None, None, None] * jnp.ones((T, 3, 3, 1))
  pairs = set()
  for k in range(40):
    onset, apex = jax.jit(P.jitter_pair)(frames, jax.random.key(k))
    pairs.add((int(onset[0, 0, 0]), int(apex[0, 0, 0])))
  assert pairs == {(0, T - 1), (0, T - 2), (1, T - 1), (1, T - 2)}
  with pytest.raises(ValueError, match="no onset < apex"):
    P.jitter_pair(frames[:3], jax.random.key(0), max_jitter=1)


def test_augment_batch_on_uint8_frames():
  data = make_data()
  frames = training.to_float(data.frames[:5])
  onset, apex, flipped = jax.jit(P.augment_batch)(frames, jax.random.key(3))
  assert onset.shape == apex.shape == (5, S, S, 1) and flipped.shape == (5,)
  assert float(onset.min()) >= 0.0 and float(onset.max()) <= 1.0


def test_a_field_of_the_stored_pair_moves_with_the_frames():
  """augment_clip's field_fn sees the jittered *stored* pair (not the resampled one) and its
  field is moved as a flow: mirrored with dx negated, and placed before a given flow."""
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.random((T, S, S, 1)), jnp.float32)
  seen = []
  def field_fn(onset, apex):
    seen.append(onset.shape)
    return jnp.concatenate([onset - apex, onset + apex], axis=-1)   # [S, S, 2]
  flow = jnp.asarray(rng.normal(size=(S, S, 2)), jnp.float32)
  key = jax.random.key(5)
  mirror = dict(max_rotation_deg=0.0, max_scale=0.0, max_shift=0.0, flip_prob=1.0)
  onset, apex, flipped, fields = P.augment_clip(frames, key, flow=flow, field_fn=field_fn,
                                                **mirror)
  assert bool(flipped) and fields.shape == (S, S, 4) and seen == [(S, S, 1)]
  # The stored pair behind the mirrored output, and its field mirrored with dx negated.
  stored_onset, stored_apex = onset[:, ::-1], apex[:, ::-1]
  assert any(np.allclose(stored_onset, frames[i]) for i in range(T))
  expected = np.asarray(field_fn(stored_onset, stored_apex))[:, ::-1] * np.array([-1.0, 1.0])
  np.testing.assert_allclose(fields[..., :2], expected, atol=1e-6)
  np.testing.assert_allclose(fields[..., 2:], np.asarray(flow)[:, ::-1] * np.array([-1.0, 1.0]),
                             atol=1e-6)
  # Rotated frames: the field is still the stored pair's, resampled like the given flow.
  turn = dict(max_rotation_deg=5.0, max_scale=0.05, max_shift=0.03, flip_prob=0.0)
  constant = lambda o, a: jnp.broadcast_to(jnp.mean(a - o) + jnp.array([1.0, 0.0]), (S, S, 2))
  *_, moved = P.augment_clip(frames, key, field_fn=constant, **turn)
  *_, reference = P.augment_clip(frames, key, flow=constant(*P.jitter_pair(
      frames, jax.random.split(key)[0])), **turn)
  np.testing.assert_allclose(moved, reference, atol=1e-6)
  assert not np.allclose(moved, constant(*P.jitter_pair(frames, jax.random.split(key)[0])))
