"""FRL-DGT as a task of the generic training driver: `make_task(config) -> launch.trainer.Task`.

One *model* of the driver is one LOSO fold. Stacked (all folds in one program), the driver vmaps
`init_state` / `train_step` over a leading fold axis; fold by fold, `num_models=0` and
`model_ids=(k,)` give fold k exactly the rngs it gets in the stack (launch/trainer/task.py), and
its batches are the same because every sampler is seeded by (seed, fold index, step).

Data. The prepared dataset (frldgt_jax/data/builders.py) is small, so `frozen()` puts the whole
of it on the devices, replicated: uint8 frames [N, T, S, S, 1]. The input pipeline (tf.data,
step-indexed: batch `s` depends only on (config.seed, fold, s)) yields *indices* into it, drawn
only from each fold's training subjects (the samplers of frldgt_jax/data/pipeline.py assert it),
with each fold's labels and class weights; `train_step` gathers the frames, augments them on the
device (pipeline.augment_batch: onset/apex jitter, one flip / rotation / zoom / shift per clip),
runs the model and takes an AdamW step.

Two stages in one driver run (frldgt.md). Steps < config.dgm_pretrain_steps are stage 1: the
batch holds self-supervised frame pairs (i < j inside training clips of the fold) and only the
DGM's parameters move (Adam, cosine decay, its own optimiser state). The remaining steps are
stage 2: the batch holds clip indices and labels, and the whole model trains end to end on
L_CE (class-weighted by the fold's training labels) + lambda * L_DGM, AdamW with warmup and
cosine decay over the stage-2 steps. The stage is chosen by the *structure* of the batch, a
Python branch at trace time, so each stage is its own compiled program (no lax.cond, which under
the driver's vmap would run both branches on every step), and the driver's checkpoints, resume
and step-indexed input cover both stages. With config.model.displacement = 'zero' there is no
DGM: stage-1 steps leave the state unchanged, so the control keeps the same stage-2 budget.

Controls. labels_shuffled permutes the training labels of each fold among that fold's training
clips (seeded per fold, so nothing of the held-out subject enters); evaluation always uses the
true labels.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from frldgt_jax import dgm as dgm_lib
from frldgt_jax import losses as losses_lib
from frldgt_jax import model as model_lib
from frldgt_jax.data import pipeline
from launch.trainer import InputSpec, Task

# Stream tag of the per-fold label permutation (labels_shuffled), apart from pipeline.py's.
_SHUFFLE_STREAM = 7


# ----------------------------------------------------------------------------- data

@dataclasses.dataclass(frozen=True)
class LosoData:
  """The clips a config trains on, their labels in [0, C) and all LOSO folds over them."""
  prepared: pipeline.PreparedData
  labels: np.ndarray            # int64 [N]
  folds: list                   # [pipeline.Fold], one per subject, natural subject order
  class_names: tuple
  source: str                   # the prepared dataset folder

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _say(message: str) -> None:
  print(message, flush=True)


def synthetic_dirs(config: ml_collections.ConfigDict) -> tuple[pathlib.Path, pathlib.Path]:
  """(corpus dir, TFDS data dir) of the :synthetic variants, one folder per corpus config."""
  d = config.data
  name = f"subjects{d.synthetic_subjects}_clips{d.synthetic_clips_per_subject}_seed" \
         f"{d.synthetic_seed}"
  root = pathlib.Path(d.synthetic_root) / name
  return root / "corpus", root / "tfds"


def ensure_synthetic_dataset(config: ml_collections.ConfigDict) -> pathlib.Path:
  """Generates the synthetic corpus and builds its TFDS dataset when absent; returns its folder.

  The corpus is written to a temporary folder and renamed when complete, and TFDS builds into a
  temporary folder too, so an interrupted run leaves nothing half-made that would be reused.
  """
  from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  d = config.data
  corpus, data_dir = synthetic_dirs(config)
  target = builders.dataset_dir(data_dir, d.dataset, resolution=d.resolution, frames=d.frames,
                                alignment=d.alignment)
  if (target / "dataset_info.json").is_file():
    return target
  if not (corpus / "manifest.json").is_file():
    corpus_config = synthetic.CorpusConfig(subjects=d.synthetic_subjects,
                                           clips_per_subject=d.synthetic_clips_per_subject,
                                           seed=d.synthetic_seed)
    _say(f"generating the synthetic micro-expression corpus in {corpus} "
         f"({corpus_config.subjects} subjects per database x "
         f"{corpus_config.clips_per_subject} clips, seed {corpus_config.seed})")
    tmp = corpus.with_name(f"{corpus.name}.tmp-{os.getpid()}")
    start = time.time()
    synthetic.generate_corpus(tmp, corpus_config, overwrite=True)
    if corpus.exists():  # generated meanwhile by another process: keep that one
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(tmp)
    else:
      tmp.rename(corpus)
    _say(f"  corpus written in {time.time() - start:.0f} s")
  if d.alignment not in ("landmarks", "cropped", "detect"):
    raise ValueError(f"config.data.alignment {d.alignment!r} is not a builder alignment")
  landmarks = tuple(str(p) for p in sorted(corpus.glob("landmarks_*.csv")))
  options = builders.BuildOptions(
      landmarks_csv=landmarks if d.alignment == "landmarks" else None,
      composite_csv=str(corpus / "composite_3class.csv") if d.dataset == "composite" else None)
  _say(f"building TFDS dataset {d.dataset} ({d.frames} frames at {d.resolution}x{d.resolution}, "
       f"alignment {d.alignment}) from {corpus} into {data_dir}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  start = time.time()
  builder, summary = builders.build(d.dataset, corpus, data_dir, resolution=d.resolution,
                                    frames=d.frames, alignment=d.alignment, options=options)
  _say(f"  built {summary['counts']['total']} clips in {time.time() - start:.0f} s: "
       f"{builder.data_dir}")
  return pathlib.Path(builder.data_dir)


def dataset_folder(config: ml_collections.ConfigDict) -> pathlib.Path:
  """The prepared dataset a config reads (building the synthetic one when needed)."""
  d = config.data
  if d.synthetic:
    return ensure_synthetic_dataset(config)
  if d.dataset_dir:
    folder = pathlib.Path(d.dataset_dir)
  else:
    from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
    folder = builders.dataset_dir(d.data_dir, d.dataset, resolution=d.resolution,
                                  frames=d.frames, alignment=d.alignment)
  if not (folder / "dataset_info.json").is_file():
    flag = {"landmarks": " --landmarks CSV", "cropped": " --use_cropped"}.get(d.alignment, "")
    raise FileNotFoundError(
        f"no prepared dataset at {folder}. Prepare it first: python launch/prepare_data.py "
        f"--dataset {d.dataset} --manual_dir DIR --data_dir {d.data_dir} --resolution "
        f"{d.resolution} --frames {d.frames}{flag} (or set --config.data.dataset_dir), or use "
        f"the :synthetic variant")
  return folder


def load_loso_data(config: ml_collections.ConfigDict) -> LosoData:
  """Loads the prepared clips with a label of the config's label set and makes the LOSO folds."""
  validate_config(config)
  folder = dataset_folder(config)
  prepared = pipeline.load_prepared(folder)
  labels = getattr(prepared, config.data.labels)
  prepared = prepared.select(labels >= 0)
  labels = np.asarray(getattr(prepared, config.data.labels), np.int64)
  if not len(labels):
    raise ValueError(f"{folder}: no clip has a {config.data.labels} label")
  num_classes = len(config.data.class_names)
  if labels.max() >= num_classes:
    raise ValueError(f"{folder}: {config.data.labels} values reach {labels.max()} but the "
                     f"config names {num_classes} classes")
  t, s = prepared.frames.shape[1], prepared.frames.shape[2]
  if s != config.data.resolution or t != config.data.frames:
    raise ValueError(f"{folder} stores {t} frames at {s}x{s}; the config asks for "
                     f"{config.data.frames} at {config.data.resolution}")
  folds = pipeline.loso_folds(prepared.subject_keys)
  return LosoData(prepared, labels, folds, tuple(config.data.class_names), str(folder))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field when the config is inconsistent."""
  model_lib.validate_config(config.model)
  if config.model.image_size != config.data.resolution:
    raise ValueError(f"config.model.image_size ({config.model.image_size}) must equal "
                     f"config.data.resolution ({config.data.resolution})")
  if config.model.num_classes != len(config.data.class_names):
    raise ValueError(f"config.model.num_classes ({config.model.num_classes}) must equal the "
                     f"number of config.data.class_names ({len(config.data.class_names)})")
  if config.data.labels not in ("label", "label5"):
    raise ValueError(f"config.data.labels must be 'label' or 'label5', got "
                     f"{config.data.labels!r}")
  if not 0 <= config.dgm_pretrain_steps < config.total_steps:
    raise ValueError(f"config.dgm_pretrain_steps ({config.dgm_pretrain_steps}) must be in "
                     f"[0, total_steps={config.total_steps})")
  if config.sweep_mode not in ("auto", "stacked", "per_fold"):
    raise ValueError(f"config.sweep_mode must be 'auto', 'stacked' or 'per_fold', got "
                     f"{config.sweep_mode!r}")
  for field in ("batch_size", "pair_batch_size", "eval_batch_size"):
    if config[field] < 1:
      raise ValueError(f"config.{field} must be positive, got {config[field]}")
  if config.data.frames - 1 - 2 * config.augment.max_jitter < 1:
    raise ValueError(f"config.augment.max_jitter {config.augment.max_jitter} leaves no onset < "
                     f"apex among {config.data.frames} frames")


def _natural_key(text: str) -> list:
  return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def selected_folds(config: ml_collections.ConfigDict, folds: Sequence) -> list[int]:
  """Fold indices named by config.folds: 'all', or comma-separated indices / subject keys."""
  spec = str(config.folds).strip()
  if spec in ("", "all"):
    return [f.index for f in folds]
  by_subject = {f.test_subject: f.index for f in folds}
  out = []
  for part in (p.strip() for p in spec.split(",") if p.strip()):
    if part.lstrip("-").isdigit():
      k = int(part)
      if not 0 <= k < len(folds):
        raise ValueError(f"config.folds: fold {k} does not exist (0..{len(folds) - 1})")
    elif part in by_subject:
      k = by_subject[part]
    else:
      raise ValueError(f"config.folds: {part!r} is neither a fold index nor a subject key "
                       f"(e.g. {folds[0].test_subject!r})")
    if k in out:
      raise ValueError(f"config.folds names fold {k} twice")
    out.append(k)
  return out


def fold_labels(config: ml_collections.ConfigDict, data: LosoData, fold) -> np.ndarray:
  """The labels fold `fold` trains on: the true ones, or (labels_shuffled) a permutation of
  its training clips' labels among its training clips (held-out clips keep theirs, unused)."""
  labels = data.labels.copy()
  if config.labels_shuffled:
    rng = np.random.default_rng([config.seed, fold.index, _SHUFFLE_STREAM])
    train = np.asarray(fold.train_idx)
    labels[train] = labels[train][rng.permutation(len(train))]
  return labels


