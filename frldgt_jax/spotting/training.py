"""Training the spotting model: per-frame labels, window batches, the pure train step.

A corpus of long videos becomes, per video, its motion features [T, F] (features.py) and its
per-frame labels [T] (0 none, 1 micro, 2 macro: `frame_labels`). All videos are concatenated into
one array that lives on the device (the task's `frozen()`, as FRL-DGT's dataset does), with the
video each frame belongs to. A batch is a set of window *starts*; the step gathers windows of
`window` frames, masks the frames that fall into a different video than the window's first frame,
and minimises the class-weighted per-frame cross-entropy. Class weights are the inverse square
root of each class's frame frequency in the fold's training videos (expressions are a few
percent of the frames; a full inverse weighting made the net fire on every head movement).
Augmentation on the device: each feature column of a window is scaled by exp(N(0, sigma)) and
shifted by N(0, sigma) / 4 (the per-video normalisation leaves a small offset from video to
video), so the net cannot count on one video's exact levels.

Every function here is pure or a NumPy sampler seeded by (seed, fold, step), so a batch depends
only on those; `launch/tasks/spotting.py` binds them to the training driver.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from frldgt_jax.spotting import model as model_lib
from frldgt_jax.spotting.intervals import Interval

LABELS = {"micro": 1, "macro": 2}


def frame_labels(frame_numbers: np.ndarray, intervals: Sequence[Interval]) -> np.ndarray:
  """int32 [T]: 0 none, 1 micro, 2 macro per frame (frame numbers as the intervals count);
  where a micro- and a macro-expression overlap the frame is micro (the rarer, harder class)."""
  numbers = np.asarray(frame_numbers)
  labels = np.zeros(len(numbers), np.int32)
  for kind in ("macro", "micro"):
    for iv in intervals:
      if iv.kind == kind:
        labels[(numbers >= iv.onset) & (numbers <= iv.offset)] = LABELS[kind]
  return labels


def class_weights(labels: np.ndarray) -> np.ndarray:
  """float32 [3]: frequency^-1/2 per class, scaled so the mean weight over the frames is 1."""
  counts = np.bincount(np.asarray(labels).ravel(), minlength=3).astype(np.float64)
  freq = np.maximum(counts, 1.0) / max(counts.sum(), 1.0)
  w = freq ** -0.5
  return (w / (w * freq).sum()).astype(np.float32)


def build_model(config: ml_collections.ConfigDict) -> model_lib.SpottingNet:
  """The spotting net a config's `model` section describes."""
  m = config.model
  return model_lib.SpottingNet(width=int(m.width), kernel=int(m.kernel),
                               dilations=tuple(int(d) for d in m.dilations))


def build_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW with warmup and cosine decay over config.total_steps, clipped gradients."""
  o = config.optimizer
  warmup = min(int(o.warmup_steps), max(int(config.total_steps) - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, warmup,
                                                max(int(config.total_steps), warmup + 1),
                                                end_value=o.learning_rate * 0.05)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip_norm),
                     optax.adamw(schedule, weight_decay=o.weight_decay))


def gather_windows(values: jax.Array, starts: jax.Array, window: int) -> jax.Array:
  """values [N, ...] -> [B, window, ...] at rows starts[b] .. starts[b] + window - 1."""
  index = starts[:, None] + jnp.arange(window)[None]
  return values[jnp.clip(index, 0, values.shape[0] - 1)]


def make_train_fns(config: ml_collections.ConfigDict, num_features: int):
  """(init_state(rng), train_step(state, frozen, batch, rng)) for one model (one fold).

  frozen: {'features': float32 [N, F], 'labels': int32 [N], 'video': int32 [N]};
  batch: {'start': int32 [B], 'weights': float32 [3]}.
  """
  model, optimizer = build_model(config), build_optimizer(config)
  window, sigma = int(config.window), float(config.augment.feature_jitter)

  def init_state(rng):
    params = model.init(rng, jnp.zeros((1, window, num_features), jnp.float32))["params"]
    return {"params": params, "opt": optimizer.init(params)}

  def train_step(state, frozen, batch, rng):
    starts = batch["start"]
    x = gather_windows(frozen["features"], starts, window)
    y = gather_windows(frozen["labels"], starts, window)
    same = gather_windows(frozen["video"], starts, window) == frozen["video"][starts][:, None]
    k1, k2 = jax.random.split(rng)
    shape = (x.shape[0], 1, x.shape[2])
    x = x * jnp.exp(sigma * jax.random.normal(k1, shape)) + sigma / 4 * jax.random.normal(k2, shape)
    w = batch["weights"][y] * same

    def loss_fn(params):
      logits = model.apply({"params": params}, x)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      return (ce * w).sum() / jnp.maximum(w.sum(), 1.0), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    hit = (jnp.argmax(logits, -1) == y) * same
    expr = (y > 0) * same
    metrics = {"loss": loss, "frame_accuracy": hit.sum() / jnp.maximum(same.sum(), 1),
               "expression_recall": (hit * expr).sum() / jnp.maximum(expr.sum(), 1)}
    return {"params": params, "opt": opt}, metrics

  return init_state, train_step


def window_starts(video_bounds: Sequence[tuple[int, int]], window: int) -> np.ndarray:
  """Every allowed window start (int64) of the videos [(first, stop)) in the concatenation:
  windows lie inside one video, or start at its first frame when it is shorter than `window`."""
  return np.concatenate([np.arange(a, max(a, b - window) + 1) for a, b in video_bounds])


def make_batch_sampler(seed: int, fold_starts: Sequence[np.ndarray],
                       fold_weights: Sequence[np.ndarray], batch_size: int, stacked: bool):
  """batch_for_step(step) -> {'start': int32 [M, B] (or [B]), 'weights': float32 [M, 3] (or
  [3])}: uniform window starts of each fold's training videos, seeded by (seed, fold, step)."""
  def batch_for_step(step: int) -> dict:
    starts, weights = [], []
    for m, (allowed, w) in enumerate(zip(fold_starts, fold_weights)):
      rng = np.random.default_rng([seed, m, step])
      starts.append(allowed[rng.integers(0, len(allowed), batch_size)].astype(np.int32))
      weights.append(np.asarray(w, np.float32))
    if not stacked:
      return {"start": starts[0], "weights": weights[0]}
    return {"start": np.stack(starts), "weights": np.stack(weights)}
  return batch_for_step
