"""Load a trained FRL-DGT fold from its workdir and score clips with it.

    fold = load_fold("workdirs/frldgt_composite_synthetic/fold_00")
    p = fold.probabilities(onset, apex)        # [num_classes], in the order of fold.class_names

A fold's workdir is what the training driver wrote for it (launch/sweep.py: W/fold_XX/ when the
sweep trains fold by fold, W/stacked/ when all folds trained in one program):
  config.json    the resolved config (its `model` section rebuilds the network),
  task.json      which folds the unit trained (a stacked unit holds several, plus dummies),
  checkpoints/   Orbax steps, item 'state' = {'params', 'opt', 'dgm_opt'} (a leading fold axis
                 on every leaf when stacked).
Only the params are read, with the checkpoint's own metadata as the restore target placed on
this process's first device: a fold trained on 8 devices loads on 1.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from frldgt_jax import model as model_lib
from frldgt_jax import motion as motion_lib
from frldgt_jax import training
from frldgt_jax.errors import InputError


def _read_json(path: pathlib.Path, what: str) -> dict:
  try:
    value = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise InputError(f"{path}: cannot read {what} ({e})") from None
  if not isinstance(value, dict):
    raise InputError(f"{path}: {what} is not a JSON object")
  return value


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The resolved config of a fold's workdir, checked to be an FRL-DGT one."""
  path = workdir / "config.json"
  if not workdir.is_dir():
    raise InputError(f"{workdir}: no such directory (a trained fold's workdir, e.g. "
                     "W/fold_00 of a sweep in W)")
  if not path.is_file():
    units = sorted(p.name for p in workdir.glob("*") if (p / "config.json").is_file())
    hint = (f"; the trained units here are {', '.join(units)}" if units else
            "; a sweep (launch/sweep.py) trains its folds in W/fold_XX/ or W/stacked/")
    raise InputError(f"{workdir}: no config.json, not a trained fold's workdir{hint}")
  fields = _read_json(path, "the config")
  model, data = fields.get("model"), fields.get("data")
  if not isinstance(model, dict) or not isinstance(data, dict) or "class_names" not in data:
    raise InputError(f"{path}: not an FRL-DGT config (no model section or no "
                     f"data.class_names; config.task is {fields.get('task')!r})")
  return ml_collections.ConfigDict(fields)


def slot_of(workdir: pathlib.Path, fold: Optional[int]) -> Optional[int]:
  """Index along the leading model axis of a stacked unit (None: the unit is one fold alone)."""
  path = workdir / "task.json"
  if not path.is_file():
    return None
  task = _read_json(path, "the task description")
  slots = [(m, s["fold"]) for m, s in enumerate(task.get("folds", [])) if not s.get("dummy")]
  trained = [k for _, k in slots]
  if fold is not None and fold not in trained:
    raise InputError(f"{path}: fold {fold} was not trained here; this unit trained folds "
                     f"{trained}")
  if not task.get("stacked"):
    return None
  if fold is None:
    if len(slots) != 1:
      raise InputError(f"{workdir}: a stacked unit of folds {trained}; say which one "
                       "(load_fold(workdir, fold=K))")
    fold = trained[0]
  return next(m for m, k in slots if k == fold)


