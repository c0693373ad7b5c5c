"""Training one FRL-DGT fold: optimisers, the two-stage train step, batches, held-out logits.

Two stages (docs/frldgt.md). Steps < config.dgm_pretrain_steps are stage 1: the batch holds
self-supervised frame pairs (i < j inside training clips of the fold) and only the DGM's
parameters move (Adam at a constant rate, its own optimiser state). The remaining steps are
stage 2: the batch holds clip indices and labels, and the whole model trains end to end on L_CE
(class-weighted by the fold's training labels) + lambda * L_DGM, AdamW with warmup and cosine
decay over the stage-2 steps. The stage is chosen by the *structure* of the batch, a Python
branch at trace time, so each stage is its own compiled program (no lax.cond, which under a vmap
over folds would run both branches on every step). With config.model.displacement = 'zero'
(or a config.model.motion without the DGM, frldgt_jax/motion.py) there is no DGM: stage-1
steps leave the state unchanged, so the control keeps the same stage-2 budget. Every function
here is pure or a plain numpy sampler; `launch/tasks/frldgt.py` binds them to the training
driver.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from frldgt_jax import dgm as dgm_lib
from frldgt_jax import losses as losses_lib
from frldgt_jax import model as model_lib
from frldgt_jax.data import pipeline
from frldgt_jax.errors import InputError
from frldgt_jax.loso_data import LosoData, ModelSlot


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
  name = o.get("name", "adamw")  # sweeps begun before the field existed trained with AdamW
  if name == "adamw":
    step = optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=decay_mask)
  elif name == "adam":
    step = optax.adam(schedule, b1=o.b1, b2=o.b2)
  else:
    raise InputError(f"config.optimizer.name must be 'adamw' or 'adam', got {name!r}")
  optimizer = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), step)
  dgm, dgm_optimizer = None, None
  if model_lib.has_dgm(config.model):
    # The model's own DGM (same params), for stage 1.
    dgm = dgm_lib.dgm_from_config(config.model.dgm, model_lib.compute_dtype(config.model))
    # A constant rate: on the generated corpus the DGM was still learning motion at the end of
    # any affordable stage 1, so a decay only slowed it down.
    dgm_optimizer = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm),
                                optax.adam(o.dgm_learning_rate, b1=o.b1, b2=o.b2))
  return model, dgm, optimizer, dgm_optimizer


def to_float(frames):
  """uint8 frames -> float32 in [0, 1]."""
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


def predict_logits(model, params, frames, index, brightness: bool = True, flow=None):
  """Logits [M, C] of clips `index` [M] of the on-device dataset frames [N,T,S,S,1] (uint8).

  The onset is the first stored frame and the apex the last (no augmentation, no dropout);
  `brightness`: config.data.match_brightness; `flow`: the dataset's TV-L1 flows [N,S,S,2] when
  the model reads them (frldgt_jax.motion).
  """
  clips = to_float(frames[index])
  onset, apex = clips[:, 0], clips[:, -1]
  if brightness:
    apex = match_brightness(onset, apex)
  logits, _ = model.apply({"params": params}, onset, apex, None, train=False,
                          flow=None if flow is None else flow[index])
  return logits


def make_train_fns(config: ml_collections.ConfigDict, model, dgm, optimizer, dgm_optimizer):
  """(init_state(rng), train_step(state, frozen, batch, rng)) of one fold (see the module doc).

  `frozen['frames']` is the on-device dataset, uint8 [N, T, S, S, 1] (and `frozen['flow']` its
  TV-L1 flows [N, S, S, 2] when config.model.motion reads them); a batch holds stage-1
  frame pairs (`pair_clip`, `pair_i`, `pair_j`) or stage-2 clips (`index`, `label`,
  `class_weights`).
  """
  aug = config.augment
  aug_kwargs = dict(max_rotation_deg=aug.max_rotation_deg, max_scale=aug.max_scale,
                    max_shift=aug.max_shift, flip_prob=aug.flip_prob)
  dgm_weight = float(config.model.dgm_weight)
  # The DGM's stage-2 step size relative to the rest of the model (1: the paper's plain end-to-end
  # training; runs saved before the field existed trained with 1).
  dgm_stage2_scale = float(config.optimizer.get("dgm_stage2_lr_scale", 1.0))
  brightness = bool(config.data.match_brightness)
  distill = model_lib.distill_weight(config.model)
  # Stage 2 computes the DGM's field on the stored pair and moves it with the frames'
  # augmentation, as TV-L1's flow (False: the DGM sees the resampled frames; runs saved before
  # the field existed trained so).
  field_on_stored = dgm is not None and bool(aug.get("dgm_on_stored_frames", False))

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
            "distill": terms.get("distill", zero),
            "accuracy": jnp.asarray(accuracy, jnp.float32),
            "stage": jnp.asarray(stage, jnp.float32)}

  def pretrain_step(state, frozen, batch, rng):
    """Stage 1: the DGM alone on frame pairs (i < j) of the fold's training clips."""
    if dgm is None:  # zero-displacement control: nothing to pre-train
      return state, metrics_of(1, jnp.zeros((), jnp.float32))
    frames = frozen["frames"]
    source = to_float(frames[batch["pair_clip"], batch["pair_i"]])
    target = to_float(frames[batch["pair_clip"], batch["pair_j"]])
    if aug.stage1_geometric:
      keys = jax.random.split(rng, source.shape[0])
      source, target, _ = jax.vmap(lambda a, b, k: pipeline.augment(a, b, k, **aug_kwargs))(
          source, target, keys)
    if brightness:
      target = match_brightness(source, target)
    if distill > 0:
      # The clips of the pairs, onset -> apex, against their TV-L1 flow (training clips only:
      # the pairs are drawn from the fold's training clips).
      clips = to_float(frames[batch["pair_clip"]])
      teacher_onset, teacher_apex = clips[:, 0], clips[:, -1]
      if brightness:
        teacher_apex = match_brightness(teacher_onset, teacher_apex)
      teacher = frozen["flow"][batch["pair_clip"]]
    def loss_fn(dgm_params):
      loss, terms = dgm_lib.pretrain_loss({"params": dgm_params}, dgm, source, target,
                                          config.model.dgm)
      if distill > 0:
        student = dgm.apply({"params": dgm_params}, teacher_onset, teacher_apex)
        # sqrt(|d|^2 + 1e-12): the norm's gradient at d = 0 would be NaN.
        epe = jnp.sqrt(jnp.sum((student - teacher) ** 2, axis=-1) + 1e-12)
        terms = dict(terms, distill=jnp.mean(epe))
        loss = loss + distill * terms["distill"]
      return loss, terms
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"]["dgm"])
    updates, dgm_opt = dgm_optimizer.update(grads, state["dgm_opt"], state["params"]["dgm"])
    params = dict(state["params"], dgm=optax.apply_updates(state["params"]["dgm"], updates))
    return dict(state, params=params, dgm_opt=dgm_opt), metrics_of(1, loss, terms=terms)

  def classify_step(state, frozen, batch, rng):
    """Stage 2: L_CE (class-weighted) + lambda * L_DGM, end to end."""
    k_aug, k_drop = jax.random.split(rng)
    clips = to_float(frozen["frames"][batch["index"]])
    stored_flow = frozen["flow"][batch["index"]] if "flow" in frozen else None
    labels = batch["label"]
    class_weights = batch["class_weights"][0] if config.class_weighted else None

    def augmented(dgm_params):
      """(onset, apex, flipped, flow, displacement) of the batch, augmented; displacement is
      None where the model's DGM computes it from the augmented frames."""
      def field_fn(onset, apex):  # one stored pair [S,S,1] -> its DGM field [S,S,2]
        onset, apex = onset[None], apex[None]
        if brightness:
          apex = match_brightness(onset, apex)
        return dgm.apply({"params": dgm_params}, onset, apex)[0]
      out = pipeline.augment_batch(clips, k_aug, flow=stored_flow, max_jitter=aug.max_jitter,
                                   field_fn=field_fn if field_on_stored else None, **aug_kwargs)
      onset, apex, flipped = out[:3]
      fields = out[3] if len(out) > 3 else None
      displacement = fields[..., :2] if field_on_stored else None
      flow = fields[..., -2:] if stored_flow is not None else None
      if brightness:
        apex = match_brightness(onset, apex)
      return onset, apex, flipped, flow, displacement

    def loss_fn(params):
      onset, apex, flipped, flow, displacement = augmented(params.get("dgm"))
      logits, aux = model.apply({"params": params}, onset, apex,
                                flipped if aug.flip_aware else None, train=True,
                                rngs={"dropout": k_drop}, flow=flow, displacement=displacement)
      loss, parts = losses_lib.total_loss(logits, labels, aux, dgm_weight, class_weights)
      return loss, (parts, logits)
    (loss, (parts, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    if dgm_stage2_scale != 1.0 and "dgm" in updates:
      updates = dict(updates, dgm=jax.tree.map(lambda u: u * dgm_stage2_scale, updates["dgm"]))
    params = optax.apply_updates(state["params"], updates)
    accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    return dict(state, params=params, opt=opt), metrics_of(2, loss, parts["ce"], parts,
                                                            accuracy)

  def train_step(state, frozen, batch, rng):
    # The stage is the batch's structure (module docstring): one compiled program per stage.
    if "pair_clip" in batch:
      return pretrain_step(state, frozen, batch, rng)
    return classify_step(state, frozen, batch, rng)

  return init_state, train_step


def make_batch_sampler(config: ml_collections.ConfigDict, folds: Sequence, labels: Sequence,
                       class_weights: np.ndarray, num_frames: int, stacked: bool) -> Callable:
  """`batch_for_step(step)`: the global batch of a step, a function of (config.seed, fold, step).

  Stage 1 (step < config.dgm_pretrain_steps): frame pairs of each fold's training clips; stage
  2: clip indices, labels and class weights. Stacked batches are [M, ...] over `folds`; with
  `stacked=False` (one fold) the leading axis is dropped.
  """
  pretrain_steps = int(config.dgm_pretrain_steps)
  pairs = config.get("dgm_pairs", "all")  # runs saved before the field existed drew 'all'
  per_fold_labels, weights = labels, class_weights

  def batch_for_step(step: int) -> dict:
    """The global batch of `step`: [M, ...] stacked, or one fold's [...]."""
    if step < pretrain_steps:
      parts = [pipeline.frame_pair_indices(config.seed, step, f, config.pair_batch_size,
                                           num_frames, pairs) for f in folds]
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

  return batch_for_step


def make_predictor(model, brightness: bool = True) -> Callable:
  """jit(vmap) of predict_logits over a leading model axis: predictor(params, frames,
  index[M, L], flow=None) -> logits [M, L, C]. A jitted function, so callers can also
  `.trace(...)`/`.lower(...)` it on the arguments they will pass (the benchmark compiles it
  ahead of a sweep)."""
  def one(params, frames, index, flow):
    return predict_logits(model, params, frames, index, brightness, flow)

  def predictor(params, frames, index, flow=None):
    return jax.vmap(one, in_axes=(0, None, 0, None))(params, frames, index, flow)
  return jax.jit(predictor)


def predict_held_out(predictor, params, frames, data: LosoData,
                     slots: Sequence[ModelSlot], eval_batch_size: int,
                     stacked: bool, flow=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Logits of every real slot's held-out clips: (folds [R], clip index [R], logits [R, C]).

  Held-out clips are taken in chunks of eval_batch_size, padded (the padding is dropped), so a
  single program shape serves every chunk. `flow`: the dataset's TV-L1 flows when the model
  reads them.
  """
  if not stacked:
    params = jax.tree.map(lambda x: x[None], params)
  tests = [np.asarray(data.folds[s.fold].test_idx) for s in slots]
  longest = max(len(t) for t in tests)
  chunk = min(eval_batch_size, longest)
  chunks = -(-longest // chunk)
  padded = np.stack([np.resize(t, chunks * chunk) for t in tests]).astype(np.int32)  # [M, L]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  logits = []
  for c in range(chunks):
    # Gathered from every process (the stack may be sharded over hosts); numpy on one host.
    logits.append(np.asarray(multihost_utils.process_allgather(
        predictor(params, frames, padded[:, c * chunk:(c + 1) * chunk], flow), tiled=True)))
  logits = np.concatenate(logits, axis=1)                                   # [M, L, C]
  folds, index, out = [], [], []
  for m, (slot, test) in enumerate(zip(slots, tests)):
    if slot.dummy:
      continue
    folds.append(np.full(len(test), slot.fold))
    index.append(test)
    out.append(logits[m, :len(test)])
  return (np.concatenate(folds).astype(np.int64), np.concatenate(index).astype(np.int64),
          np.concatenate(out).astype(np.float32))
