"""Training input pipeline for FRL-DGT: LOSO folds, per-step samplers, augmentation.

The composite is small (442 clips at 8 x 128 x 128 bytes each, about 58 MB), so a prepared
dataset is loaded whole into numpy (`load_prepared`) and may live on the devices; training draws
*indices* into it. Every sampler is stateless: the indices of step `step` depend only on
(seed, fold, step), so a run resumes at any step without saving iterator state, and when all
folds train in one program each fold still draws its own batches from its own training subjects.
frldgt_jax/training.py (`make_batch_sampler`) makes each step's batch from these samplers, and
launch/tasks/frldgt.py streams it through tf.data, each process taking its slice
(`InputSpec.process_slice`, launch/trainer/task.py).

Leave-one-subject-out (docs/frldgt.md): subjects are keyed 'database/subject' (e.g. 'samm/6'), one
fold per subject. The held-out subject's clips can never reach a training batch of its fold:
every sampler checks its indices against the fold's test indices and raises AssertionError.

Augmentation runs in JAX on device (`augment`, `augment_clip`, `jitter_pair`): one horizontal
flip / rotation / scale / shift per example, identical for its onset and apex frames (the
displacement between them is the signal), and onset/apex jitter by picking neighbours among the
stored frames. `augment` returns `flipped`: the model swaps its left/right AU regions (and negates
dx of a flipped displacement field) itself.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import NamedTuple, Sequence

import numpy as np


# ----------------------------------------------------------------------------- loading

@dataclasses.dataclass(frozen=True)
class PreparedData:
  """A prepared split in numpy, one row per clip (features: frldgt_jax/data/builders.py)."""
  frames: np.ndarray         # uint8 [N, T, S, S, 1]
  label: np.ndarray          # int64 [N], 3-class composite (-1 outside)
  label5: np.ndarray         # int64 [N], CASME II 5-class (-1 elsewhere)
  database: np.ndarray       # str [N]
  subject: np.ndarray        # str [N], canonical per database
  sample: np.ndarray         # str [N]
  onset_index: np.ndarray    # int64 [N]
  apex_index: np.ndarray     # int64 [N]
  offset_index: np.ndarray   # int64 [N]
  frame_indices: np.ndarray  # int64 [N, T]

  def __len__(self) -> int:
    return len(self.label)

  @property
  def subject_keys(self) -> np.ndarray:
    """'database/subject' per clip: the LOSO unit (unique across databases)."""
    return np.asarray([f"{d}/{s}" for d, s in zip(self.database, self.subject)])

  def select(self, index) -> "PreparedData":
    """The clips at `index` (integer indices or a boolean mask), in that order."""
    return PreparedData(**{f.name: getattr(self, f.name)[index]
                           for f in dataclasses.fields(self)})


_STR_FIELDS = ("database", "subject", "sample")


def load_prepared(dataset_dir: str | os.PathLike, split: str = "train") -> PreparedData:
  """Loads a prepared dataset folder (`builders.dataset_dir(...)`, `builder.data_dir`) whole.

  Reads with `tfds.builder_from_directory`, so it needs no builder class to be registered.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(os.fspath(dataset_dir))
  columns: dict[str, list] = {f.name: [] for f in dataclasses.fields(PreparedData)}
  for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
    for name in columns:
      value = example[name]
      columns[name].append(value.decode("utf-8") if name in _STR_FIELDS else value)
  if not columns["label"]:
    raise ValueError(f"{dataset_dir}: split {split!r} holds no clips")
  return PreparedData(**{name: np.asarray(values) if name in _STR_FIELDS
                         else np.stack(values) for name, values in columns.items()})


# ----------------------------------------------------------------------------- folds

class Fold(NamedTuple):
  """One LOSO fold: its position, the held-out subject and the clip indices on each side."""
  index: int
  test_subject: str
  train_idx: np.ndarray
  test_idx: np.ndarray


def _natural_key(text: str) -> list:
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def loso_folds(subjects: Sequence[str]) -> list[Fold]:
  """One fold per subject, in natural sort order of the subject keys ('samm/6' < 'samm/10').

  Args:
    subjects: per-clip subject keys (use `PreparedData.subject_keys`: SAMM '6' and a CASME II
      subject must not be merged by name).
  Returns:
    [Fold(index, test_subject, train_idx, test_idx)], indices sorted ascending.
  """
  subjects = np.asarray(subjects)
  folds = []
  for i, subject in enumerate(sorted(set(subjects.tolist()), key=_natural_key)):
    test = np.flatnonzero(subjects == subject)
    train = np.flatnonzero(subjects != subject)
    folds.append(Fold(i, subject, train, test))
  return folds