def restore_params(workdir: pathlib.Path, step: Optional[int] = None) -> tuple[int, Any]:
  """(step, params) of the newest checkpoint (or `step`), on this process's first device."""
  directory = (workdir / "checkpoints").absolute()
  if not directory.is_dir():
    raise InputError(f"{workdir}: no checkpoints directory; has this fold saved a step yet?")
  options = ocp.CheckpointManagerOptions(create=False, read_only=True)
  # PyTreeCheckpointHandler reads what StandardCheckpointHandler wrote and can restore a part.
  with ocp.CheckpointManager(directory, options=options,
                             item_handlers={"state": ocp.PyTreeCheckpointHandler()}) as manager:
    saved = sorted(manager.all_steps())
    if not saved:
      raise InputError(f"{directory}: no saved checkpoint step yet")
    if step is not None and step not in saved:
      raise InputError(f"{directory}: no checkpoint step {step}; saved steps: {saved}")
    step = saved[-1] if step is None else step
    on_disk = manager.item_metadata(step)["state"]
    if on_disk is None or "params" not in on_disk:
      raise InputError(f"{directory}/{step}: the saved state has no 'params'")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = {"params": jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                     dict(on_disk)["params"])}
    restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=device), target)
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=restore_args, partial_restore=True)))["state"]
  return step, state["params"]


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def outputs_fn(model: model_lib.FRLDGT, brightness: bool):
  """jit(params, onset, apex, flow) -> (logits [B, C], displacement [B, S, S, 2]) in eval mode,
  the apex's brightness matched to the onset's when the run did (config.data.match_brightness)."""
  def apply(params, onset, apex, flow):
    if brightness:
      apex = training.match_brightness(onset, apex)
    logits, aux = model.apply({"params": params}, onset, apex, None, train=False, flow=flow)
    return logits, aux["displacement"]
  return jax.jit(apply)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedFold:
  """A trained FRL-DGT fold: its config, the Flax model, its params and the class names."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  model: model_lib.FRLDGT
  params: Any
  class_names: tuple[str, ...]
  step: int

  @property
  def image_size(self) -> int:
    """S: the model takes aligned grayscale S x S frames (config.model.image_size)."""
    return int(self.config.model.image_size)

  @property
  def motion(self) -> str:
    """What motion the model reads besides the frames (frldgt_jax/motion.py)."""
    return model_lib.motion_of(self.config.model)

  @functools.cached_property
  def _apply_fn(self):
    return outputs_fn(self.model, bool(self.config.data.match_brightness))

  def outputs(self, onset, apex, flow=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits [B, C], the DGM's displacement [B, S, S, 2] (zeros without a DGM)) of a batch of
    aligned float frames [B, S, S, 1] in [0, 1]; `flow` [B, S, S, 2] TV-L1 (frldgt_jax.motion)
    when the model reads it."""
    if flow is None and motion_lib.uses_flow(self.motion):
      raise InputError(f"{self.workdir}: this model reads TV-L1 flow (model.motion "
                       f"{self.motion!r}); pass flow=frldgt_jax.motion.tvl1_flow(onset, apex)")
    logits, displacement = self._apply_fn(self.params, onset, apex, flow)
    return np.asarray(logits), np.asarray(displacement)

  def frame(self, image, name: str = "frame") -> np.ndarray:
    """[1, S, S, 1] float32 in [0, 1] from an aligned grayscale frame: uint8 (0..255) or float
    (0..1), [S, S] or [S, S, 1]. Another size is refused (this does not align or resize)."""
    image = np.asarray(image)
    s = self.image_size
    if image.shape not in ((s, s), (s, s, 1)):
      raise InputError(f"{name}: expected an aligned grayscale frame of {s} x {s} "
                       f"(config.model.image_size of {self.workdir}), [S, S] or [S, S, 1]; got "
                       f"shape {image.shape}. Align and crop it first "
                       "(frldgt_jax.data.align), as the training data was")
    if image.dtype == np.uint8:
      out = np.asarray(training.to_float(image))
    elif np.issubdtype(image.dtype, np.floating):
      if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError(f"{name}: float frames must lie in [0, 1], got values in "
                         f"[{np.nanmin(image):g}, {np.nanmax(image):g}] (uint8 frames are "
                         "taken as 0..255)")
      out = image.astype(np.float32)
    else:
      raise InputError(f"{name}: expected uint8 or float pixels, got dtype {image.dtype}")
    return out.reshape(1, s, s, 1)

  def logits(self, onset, apex) -> np.ndarray:
    """Logits [num_classes] of one clip (eval mode: no dropout, no augmentation); the TV-L1 flow
    is computed here when the model reads it."""
    frames = self.frame(onset, "onset"), self.frame(apex, "apex")
    flow = None
    if motion_lib.uses_flow(self.motion):
      flow = motion_lib.tvl1_flow(frames[0][0], frames[1][0],
                                  bool(self.config.data.match_brightness))[None]
    return self.outputs(*frames, flow)[0][0]

  def probabilities(self, onset, apex) -> np.ndarray:
    """Class probabilities [num_classes] (softmax of `logits`), in class_names order."""
    return np.asarray(jax.nn.softmax(self.logits(onset, apex)))