@dataclasses.dataclass(frozen=True)
class ModelSlot:
  """One model of a run: which fold's data it trains on and its rng identity."""
  fold: int          # index into LosoData.folds
  model_id: int      # folded into its rngs; == fold for real folds
  dummy: bool        # padding so the fold axis divides the devices; its predictions are unused


def plan_slots(fold_ids: Sequence[int], num_folds: int, multiple: int = 1) -> list[ModelSlot]:
  """Real folds, padded with dummy copies (ids >= num_folds) up to a multiple of `multiple`."""
  slots = [ModelSlot(k, k, False) for k in fold_ids]
  extra = (-len(slots)) % max(multiple, 1)
  slots += [ModelSlot(fold_ids[j % len(fold_ids)], num_folds + j, True) for j in range(extra)]
  return slots


# ----------------------------------------------------------------------------- model pieces

def build(config: ml_collections.ConfigDict):
  """(model, DGM module or None, stage-2 optimiser, stage-1 optimiser or None)."""
  model = model_lib.build_model(config.model)
  o = config.optimizer
  stage2 = config.total_steps - config.dgm_pretrain_steps
  warmup = min(o.warmup_steps, max(stage2 - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, o.learning_rate, warmup, max(stage2, warmup + 1),
      end_value=o.learning_rate * o.final_learning_rate_fraction)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # no bias/norm decay
  optimizer = optax.chain(
      optax.clip_by_global_norm(o.grad_clip_norm),
      optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=decay_mask))
  dgm, dgm_optimizer = None, None
  if config.model.displacement == "dgm":
    # The model's own DGM (same params), for stage 1.
    dgm = dgm_lib.dgm_from_config(config.model.dgm, model_lib.compute_dtype(config.model))
    # A constant rate: on the generated corpus the DGM was still learning motion at the end of
    # any affordable stage 1, so a decay only slowed it down.
    dgm_optimizer = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm),
                                optax.adam(o.dgm_learning_rate, b1=o.b1, b2=o.b2))
  return model, dgm, optimizer, dgm_optimizer


