"""SAT3D's training input: (source, reference) pairs, target sets and camera views, via tf.data.

Step-indexed: the batch of step s is drawn with TensorFlow's stateless
RNG from (seed, s), so resumed runs see the same pairs. With a pool (`pool_size` N > 0) the
training set is the first N examples of that stream, cycled: step s gets the examples of draw
s mod (N / batch). The evaluation set (`make_eval_pipeline`) is a fixed set of pairs drawn from
the same distribution on a separately salted stream: the same pairs whatever the training step,
and, with seeds, never a training latent (a latent file's rows are shared by both). A batch
holds
  z_src, z_ref [B, z_dim]            seeded latents (`source = 'seeds'`), or
  src_index, ref_index [B] int32     rows of a latent file (`source = 'latents'`),
  targets [B, A] float32             multi-hot target sets over the measured attributes,
  views [B, V, 2] float32            (yaw, pitch) offsets from the frontal camera, radians.

Camera distribution. The default approximates FFHQ's pose distribution as EG3D's dataset labels
show it: mostly frontal, yaw spread wider than pitch: yaw ~ N(0, 0.3) clipped to +-0.8 rad,
pitch ~ N(0, 0.1) clipped to +-0.35 rad (configurable: config.views.*). It is an approximation
chosen by this project, not a fit to the labels.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
  import tensorflow as tf


def _tf():
  """TensorFlow, imported when a batch is drawn, not with this module: PairDraw and the SAT3D
  task build without it (the benchmark feeds in-memory batches where TensorFlow is absent)."""
  return importlib.import_module("tensorflow")


def _seed(seed: int, step, salt: int):
  tf = _tf()
  return tf.random.experimental.stateless_fold_in(
      tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)]), salt)


def _clipped_normal(shape, seed, mean, std, limit):
  tf = _tf()
  x = mean + std * tf.random.stateless_normal(shape, seed=seed)
  return tf.clip_by_value(x, mean - limit, mean + limit)


def sample_targets(u: tf.Tensor, count: tf.Tensor, allowed: Sequence[int],
                   num_attributes: int) -> tf.Tensor:
  """Multi-hot [B, A]: per row the `count` allowed attributes with the largest scores `u`."""
  tf = _tf()
  allowed = tf.constant(list(allowed), tf.int32)
  u = tf.gather(u, allowed, axis=1)  # [B, |allowed|]
  ranks = tf.argsort(tf.argsort(-u, axis=1), axis=1)
  chosen = tf.cast(ranks < count[:, None], tf.float32)
  # Scatter the chosen columns back to their attribute positions: [B, |allowed|] -> [B, A].
  placement = tf.one_hot(allowed, num_attributes, dtype=tf.float32)  # [|allowed|, A]
  return tf.matmul(chosen, placement)


# Salts of the two streams: training draws use salts 1..6 (unchanged since the first runs, so
# their pairs stay what they were), the evaluation set 101..106.
_TRAIN_SALT, _EVAL_SALT = 0, 100


@dataclasses.dataclass(frozen=True)
class PairDraw:
  """What one batch of examples is drawn from (shared by the training and evaluation sets).

  Attributes:
    batch_size: examples per global batch.
    z_dim: latent size (seeded sources), ignored with `num_latents`.
    num_attributes: A, the measured attributes (width of `targets`).
    target_attributes: indices of the attributes that may be targets.
    max_targets: each example edits 1..max_targets of them.
    views: V cameras per example; yaw/pitch_{mean,std,limit}: their clipped normals (radians).
    num_latents: 0 for seeded pairs, else rows of a latent file drawn as indices.
  """
  batch_size: int
  z_dim: int
  num_attributes: int
  target_attributes: tuple[int, ...]
  max_targets: int
  views: int
  yaw_mean: float
  yaw_std: float
  yaw_limit: float
  pitch_mean: float
  pitch_std: float
  pitch_limit: float
  num_latents: int = 0

  def __post_init__(self):
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")
    if self.max_targets < 1 or self.max_targets > len(self.target_attributes):
      raise ValueError(f"max_targets={self.max_targets} must be in "
                       f"[1, {len(self.target_attributes)}]")


def _draw_batch(index, draw: PairDraw, *, seed: int, salt: int) -> dict:
  """The `index`-th batch of the stream (seed, salt): a dict of tensors (see the module doc)."""
  tf = _tf()
  def key(k):
    return _seed(seed, index, salt + k)

  b = draw.batch_size
  batch = {}
  if draw.num_latents:
    batch["src_index"] = tf.random.stateless_uniform([b], key(1), 0, draw.num_latents, tf.int32)
    batch["ref_index"] = tf.random.stateless_uniform([b], key(2), 0, draw.num_latents, tf.int32)
  else:
    batch["z_src"] = tf.random.stateless_normal([b, draw.z_dim], key(1))
    batch["z_ref"] = tf.random.stateless_normal([b, draw.z_dim], key(2))
  count = tf.random.stateless_uniform([b], key(3), 1, draw.max_targets + 1, tf.int32)
  u = tf.random.stateless_uniform([b, draw.num_attributes], key(4))
  batch["targets"] = sample_targets(u, count, draw.target_attributes, draw.num_attributes)
  yaw = _clipped_normal([b, draw.views], key(5), draw.yaw_mean, draw.yaw_std, draw.yaw_limit)
  pitch = _clipped_normal([b, draw.views], key(6), draw.pitch_mean, draw.pitch_std,
                          draw.pitch_limit)
  batch["views"] = tf.stack([yaw, pitch], axis=-1)
  return batch


def make_pairs_pipeline(draw: PairDraw, *, seed: int, start_step: int, total_steps: int,
                        rows: slice = slice(None), pool_size: int = 0) -> Iterator[dict]:
  """Rows `rows` (this process's share) of every step's batch, `start_step` to `total_steps`.

  pool_size: 0 = fresh examples every step; N > 0 = a fixed training set of N examples (a
  multiple of batch_size), cycled in order: step s gets draw s mod (N / batch_size).
  """
  tf = _tf()
  if pool_size < 0 or pool_size % draw.batch_size:
    raise ValueError(f"pool_size={pool_size} must be 0 (fresh pairs every step) or a positive "
                     f"multiple of the batch size {draw.batch_size}")
  draws = pool_size // draw.batch_size

  def make(step):
    index = step % draws if draws else step
    batch = _draw_batch(index, draw, seed=seed, salt=_TRAIN_SALT)
    return {k: v[rows] for k, v in batch.items()}

  dataset = tf.data.Dataset.range(start_step, total_steps).map(make).prefetch(2)
  return dataset.as_numpy_iterator()


def make_eval_pipeline(draw: PairDraw, *, seed: int, num_pairs: int, rows: slice = slice(None)
                       ) -> Iterator[dict]:
  """Rows `rows` of the fixed evaluation set: `num_pairs` examples (a multiple of batch_size)
  in num_pairs / batch_size batches, the same at every call (no step enters), from the training
  distribution on a stream apart from the training one."""
  tf = _tf()
  if num_pairs < 1 or num_pairs % draw.batch_size:
    raise ValueError(f"the evaluation set size {num_pairs} must be a positive multiple of the "
                     f"batch size {draw.batch_size}")

  def make(index):
    batch = _draw_batch(index, draw, seed=seed, salt=_EVAL_SALT)
    return {k: v[rows] for k, v in batch.items()}

  dataset = tf.data.Dataset.range(num_pairs // draw.batch_size).map(make)
  return dataset.as_numpy_iterator()
