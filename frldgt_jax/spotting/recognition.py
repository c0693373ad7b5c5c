"""Recognising spotted micro-expressions with a trained FRL-DGT model (spot, then recognise).

Every spotted micro-expression goes to the recogniser as its onset frame and its apex frame,
aligned as the recogniser's training clips were (grayscale S x S crops on the template of
frldgt_jax/data/align.py). Two callers:

* launch/spot.py aligns each interval of a user's video itself (frldgt_jax/clip_input.py) and
  calls `classify` with the aligned pairs;
* launch/spot_strs.py scores a spotting run's predictions with STRS: the videos of a spotting
  corpus are aligned already (frldgt_jax/spotting/corpus.py), so `label_intervals` takes the
  onset and apex frames straight from them and writes each predicted class into the interval's
  `label`, as metrics.strs reads it.

A spotted interval's apex is its `apex` when it lies after the onset (at most the offset), else
the frame after the onset; an interval without an apex takes its middle frame.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from frldgt_jax import motion as motion_lib
from frldgt_jax import run_io
from frldgt_jax.errors import InputError
from frldgt_jax.spotting import metrics
from frldgt_jax.spotting.intervals import Interval


def load_recogniser(workdir, ensemble: bool = False) -> tuple[list[run_io.TrainedFold], str]:
  """The models of an FRL-DGT sweep's workdir (run_io.load_models) and their description;
  recognisers that read TV-L1 flow are refused (InputError)."""
  models, described = run_io.load_models(workdir, ensemble)
  if motion_lib.uses_flow(models[0].motion):
    raise InputError(f"{workdir}: this recogniser reads TV-L1 flow; spotted micro-expressions "
                     "are recognised with the DGM (model.motion 'dgm' or 'none')")
  return models, described


def apex_position(onset: int, apex: int | None, offset: int) -> int:
  """The apex the recogniser reads (module docstring); positions or frame numbers alike."""
  if apex is None:
    apex = (onset + offset) // 2
  return min(max(apex, onset + 1), offset)


def classify(models: Sequence[run_io.TrainedFold], onset: np.ndarray, apex: np.ndarray,
             batch_size: int = 32, progress: Callable = lambda batches: batches) -> list[dict]:
  """{'class', 'probabilities'} of each aligned uint8 (onset, apex) pair [N, S, S], the mean of
  the models' probabilities (rounded to 6 digits), in the models' class order."""
  if not len(onset):
    return []
  probabilities, _ = run_io.ensemble_outputs(models, onset, apex, None, batch_size,
                                             progress=progress)
  names = models[0].class_names
  return [{"class": names[int(np.argmax(p))],
           "probabilities": {n: round(float(q), 6) for n, q in zip(names, p)}}
          for p in probabilities]


def megc_label(class_name: str) -> int:
  """The Interval label (metrics.CLASS_NAMES index, -1 for 'others') of a recogniser's class."""
  if class_name == metrics.OTHERS:
    return -1
  if class_name not in metrics.CLASS_NAMES:
    raise InputError(f"class {class_name!r} is not a MEGC composite class "
                     f"({', '.join(metrics.CLASS_NAMES)}, {metrics.OTHERS})")
  return metrics.CLASS_NAMES.index(class_name)


def check_size(models: Sequence[run_io.TrainedFold], shape: tuple[int, int], what: str) -> None:
  """InputError unless aligned frames of `shape` (H, W) fit the recogniser; `what` names them."""
  size = models[0].image_size
  if tuple(shape) != (size, size):
    raise InputError(f"the recogniser takes {size} x {size} frames, {what} are {shape[1]} x "
                     f"{shape[0]}")


def label_intervals(frames: np.ndarray, frame_numbers: np.ndarray,
                    intervals: Sequence[Interval], models: Sequence[run_io.TrainedFold],
                    name: str, batch_size: int = 32,
                    progress: Callable = lambda batches: batches
                    ) -> tuple[list[Interval], list[dict]]:
  """The intervals with each micro-expression's `label` set to the recogniser's class, and the
  classes of the micro-expressions in order (`classify`'s rows).

  Args:
    frames: uint8 [T, S, S] of an aligned video, S the recogniser's image size.
    frame_numbers: int [T], the frame number of each frame (what intervals count in).
    intervals: spotted intervals (macro-expressions pass through unchanged).
    models: the recogniser (load_recogniser).
    name: the video's name, for error messages.
    batch_size, progress: as `classify`.
  """
  check_size(models, frames.shape[1:], name)
  numbers = np.asarray(frame_numbers)
  position = {int(n): i for i, n in enumerate(numbers)}
  micro = [iv for iv in intervals if iv.kind == "micro"]
  pairs = []
  for iv in micro:
    onset = position.get(int(iv.onset))
    offset = position.get(int(iv.offset))
    if onset is None or offset is None:
      raise InputError(f"{name}: interval {iv.onset}-{iv.offset} names frames the video does "
                       f"not have (its frames: {numbers[0]}..{numbers[-1]}, "
                       f"{len(numbers)} of them)")
    apex = position.get(int(iv.apex)) if iv.apex is not None else None
    pairs.append((onset, apex_position(onset, apex, offset)))
  rows = classify(models, np.stack([frames[a] for a, _ in pairs]) if pairs else frames[:0],
                  np.stack([frames[b] for _, b in pairs]) if pairs else frames[:0],
                  batch_size, progress)
  labels = iter(rows)
  out = [dataclasses.replace(iv, label=megc_label(next(labels)["class"]))
         if iv.kind == "micro" else iv for iv in intervals]
  return out, rows
