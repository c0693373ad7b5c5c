"""A trained spotter read back from its workdir, and spotting a whole video with it.

    spotter = load_spotter("tests/fixtures/spotter_tiny")
    result = spotter.spot(frames, frame_numbers, fps)    # aligned uint8 [T, S, S]
    result.intervals                                     # [Interval(onset, offset, kind, apex)]

A spotter's workdir is what the training driver wrote for the spotting task
(launch/tasks/spotting.py): config.json (features, model and decoding), task.json (which folds,
when the LOSO folds trained stacked) and checkpoints/ (Orbax; only the params are read,
frldgt_jax/run_io.py). A LOSO workdir holds one model per fold: pick one with `fold=K`.

Frame rate. The features' offsets and the decoding lengths are in frames of the rate the spotter
trained at (config.data.fps). A video at another rate is resampled to it first by taking every
n-th frame (n = round(fps / config.data.fps), at least 1: SAMM's 200 fps becomes 33 fps for a
30 fps spotter, as MEAN downsamples SAMM), and the intervals are mapped back to the video's frame
numbers.

The apex of each spotted interval is re-spotted on the aligned frames as the frame that differs
most from the interval's onset in the AU areas, head drift registered away (frldgt_jax/apex.py,
what launch/predict.py uses on a clip), rather than the peak of the windowed motion signal,
which peaks where the face moves fastest, between onset and apex.

Scoring is one jitted program over a fixed batch of overlapping windows (WINDOW frames, each
padded by the net's receptive field on both sides, whose outputs are dropped), so a long video
costs a few calls of one compiled program.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from frldgt_jax import apex as apex_lib
from frldgt_jax import run_io
from frldgt_jax.errors import InputError
from frldgt_jax.spotting import decode as decode_lib
from frldgt_jax.spotting import features as features_lib
from frldgt_jax.spotting import model as model_lib
from frldgt_jax.spotting import training
from frldgt_jax.spotting.intervals import Interval

WINDOW = 1024          # frames of output per window
WINDOWS_PER_CALL = 4


@dataclasses.dataclass(frozen=True)
class SpotResult:
  """What spotting one video gives, per *scored* frame (after resampling to the spotter's rate):
  positions into the video's frames, the motion features, the (none, micro, macro) probabilities,
  the motion signal to draw, and the intervals in the video's frame numbers."""
  positions: np.ndarray       # int64 [T']: index into the video's frames of each scored frame
  features: np.ndarray        # float32 [T', F]
  probabilities: np.ndarray   # float32 [T', 3]
  signal: np.ndarray          # float32 [T']
  intervals: list[Interval]
  stride: int


def offsets_of(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The features' frame offsets (config.features.offsets)."""
  return tuple(int(k) for k in config.features.offsets)


def decode_options(config: ml_collections.ConfigDict) -> decode_lib.DecodeOptions:
  """config.decode as DecodeOptions."""
  return decode_lib.DecodeOptions(**{f.name: type(f.default)(config.decode[f.name])
                                     for f in dataclasses.fields(decode_lib.DecodeOptions)})


def score_features(model: model_lib.SpottingNet, params: Any, features: np.ndarray, *,
                   window: int = WINDOW, windows_per_call: int = WINDOWS_PER_CALL) -> np.ndarray:
  """float32 [T, 3] probabilities of features [T, F], scored in overlapping windows."""
  features = np.asarray(features, np.float32)
  total, width = features.shape
  context = model_lib.receptive_field(model.kernel, model.dilations) // 2 + 1
  n = -(-total // window)
  n = -(-n // windows_per_call) * windows_per_call
  padded = np.zeros((n * window + 2 * context, width), np.float32)
  padded[context:context + total] = features
  index = np.arange(n)[:, None] * window + np.arange(window + 2 * context)[None]
  out = []
  for c in range(0, n, windows_per_call):
    probs = _apply(model, params, jnp.asarray(padded[index[c:c + windows_per_call]]))
    out.append(np.asarray(probs)[:, context:context + window])
  return np.concatenate(out).reshape(-1, 3)[:total]


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, x):
  return model_lib.probabilities(model.apply({"params": params}, x))


@dataclasses.dataclass(frozen=True, eq=False)
class Spotter:
  """A trained spotting model: its config, the net and its params (module docstring)."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  model: model_lib.SpottingNet
  params: Any
  step: int

  @property
  def image_size(self) -> int:
    """S: the aligned face crops the spotter's features were computed on."""
    return int(self.config.data.image_size)

  @property
  def fps(self) -> float:
    """The frame rate the spotter trained at."""
    return float(self.config.data.fps)

  def stride(self, fps: Optional[float]) -> int:
    """Every n-th frame of a video at `fps` is scored (module docstring)."""
    return max(1, int(round(fps / self.fps))) if fps else 1

  def spot(self, frames: np.ndarray, frame_numbers: Optional[np.ndarray] = None,
           fps: Optional[float] = None) -> SpotResult:
    """Spots expressions in aligned uint8 frames [T, S, S] of one video (module docstring)."""
    frames = np.asarray(frames)
    numbers = np.arange(len(frames)) if frame_numbers is None else np.asarray(frame_numbers)
    stride = self.stride(fps)
    positions = np.arange(0, len(frames), stride)
    feats = features_lib.motion_features(frames[positions], offsets_of(self.config))
    probs = score_features(self.model, self.params, feats)
    signal = features_lib.motion_signal(feats)
    scored = [self._with_apex(iv, frames) for iv in decode_lib.decode(
        probs, decode_options(self.config), frame_numbers=positions, apex_signal=signal)]
    intervals = [dataclasses.replace(
        iv, onset=int(numbers[iv.onset]),
        offset=int(numbers[min(iv.offset + stride - 1, len(numbers) - 1)]),
        apex=int(numbers[iv.apex])) for iv in scored]
    return SpotResult(positions, feats, probs, signal, intervals, stride)


  @staticmethod
  def _with_apex(interval: Interval, frames: np.ndarray) -> Interval:
    """The interval with its apex re-spotted as the frame that differs most from the onset
    in the AU areas (frldgt_jax/apex.py), positions into `frames`."""
    if interval.offset - interval.onset < 2:
      return interval
    apex, _ = apex_lib.spot_apex(frames[interval.onset:interval.offset + 1], 0)
    return dataclasses.replace(interval, apex=interval.onset + apex)


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The resolved config of a spotter's workdir, checked to be a spotting one."""
  path = workdir / "config.json"
  if not workdir.is_dir():
    raise InputError(f"{workdir}: no such spotter workdir (train one with python launch/train.py "
                     "--config configs/spotting_casme2_lv.py)")
  if not path.is_file():
    raise InputError(f"{workdir}: no config.json, not a trained spotter's workdir")
  try:
    fields = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise InputError(f"{path}: cannot read the config ({e})") from None
  if not isinstance(fields, dict) or fields.get("task") != "launch.tasks.spotting":
    task = fields.get("task") if isinstance(fields, dict) else None
    raise InputError(f"{path}: not a spotter's config (config.task is {task!r}, expected "
                     "'launch.tasks.spotting')")
  return ml_collections.ConfigDict(fields)


def load_spotter(workdir, fold: Optional[int] = None, step: Optional[int] = None) -> Spotter:
  """The spotter trained in `workdir` (of one LOSO fold with `fold`), newest checkpoint."""
  workdir = pathlib.Path(workdir)
  config = read_config(workdir)
  slot = run_io.slot_of(workdir, fold)
  step, params = run_io.restore_params(workdir, step)
  if slot is not None:
    params = jax.tree.map(lambda p: p[slot], params)
  model = training.build_model(config)
  num = features_lib.num_features(offsets_of(config))
  expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                               jnp.zeros((1, 8, num)))["params"])
  same = jax.tree.map(lambda a, b: a.shape == b.shape, expected, params)
  if jax.tree.structure(expected) != jax.tree.structure(params) or not all(jax.tree.leaves(same)):
    raise InputError(f"{workdir}: the params of checkpoint step {step} do not fit the spotting "
                     "net its config.json builds")
  return Spotter(workdir, config, model, params, step)
