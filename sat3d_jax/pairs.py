"""SAT3D's training input: (source, reference) pairs, target sets and camera views.

Step-indexed: the batch of step s is drawn with a stateless RNG from (seed, s), so resumed runs
see the same pairs. With a pool (`pool_size` N > 0) the training set is the first N examples of
that stream, cycled: step s gets the examples of draw s mod (N / batch). The evaluation set
(`make_eval_pipeline`) is a fixed set of pairs drawn from the same distribution on a separately
salted stream: the same pairs whatever the training step, and, with seeds, never a training
latent (a latent file's rows are shared by both). A batch holds
  z_src, z_ref [B, z_dim]            seeded latents (`source = 'seeds'`), or
  src_index, ref_index [B] int32     rows of a latent file (`source = 'latents'`),
  targets [B, A] float32             multi-hot target sets over the measured attributes,
  views [B, V, 2] float32            (yaw, pitch) offsets from the frontal camera, radians.

Two backends draw the random numbers (`backend`, config field `pairs_backend`):
- 'tensorflow': a tf.data pipeline over TensorFlow's stateless Philox RNG, prefetching two steps
  ahead (the project's input pipeline wherever TensorFlow is installed; its streams are the ones
  every run before the numpy backend existed drew);
- 'numpy': NumPy's Philox bit generator keyed by (seed, step, salt), drawn when the iterator
  asks (a batch is a few kilobytes: microseconds), for images without TensorFlow (the GPU image).
The two give the same distribution, not the same numbers: a run keeps the backend it started
with (the driver records it with each checkpoint). Both draw the same raw numbers (uniforms,
normals, integers); `_finish` turns them into the batch, so the shaping is written once.

Camera distribution. The default approximates FFHQ's pose distribution as EG3D's dataset labels
show it: mostly frontal, yaw spread wider than pitch: yaw ~ N(0, 0.3) clipped to +-0.8 rad,
pitch ~ N(0, 0.1) clipped to +-0.35 rad (configurable: config.views.*). It is an approximation
chosen by this project, not a fit to the labels.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Iterator, Sequence

import numpy as np

BACKENDS = ("tensorflow", "numpy")


def tensorflow_available() -> bool:
  """Whether TensorFlow is installed here (it is absent from some accelerator images); one that
  is installed but fails to import raises its own error."""
  try:
    importlib.import_module("tensorflow")
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != "tensorflow":
      raise
    return False
  return True


def resolve_backend(name: str) -> str:
  """'auto' -> 'tensorflow' where it imports, else 'numpy'; a named backend is checked."""
  if name == "auto":
    return "tensorflow" if tensorflow_available() else "numpy"
  if name not in BACKENDS:
    raise ValueError(f"pairs backend must be 'auto' or one of {BACKENDS}, got {name!r}")
  if name == "tensorflow" and not tensorflow_available():
    raise ValueError("pairs backend 'tensorflow' needs TensorFlow (pip install tensorflow-cpu), "
                     "or use 'numpy'")
  return name


def sample_targets(u: np.ndarray, count: np.ndarray, allowed: Sequence[int],
                   num_attributes: int) -> np.ndarray:
  """Multi-hot [B, A]: per row the `count` allowed attributes with the largest scores `u`."""
  allowed = np.asarray(list(allowed), np.int64)
  scores = u[:, allowed]  # [B, |allowed|]
  ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
  chosen = (ranks < count[:, None]).astype(np.float32)
  targets = np.zeros((u.shape[0], num_attributes), np.float32)
  targets[:, allowed] = chosen
  return targets


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


def _raw_tensorflow(tf, index, draw: PairDraw, *, seed: int, salt: int) -> dict:
  """The raw numbers of batch `index` of the stream (seed, salt), as TensorFlow tensors (`tf`
  is the module, passed in: an import inside a tf.data function makes AutoGraph warn)."""
  def key(k):
    return tf.random.experimental.stateless_fold_in(
        tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)]), salt + k)

  b, raw = draw.batch_size, {}
  if draw.num_latents:
    raw["src_index"] = tf.random.stateless_uniform([b], key(1), 0, draw.num_latents, tf.int32)
    raw["ref_index"] = tf.random.stateless_uniform([b], key(2), 0, draw.num_latents, tf.int32)
  else:
    raw["z_src"] = tf.random.stateless_normal([b, draw.z_dim], key(1))
    raw["z_ref"] = tf.random.stateless_normal([b, draw.z_dim], key(2))
  raw["count"] = tf.random.stateless_uniform([b], key(3), 1, draw.max_targets + 1, tf.int32)
  raw["u"] = tf.random.stateless_uniform([b, draw.num_attributes], key(4))
  raw["yaw"] = tf.random.stateless_normal([b, draw.views], key(5))
  raw["pitch"] = tf.random.stateless_normal([b, draw.views], key(6))
  return raw


def step_rng(seed: int, index: int, salt: int) -> np.random.Generator:
  """NumPy's Philox keyed by (seed, index, salt): the same numbers whenever it is asked again,
  so a stream drawn from it resumes at any index."""
  return np.random.Generator(np.random.Philox(
      key=np.random.SeedSequence([seed, index, salt]).generate_state(2, np.uint64)))


def _raw_numpy(index: int, draw: PairDraw, *, seed: int, salt: int) -> dict:
  """The raw numbers of batch `index` of the stream (seed, salt), from NumPy's Philox."""
  def rng(k):
    return step_rng(seed, index, salt + k)

  b, raw = draw.batch_size, {}
  if draw.num_latents:
    raw["src_index"] = rng(1).integers(0, draw.num_latents, b, dtype=np.int32)
    raw["ref_index"] = rng(2).integers(0, draw.num_latents, b, dtype=np.int32)
  else:
    raw["z_src"] = rng(1).standard_normal((b, draw.z_dim), np.float32)
    raw["z_ref"] = rng(2).standard_normal((b, draw.z_dim), np.float32)
  raw["count"] = rng(3).integers(1, draw.max_targets + 1, b, dtype=np.int32)
  raw["u"] = rng(4).random((b, draw.num_attributes), np.float32)
  raw["yaw"] = rng(5).standard_normal((b, draw.views), np.float32)
  raw["pitch"] = rng(6).standard_normal((b, draw.views), np.float32)
  return raw