def _to_float(frames):
  return frames.astype(jnp.float32) / 255.0


def match_brightness(source, target):
  """`target` [B,S,S,C] shifted so its mean intensity equals `source`'s, per example.

  Illumination flicker changes a frame's brightness as a whole, which no displacement can
  explain; left in, it adds a residual everywhere to the photometric loss of a few moving
  pixels (on the generated corpus a logistic probe of the DGM's field after 400 stage-1 steps
  scored UF1 0.56 with this and 0.24 without, smoothness weight 0.1). Applied to every pair the
  DGM sees: stage-1 pairs, stage-2 and held-out (onset, apex). config.data.match_brightness.
  """
  shift = jnp.mean(source, axis=(1, 2, 3), keepdims=True) - jnp.mean(target, axis=(1, 2, 3),
                                                                      keepdims=True)
  return target + shift


def predict_logits(model, params, frames, index, brightness: bool = True):
  """Logits [M, C] of clips `index` [M] of the on-device dataset frames [N,T,S,S,1] (uint8).

  The onset is the first stored frame and the apex the last (no augmentation, no dropout);
  `brightness`: config.data.match_brightness.
  """
  clips = _to_float(frames[index])
  onset, apex = clips[:, 0], clips[:, -1]
  if brightness:
    apex = match_brightness(onset, apex)
  logits, _ = model.apply({"params": params}, onset, apex, None, train=False)
  return logits