def _check_held_out(indices: np.ndarray, fold: Fold) -> np.ndarray:
  leaked = np.intersect1d(indices, fold.test_idx)
  if leaked.size:
    raise AssertionError(f"fold {fold.index}: clips {leaked.tolist()} of held-out subject "
                         f"{fold.test_subject} reached a training batch")
  return indices


# ----------------------------------------------------------------------------- samplers

# Stream tags keep the samplers' random streams apart for the same (seed, fold, step).
_UNIFORM, _BALANCED, _PAIRS = 0, 1, 2


def train_batch_indices(seed: int, step: int, fold: Fold, batch_size: int, *,
                        class_balanced: bool = False,
                        labels: np.ndarray | None = None) -> np.ndarray:
  """Clip indices of training batch `step` of `fold` (int64 [batch_size]); stateless.

  Uniform: epochs of `fold.train_idx` in an order shuffled per (seed, fold, epoch); step s takes
  positions s*B .. s*B+B-1 of that endless sequence, so each epoch sees every training clip once.
  Class-balanced (needs `labels`, all >= 0 on the training clips): each slot draws a class
  uniformly among the classes present, then a clip of that class, from a numpy Generator seeded
  by (seed, fold, step).
  Raises AssertionError if an index belongs to the held-out subject.
  """
  train = np.asarray(fold.train_idx)
  if train.size == 0:
    raise ValueError(f"fold {fold.index} ({fold.test_subject}) has no training clips")
  if class_balanced:
    if labels is None:
      raise ValueError("class_balanced sampling needs the clip labels")
    train_labels = np.asarray(labels)[train]
    if np.any(train_labels < 0):
      raise ValueError("class_balanced sampling needs labels >= 0 on every training clip "
                       "(select the composite clips first)")
    rng = np.random.default_rng([seed, fold.index, step, _BALANCED])
    classes = np.unique(train_labels)
    chosen = classes[rng.integers(0, len(classes), batch_size)]
    out = np.empty(batch_size, np.int64)
    for c in classes:
      slots = np.flatnonzero(chosen == c)
      members = train[train_labels == c]
      out[slots] = members[rng.integers(0, len(members), len(slots))]
    return _check_held_out(out, fold)
  n = len(train)
  positions = step * batch_size + np.arange(batch_size, dtype=np.int64)
  epochs, offsets = positions // n, positions % n
  out = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([seed, fold.index, int(epoch), _UNIFORM]).permutation(n)
    sel = epochs == epoch
    out[sel] = train[order[offsets[sel]]]
  return _check_held_out(out, fold)


# Which stored-frame pairs stage 1 trains on (config.dgm_pairs): 'all' ordered pairs i < j, or
# 'onset' pairs (0, j), the onset to a later frame, as the classifier reads (onset, apex).
DGM_PAIRS = ("all", "onset")