def load_fold(workdir, step: Optional[int] = None, fold: Optional[int] = None) -> TrainedFold:
  """The fold trained in `workdir` (a sweep's W/fold_XX/, or W/stacked/ with `fold`), with the
  params of its newest checkpoint (or of `step`)."""
  workdir = pathlib.Path(workdir)
  config = read_config(workdir)
  slot = slot_of(workdir, fold)
  step, params = restore_params(workdir, step)
  if slot is not None:
    params = jax.tree.map(lambda p: p[slot], params)
  model = model_lib.build_model(config.model)
  expected = jax.eval_shape(lambda: model_lib.init_variables(model, jax.random.PRNGKey(0)))
  if _shapes(expected["params"]) != _shapes(params):
    raise InputError(f"{workdir}: the params of checkpoint step {step} do not fit the model "
                     f"its config.json builds (image_size {config.model.image_size}, "
                     f"{config.model.num_classes} classes)")
  return TrainedFold(workdir, config, model, params, tuple(config.data.class_names), step)


def load_models(workdir, ensemble: bool) -> tuple[list[TrainedFold], str]:
  """The trained models of a sweep's workdir to predict with, and how to name them: W/final/
  (one model on every subject), or with `ensemble` every finished fold model (W/fold_XX/ and
  W/stacked/), whose class probabilities `ensemble_outputs` averages."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise InputError(f"{workdir}: no such sweep workdir")
  if not ensemble:
    final = workdir / "final"
    if not (final / "final.json").is_file():
      raise InputError(f"{workdir}: no final model (W/final/). Train it with python "
                       "launch/sweep.py --config ... --config.final_model=True --workdir W, or "
                       "pass --ensemble to use the fold models")
    return [load_fold(final)], f"final model {final} (trained on every subject)"
  models = [load_fold(d) for d in sorted(workdir.glob("fold_*"))
            if (d / "predictions.npz").is_file()]
  stacked = workdir / "stacked"
  if (stacked / "predictions.npz").is_file():
    folds = json.loads((stacked / "folds.json").read_text())
    models += [load_fold(stacked, fold=k) for k in folds]
  if not models:
    raise InputError(f"{workdir}: no finished fold models (W/fold_XX/ or W/stacked/) to "
                     "ensemble; run the sweep first")
  return models, f"ensemble of {len(models)} fold models in {workdir} (mean of probabilities)"


def ensemble_outputs(models: Sequence[TrainedFold], onset: np.ndarray, apex: np.ndarray,
                     flow: Optional[np.ndarray] = None, batch_size: int = 32,
                     progress: Callable = lambda batches: batches
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(class probabilities [N, C], displacement [N, S, S, 2]) of aligned uint8 onset and apex
  frames [N, S, S], averaged over `models`, `batch_size` clips per call; `progress` wraps the
  batches (e.g. tqdm)."""
  size, n = models[0].image_size, len(onset)
  probabilities = np.zeros((n, len(models[0].class_names)))
  displacement = np.zeros((n, size, size, 2), np.float32)
  for begin in progress(range(0, n, batch_size)):
    part = slice(begin, begin + batch_size)
    a = np.asarray(onset[part])[..., None].astype(np.float32) / 255
    b = np.asarray(apex[part])[..., None].astype(np.float32) / 255
    for model in models:
      logits, field = model.outputs(a, b, None if flow is None else flow[part])
      e = np.exp(logits - logits.max(-1, keepdims=True))
      probabilities[part] += e / e.sum(-1, keepdims=True) / len(models)
      displacement[part] += field / len(models)
  return probabilities, displacement