# ----------------------------------------------------------------------------- the task

def make_task(config: ml_collections.ConfigDict, *, data: Optional[LosoData] = None,
              fold_ids: Optional[Sequence[int]] = None, stacked: Optional[bool] = None,
              device_multiple: Optional[int] = None) -> Task:
  """The FRL-DGT task (module docstring).

  Args:
    config: a config from frldgt_jax.config_lib.
    data: the loaded clips and folds (default: `load_loso_data(config)`).
    fold_ids: the folds to train (default: `selected_folds(config)`).
    stacked: all of them in one program (default) or, with exactly one fold, that fold alone
      with num_models=0 and model_ids=(fold,).
    device_multiple: pad the stack with dummy folds to a multiple of this (default: the device
      count when config.model_sharding == 'models', else 1).
  """
  validate_config(config)
  data = data if data is not None else load_loso_data(config)
  fold_ids = list(fold_ids) if fold_ids is not None else selected_folds(config, data.folds)
  if not fold_ids:
    raise ValueError("no folds selected")
  stacked = True if stacked is None else stacked
  if not stacked and len(fold_ids) != 1:
    raise ValueError(f"fold-by-fold training takes one fold at a time, got {fold_ids}")
  if device_multiple is None:
    device_multiple = 1
    if stacked and config.model_sharding == "models":
      device_multiple = (config.num_devices or jax.device_count())
  slots = plan_slots(fold_ids, len(data.folds), device_multiple if stacked else 1)
  folds = [data.folds[s.fold] for s in slots]
  per_fold_labels = [fold_labels(config, data, f) for f in folds]
  weights = np.stack([losses_lib.class_weights(l[f.train_idx], data.num_classes)
                      for l, f in zip(per_fold_labels, folds)])            # [M, C]
  model, dgm, optimizer, dgm_optimizer = build(config)
  frames_np = data.prepared.frames
  num_frames = frames_np.shape[1]
  pretrain_steps = int(config.dgm_pretrain_steps)
  aug = config.augment
  aug_kwargs = dict(max_rotation_deg=aug.max_rotation_deg, max_scale=aug.max_scale,
                    max_shift=aug.max_shift, flip_prob=aug.flip_prob)
  dgm_weight = float(config.model.dgm_weight)
  brightness = bool(config.data.match_brightness)

  def init_state(rng):
    params = model_lib.init_variables(model, rng)["params"]
    state = {"params": params, "opt": optimizer.init(params)}
    if dgm is not None:
      state["dgm_opt"] = dgm_optimizer.init(params["dgm"])
    return state

  def metrics_of(stage, loss, ce=0.0, terms=None, accuracy=0.0):
    terms = terms or {}
    zero = jnp.zeros((), jnp.float32)
    return {"loss": loss, "ce": jnp.asarray(ce, jnp.float32),
            "dgm_loss": terms.get("dgm_loss", zero), "photometric": terms.get("photometric", zero),
            "smoothness": terms.get("smoothness", zero),
            "accuracy": jnp.asarray(accuracy, jnp.float32),
            "stage": jnp.asarray(stage, jnp.float32)}

  def pretrain_step(state, frozen, batch, rng):
    """Stage 1: the DGM alone on frame pairs (i < j) of the fold's training clips."""
    if dgm is None:  # zero-displacement control: nothing to pre-train
      return state, metrics_of(1, jnp.zeros((), jnp.float32))
    frames = frozen["frames"]
    source = _to_float(frames[batch["pair_clip"], batch["pair_i"]])
    target = _to_float(frames[batch["pair_clip"], batch["pair_j"]])
    if aug.stage1_geometric:
      keys = jax.random.split(rng, source.shape[0])
      source, target, _ = jax.vmap(lambda a, b, k: pipeline.augment(a, b, k, **aug_kwargs))(
          source, target, keys)
    if brightness:
      target = match_brightness(source, target)
    def loss_fn(dgm_params):
      return dgm_lib.pretrain_loss({"params": dgm_params}, dgm, source, target,
                                   config.model.dgm)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"]["dgm"])
    updates, dgm_opt = dgm_optimizer.update(grads, state["dgm_opt"], state["params"]["dgm"])
    params = dict(state["params"], dgm=optax.apply_updates(state["params"]["dgm"], updates))
    return dict(state, params=params, dgm_opt=dgm_opt), metrics_of(1, loss, terms=terms)

  def classify_step(state, frozen, batch, rng):
    """Stage 2: L_CE (class-weighted) + lambda * L_DGM, end to end."""
    k_aug, k_drop = jax.random.split(rng)
    clips = _to_float(frozen["frames"][batch["index"]])
    onset, apex, flipped = pipeline.augment_batch(clips, k_aug, max_jitter=aug.max_jitter,
                                                  **aug_kwargs)
    if brightness:
      apex = match_brightness(onset, apex)
    labels = batch["label"]
    class_weights = batch["class_weights"][0] if config.class_weighted else None
    def loss_fn(params):
      logits, aux = model.apply({"params": params}, onset, apex,
                                flipped if aug.flip_aware else None, train=True,
                                rngs={"dropout": k_drop})
      loss, parts = losses_lib.total_loss(logits, labels, aux, dgm_weight, class_weights)
      return loss, (parts, logits)
    (loss, (parts, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    return dict(state, params=params, opt=opt), metrics_of(2, loss, parts["ce"], parts,
                                                            accuracy)

  def train_step(state, frozen, batch, rng):
    # The stage is the batch's structure (module docstring): one compiled program per stage.
    if "pair_clip" in batch:
      return pretrain_step(state, frozen, batch, rng)
    return classify_step(state, frozen, batch, rng)

  def batch_for_step(step: int) -> dict:
    """The global batch of `step`: [M, ...] stacked, or one fold's [...]."""
    if step < pretrain_steps:
      parts = [pipeline.frame_pair_indices(config.seed, step, f, config.pair_batch_size,
                                           num_frames) for f in folds]
      out = {"pair_clip": np.stack([p[0] for p in parts]).astype(np.int32),
             "pair_i": np.stack([p[1] for p in parts]).astype(np.int32),
             "pair_j": np.stack([p[2] for p in parts]).astype(np.int32)}
    else:
      index = np.stack([pipeline.train_batch_indices(
          config.seed, step, f, config.batch_size, class_balanced=config.class_balanced,
          labels=l) for f, l in zip(folds, per_fold_labels)])               # [M, B]
      for row, f in zip(index, folds):  # belt and braces: the samplers assert this too
        assert not np.isin(row, f.test_idx).any(), f"held-out clip in fold {f.index}'s batch"
      label = np.stack([l[i] for l, i in zip(per_fold_labels, index)]).astype(np.int32)
      out = {"index": index.astype(np.int32), "label": label,
             "class_weights": np.repeat(weights[:, None], config.batch_size, axis=1)}
    if not stacked:
      out = {k: v[0] for k, v in out.items()}
    return out

  def input_pipeline(spec: InputSpec):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")

    def local(batch):  # this process's share along the axis the driver splits
      out = {}
      for key, value in batch.items():
        index = [slice(None)] * value.ndim
        index[spec.split_axis] = spec.process_slice(value.shape[spec.split_axis])
        out[key] = value[tuple(index)]
      return out

    def dataset(first, stop):  # steps [first, stop) of one stage (one batch structure)
      signature = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype))
                   for k, v in local(batch_for_step(first)).items()}
      generator = lambda: (local(batch_for_step(s)) for s in range(first, stop))
      return tf.data.Dataset.from_generator(generator, output_signature=signature).prefetch(2)

    total, start = int(config.total_steps), spec.start_step
    if start < pretrain_steps:
      yield from dataset(start, pretrain_steps).as_numpy_iterator()
      start = pretrain_steps
    if start < total:
      yield from dataset(start, total).as_numpy_iterator()

  def frozen():
    return {"frames": jnp.asarray(frames_np)}

  def describe():
    return {"folds": [{"fold": s.fold, "model_id": s.model_id, "dummy": s.dummy,
                       "test_subject": data.folds[s.fold].test_subject,
                       "train_clips": int(len(data.folds[s.fold].train_idx)),
                       "test_clips": int(len(data.folds[s.fold].test_idx))} for s in slots],
            "dataset": data.source, "clips": int(len(data.labels)),
            "class_names": list(data.class_names), "stacked": stacked}

  return FrldgtTask(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
                    frozen=frozen, num_models=len(slots) if stacked else 0,
                    model_ids=tuple(s.model_id for s in slots), describe=describe,
                    slots=tuple(slots), model=model)


@dataclasses.dataclass(frozen=True)
class FrldgtTask(Task):
  """The driver's Task plus what the sweep needs to predict: the model slots and the model."""
  slots: tuple = ()
  model: Any = None