def frame_pair_indices(seed: int, step: int, fold: Fold, batch_size: int, num_frames: int,
                       pairs: str = "all") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Self-supervised pairs for the DGM: (clip [B], i [B], j [B]) with i < j < num_frames.

  Clips come from the fold's training clips only (never the held-out subject); with `pairs`
  'all', (i, j) is uniform over the num_frames * (num_frames - 1) / 2 ordered pairs of stored
  frames, with 'onset', i = 0 and j uniform over 1..num_frames - 1. Stateless per
  (seed, fold, step).
  """
  if num_frames < 2:
    raise ValueError(f"need at least 2 stored frames per clip, got {num_frames}")
  if pairs not in DGM_PAIRS:
    raise ValueError(f"pairs must be one of {DGM_PAIRS}, got {pairs!r}")
  rng = np.random.default_rng([seed, fold.index, step, _PAIRS])
  train = np.asarray(fold.train_idx)
  clip = train[rng.integers(0, len(train), batch_size)]
  if pairs == "onset":
    later = rng.integers(1, num_frames, batch_size)
    return _check_held_out(clip, fold), np.zeros_like(later), later
  a = rng.integers(0, num_frames, batch_size)
  b = rng.integers(0, num_frames - 1, batch_size)
  b = b + (b >= a)  # a != b, uniform over ordered pairs of distinct frames
  return _check_held_out(clip, fold), np.minimum(a, b), np.maximum(a, b)


# ----------------------------------------------------------------------------- augmentation

def jitter_pair(frames, key, max_jitter: int = 1):
  """Onset and apex frames with +-`max_jitter` frame jitter, from stored frames [T, S, S, C].

  The stored frames span onset..apex, so the onset moves to frames[k] and the apex to
  frames[T - 1 - m] with k, m uniform in {0..max_jitter} (a neighbour inside the clip).
  """
  import jax  # pylint: disable=g-import-not-at-top
  t = frames.shape[0]
  if max_jitter < 0 or t - 1 - 2 * max_jitter < 1:
    raise ValueError(f"max_jitter {max_jitter} leaves no onset < apex among {t} stored frames")
  k_on, k_ap = jax.random.split(key)
  onset = jax.random.randint(k_on, (), 0, max_jitter + 1)
  apex = t - 1 - jax.random.randint(k_ap, (), 0, max_jitter + 1)
  return frames[onset], frames[apex]


def augment(onset, apex, key, *, max_rotation_deg: float = 5.0, max_scale: float = 0.05,
            max_shift: float = 0.05, flip_prob: float = 0.5, flow=None):
  """One random geometric augmentation, identical for both frames of a pair (jittable).

  Horizontal flip with probability `flip_prob`, rotation uniform in +-`max_rotation_deg`
  degrees, zoom uniform in 1 +- `max_scale` and shift uniform in +-`max_shift` of the side, all
  about the image centre; bilinear sampling with edge replication, so values stay in the input
  range. Args: onset, apex float [S, S, C]. Returns (onset, apex, flipped: bool []).
  With `flow` [S, S, 2k] (k displacement fields (dx, dy) of the pair, frldgt_jax.motion) it is
  resampled the same way and each field's vectors mapped by the transform's linear part (zoom,
  rotation, then dx negated when flipped), exact for this affine map; returns (onset, apex,
  flipped, flow).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  h, w = onset.shape[0], onset.shape[1]
  k_flip, k_rot, k_scale, k_shift = jax.random.split(key, 4)
  flipped = jax.random.uniform(k_flip) < flip_prob
  theta = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-max_rotation_deg,
                                         maxval=max_rotation_deg))
  scale = 1.0 + jax.random.uniform(k_scale, (), minval=-max_scale, maxval=max_scale)
  shift = jax.random.uniform(k_shift, (2,), minval=-max_shift, maxval=max_shift) * jnp.array(
      [h, w], jnp.float32)
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  xx = jnp.where(flipped, (w - 1) - xx, xx)
  # Output pixel -> source pixel: undo the shift, the zoom and the rotation about the centre.
  dy, dx = (yy - cy - shift[0]) / scale, (xx - cx - shift[1]) / scale
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  src_y = cy + cos * dy - sin * dx
  src_x = cx + sin * dy + cos * dx

  def warp(image):
    def one_channel(channel):
      return jax.scipy.ndimage.map_coordinates(channel, [src_y, src_x], order=1,
                                               mode="nearest")
    return jax.vmap(one_channel, in_axes=-1, out_axes=-1)(image)

  if flow is None:
    return warp(onset), warp(apex), flipped
  # Source vector (dy, dx) -> output vector: scale * M^T with M the rotation used above.
  moved = warp(flow)
  sdx, sdy = moved[..., 0::2], moved[..., 1::2]
  out_dy = scale * (cos * sdy + sin * sdx)
  out_dx = scale * (-sin * sdy + cos * sdx)
  out_dx = jnp.where(flipped, -out_dx, out_dx)
  return warp(onset), warp(apex), flipped, jnp.stack([out_dx, out_dy], -1).reshape(flow.shape)


def augment_clip(frames, key, *, max_jitter: int = 1, flow=None, field_fn=None,
                 **augment_kwargs):
  """`jitter_pair` then `augment` for one clip's stored frames [T, S, S, C] (float).

  `flow` [S, S, 2] (onset -> apex of the stored frames; the jitter does not change it) is
  augmented with the frames and returned fourth. `field_fn(onset, apex) -> [S, S, 2]`, given,
  is a field computed on the jittered stored pair before the geometric augmentation (the DGM's,
  config.augment.dgm_on_stored_frames); it is moved with the frames like `flow` and returned
  fourth, with `flow` after it on the last axis when both are given ([S, S, 4])."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  k_jit, k_aug = jax.random.split(key)
  onset, apex = jitter_pair(frames, k_jit, max_jitter)
  if field_fn is not None:
    field = field_fn(onset, apex)
    flow = field if flow is None else jnp.concatenate([field, flow], axis=-1)
  return augment(onset, apex, k_aug, flow=flow, **augment_kwargs)


def augment_batch(frames, key, flow=None, **kwargs):
  """`augment_clip` over a batch [B, T, S, S, C] with one key per example (jittable); `flow`
  [B, S, S, 2] or None; `field_fn` (a keyword) as augment_clip's, per example."""
  import jax  # pylint: disable=g-import-not-at-top
  keys = jax.random.split(key, frames.shape[0])
  if flow is None:
    return jax.vmap(lambda f, k: augment_clip(f, k, **kwargs))(frames, keys)
  return jax.vmap(lambda f, k, v: augment_clip(f, k, flow=v, **kwargs))(frames, keys, flow)
