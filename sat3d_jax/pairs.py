"""SAT3D's training input: (source, reference) pairs, target sets and camera views, via tf.data.

Step-indexed (launch/trainer/task.py): the batch of step s is drawn with TensorFlow's stateless
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

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from launch.trainer.task import InputSpec


def _seed(seed: int, step, salt: int):
  return tf.random.experimental.stateless_fold_in(
      tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)]), salt)


def _clipped_normal(shape, seed, mean, std, limit):
  x = mean + std * tf.random.stateless_normal(shape, seed=seed)
  return tf.clip_by_value(x, mean - limit, mean + limit)


def sample_targets(u: tf.Tensor, count: tf.Tensor, allowed: Sequence[int], num_attributes: int
                   ) -> tf.Tensor:
  """Multi-hot [B, A]: per row the `count` allowed attributes with the largest scores `u`."""
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


def _check_draw_args(batch_size, target_attributes, max_targets):
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if max_targets < 1 or max_targets > len(target_attributes):
    raise ValueError(f"max_targets={max_targets} must be in [1, {len(target_attributes)}]")


def _draw_batch(index, *, seed: int, salt: int, batch_size: int, z_dim: int,
                num_attributes: int, target_attributes: Sequence[int], max_targets: int,
                views: int, yaw_mean: float, yaw_std: float, yaw_limit: float,
                pitch_mean: float, pitch_std: float, pitch_limit: float,
                num_latents: int = 0) -> dict:
  """The `index`-th batch of the stream (seed, salt): a dict of tensors (see the module doc)."""
  def key(k):
    return _seed(seed, index, salt + k)

  batch = {}
  if num_latents:
    batch["src_index"] = tf.random.stateless_uniform([batch_size], key(1), 0, num_latents,
                                                     tf.int32)
    batch["ref_index"] = tf.random.stateless_uniform([batch_size], key(2), 0, num_latents,
                                                     tf.int32)
  else:
    batch["z_src"] = tf.random.stateless_normal([batch_size, z_dim], key(1))
    batch["z_ref"] = tf.random.stateless_normal([batch_size, z_dim], key(2))
  count = tf.random.stateless_uniform([batch_size], key(3), 1, max_targets + 1, tf.int32)
  u = tf.random.stateless_uniform([batch_size, num_attributes], key(4))
  batch["targets"] = sample_targets(u, count, target_attributes, num_attributes)
  yaw = _clipped_normal([batch_size, views], key(5), yaw_mean, yaw_std, yaw_limit)
  pitch = _clipped_normal([batch_size, views], key(6), pitch_mean, pitch_std, pitch_limit)
  batch["views"] = tf.stack([yaw, pitch], axis=-1)
  return batch


def make_pairs_pipeline(spec: InputSpec, *, seed: int, total_steps: int, batch_size: int,
                        z_dim: int, num_attributes: int, target_attributes: Sequence[int],
                        max_targets: int, views: int, yaw_mean: float, yaw_std: float,
                        yaw_limit: float, pitch_mean: float, pitch_std: float,
                        pitch_limit: float, num_latents: int = 0, pool_size: int = 0
                        ) -> Iterator[dict]:
  """This process's share of every step's batch, from `spec.start_step` to `total_steps`.

  pool_size: 0 = fresh examples every step; N > 0 = a fixed training set of N examples (a
  multiple of batch_size), cycled in order: step s gets draw s mod (N / batch_size).
  """
  _check_draw_args(batch_size, target_attributes, max_targets)
  if pool_size < 0 or pool_size % batch_size:
    raise ValueError(f"pool_size={pool_size} must be 0 (fresh pairs every step) or a positive "
                     f"multiple of the batch size {batch_size}")
  rows = spec.process_slice(batch_size)
  draws = pool_size // batch_size

  def make(step):
    index = step % draws if draws else step
    batch = _draw_batch(index, seed=seed, salt=_TRAIN_SALT, batch_size=batch_size, z_dim=z_dim,
                        num_attributes=num_attributes, target_attributes=target_attributes,
                        max_targets=max_targets, views=views, yaw_mean=yaw_mean,
                        yaw_std=yaw_std, yaw_limit=yaw_limit, pitch_mean=pitch_mean,
                        pitch_std=pitch_std, pitch_limit=pitch_limit, num_latents=num_latents)
    return {k: v[rows.start:rows.stop] for k, v in batch.items()}

  dataset = tf.data.Dataset.range(spec.start_step, total_steps).map(make).prefetch(2)
  return dataset.as_numpy_iterator()


def make_eval_pipeline(spec: InputSpec, *, seed: int, num_pairs: int, batch_size: int,
                       z_dim: int, num_attributes: int, target_attributes: Sequence[int],
                       max_targets: int, views: int, yaw_mean: float, yaw_std: float,
                       yaw_limit: float, pitch_mean: float, pitch_std: float,
                       pitch_limit: float, num_latents: int = 0) -> Iterator[dict]:
  """This process's share of the fixed evaluation set: `num_pairs` examples (a multiple of
  batch_size) in num_pairs / batch_size batches, the same at every call (no step enters), from
  the training distribution on a stream apart from the training one."""
  _check_draw_args(batch_size, target_attributes, max_targets)
  if num_pairs < 1 or num_pairs % batch_size:
    raise ValueError(f"the evaluation set size {num_pairs} must be a positive multiple of the "
                     f"batch size {batch_size}")
  rows = spec.process_slice(batch_size)

  def make(index):
    batch = _draw_batch(index, seed=seed, salt=_EVAL_SALT, batch_size=batch_size, z_dim=z_dim,
                        num_attributes=num_attributes, target_attributes=target_attributes,
                        max_targets=max_targets, views=views, yaw_mean=yaw_mean,
                        yaw_std=yaw_std, yaw_limit=yaw_limit, pitch_mean=pitch_mean,
                        pitch_std=pitch_std, pitch_limit=pitch_limit, num_latents=num_latents)
    return {k: v[rows.start:rows.stop] for k, v in batch.items()}

  dataset = tf.data.Dataset.range(num_pairs // batch_size).map(make)
  return dataset.as_numpy_iterator()


def read_latent_file(path: str) -> dict[str, np.ndarray]:
  """Reads a latent file: `.npz` with `ws` [N, num_ws, w_dim], optional `c` [N, 25] (the camera
  each image was taken from) and optional `generator` (path of pivotal-tuned params).

  Raises a ValueError naming the file and the problem for anything else.
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable latent .npz file ({e})") from e
  if "ws" not in data:
    raise ValueError(f"{path}: latent file has no 'ws' array (found: {sorted(data)})")
  ws = data["ws"]
  if ws.ndim != 3:
    raise ValueError(f"{path}: 'ws' must be [N, num_ws, w_dim], got shape {ws.shape}")
  if not np.all(np.isfinite(ws)):
    raise ValueError(f"{path}: 'ws' contains non-finite values")
  if "c" in data and data["c"].shape != (ws.shape[0], 25):
    raise ValueError(f"{path}: 'c' must be [N, 25] with N={ws.shape[0]}, got {data['c'].shape}")
  unknown = set(data) - {"ws", "c", "generator"}
  if unknown:
    raise ValueError(f"{path}: unexpected arrays {sorted(unknown)} (allowed: ws, c, generator)")
  out = {"ws": ws.astype(np.float32)}
  if "c" in data:
    out["c"] = data["c"].astype(np.float32)
  if "generator" in data:
    out["generator"] = str(data["generator"])
  return out


def write_latent_file(path: str, ws: np.ndarray, c: np.ndarray | None = None,
                      generator: str | None = None) -> None:
  """Writes a latent file in the format `read_latent_file` reads."""
  arrays = {"ws": np.asarray(ws, np.float32)}
  if c is not None:
    arrays["c"] = np.asarray(c, np.float32)
  if generator is not None:
    arrays["generator"] = np.asarray(str(generator))
  np.savez(path, **arrays)