def _finish(raw: dict, draw: PairDraw, rows: slice) -> dict:
  """A batch (see the module doc) from raw numbers (numpy arrays of either backend), rows
  `rows` of it."""
  def clipped(x, mean, std, limit):
    return np.clip(np.float32(mean) + np.float32(std) * x, np.float32(mean - limit),
                   np.float32(mean + limit))

  batch = {k: raw[k] for k in ("z_src", "z_ref", "src_index", "ref_index") if k in raw}
  batch["targets"] = sample_targets(raw["u"], raw["count"], draw.target_attributes,
                                    draw.num_attributes)
  yaw = clipped(raw["yaw"], draw.yaw_mean, draw.yaw_std, draw.yaw_limit)
  pitch = clipped(raw["pitch"], draw.pitch_mean, draw.pitch_std, draw.pitch_limit)
  batch["views"] = np.stack([yaw, pitch], axis=-1).astype(np.float32)
  return {k: v[rows] for k, v in batch.items()}


def _stream(indices: Sequence[int], draw: PairDraw, *, seed: int, salt: int, rows: slice,
            backend: str, prefetch: bool) -> Iterator[dict]:
  """The batches of `indices` (draw numbers of the stream (seed, salt)), one after another."""
  if backend == "numpy":
    return (_finish(_raw_numpy(int(i), draw, seed=seed, salt=salt), draw, rows)
            for i in indices)
  if backend != "tensorflow":
    raise ValueError(f"pairs backend must be one of {BACKENDS}, got {backend!r}")
  tf = importlib.import_module("tensorflow")
  dataset = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64)).map(
      lambda i: _raw_tensorflow(tf, i, draw, seed=seed, salt=salt))
  if prefetch:
    dataset = dataset.prefetch(2)
  return (_finish(raw, draw, rows) for raw in dataset.as_numpy_iterator())


def make_pairs_pipeline(draw: PairDraw, *, seed: int, start_step: int, total_steps: int,
                        rows: slice = slice(None), pool_size: int = 0,
                        backend: str = "tensorflow") -> Iterator[dict]:
  """Rows `rows` (this process's share) of every step's batch, `start_step` to `total_steps`.

  pool_size: 0 = fresh examples every step; N > 0 = a fixed training set of N examples (a
  multiple of batch_size), cycled in order: step s gets draw s mod (N / batch_size).
  """
  if pool_size < 0 or pool_size % draw.batch_size:
    raise ValueError(f"pool_size={pool_size} must be 0 (fresh pairs every step) or a positive "
                     f"multiple of the batch size {draw.batch_size}")
  draws = pool_size // draw.batch_size
  steps = range(start_step, total_steps)
  indices = [step % draws for step in steps] if draws else list(steps)
  return _stream(indices, draw, seed=seed, salt=_TRAIN_SALT, rows=rows, backend=backend,
                 prefetch=True)


def make_eval_pipeline(draw: PairDraw, *, seed: int, num_pairs: int, rows: slice = slice(None),
                       backend: str = "tensorflow") -> Iterator[dict]:
  """Rows `rows` of the fixed evaluation set: `num_pairs` examples (a multiple of batch_size)
  in num_pairs / batch_size batches, the same at every call (no step enters), from the training
  distribution on a stream apart from the training one."""
  if num_pairs < 1 or num_pairs % draw.batch_size:
    raise ValueError(f"the evaluation set size {num_pairs} must be a positive multiple of the "
                     f"batch size {draw.batch_size}")
  return _stream(range(num_pairs // draw.batch_size), draw, seed=seed, salt=_EVAL_SALT,
                 rows=rows, backend=backend, prefetch=False)
