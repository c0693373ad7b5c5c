"""The timeline picture of a spotted long video (launch/spot.py): the motion signal over time,
the spotted intervals coloured by kind (and labelled with the recognised class), the frames
without a face shaded, and the spotter's micro/macro probabilities underneath (matplotlib,
Agg backend)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from frldgt_jax.results import pyplot
from frldgt_jax.spotting.intervals import Interval

KIND_COLOURS = {"micro": "tab:red", "macro": "tab:blue"}


def write_timeline_png(path: str | os.PathLike, fps: float, segments: Sequence[dict],
                       intervals: Sequence[Interval], classes: Sequence[str] = (),
                       gaps: Sequence[tuple[float, float]] = (), title: str = "") -> None:
  """Writes the timeline.

  Args:
    path: the PNG file.
    fps: the video's frame rate (the x axis is in seconds).
    segments: per spotted stretch of face, {'seconds': [T'], 'signal': [T'], 'micro': [T'],
      'macro': [T']} (the scored frames' times, motion signal and probabilities).
    intervals: the spotted intervals (frames as `seconds` counts them times fps).
    classes: the recognised class of each interval ('' for none), in the order of `intervals`.
    gaps: (first, last) seconds without a face.
    title: above the plot.
  """
  plt = pyplot()
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.2), dpi=90, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1.4]})
  for i, seg in enumerate(segments):
    top.plot(seg["seconds"], seg["signal"], color="0.25", lw=0.8,
             label="motion signal" if i == 0 else None)
    bottom.plot(seg["seconds"], seg["micro"], color=KIND_COLOURS["micro"], lw=0.8,
                label="p(micro)" if i == 0 else None)
    bottom.plot(seg["seconds"], seg["macro"], color=KIND_COLOURS["macro"], lw=0.8,
                label="p(macro)" if i == 0 else None)
  classes = list(classes) + [""] * (len(intervals) - len(classes))
  seen = set()
  for iv, name in zip(intervals, classes):
    a, b = iv.onset / fps, (iv.offset + 1) / fps
    label = None if iv.kind in seen else iv.kind
    seen.add(iv.kind)
    top.axvspan(a, b, color=KIND_COLOURS[iv.kind], alpha=0.25, label=label)
    if name:
      top.annotate(name, ((a + b) / 2, 1.0), xycoords=("data", "axes fraction"), ha="center",
                   va="bottom", fontsize=7, color=KIND_COLOURS[iv.kind], rotation=30)
  for k, (a, b) in enumerate(gaps):
    for ax in (top, bottom):
      ax.axvspan(a, b, color="0.8", alpha=0.6, hatch="//", lw=0,
                 label="no face" if k == 0 and ax is top else None)
  top.set_ylabel("largest AU-region\nmotion (log, / median)")
  bottom.set_ylabel("probability")
  bottom.set_ylim(0, 1)
  bottom.set_xlabel("time (s)")
  top.legend(fontsize=7, loc="upper right", ncol=4)
  bottom.legend(fontsize=7, loc="upper right", ncol=2)
  if title:
    top.set_title(title, fontsize=9, pad=18)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def empty_signal(seconds: Optional[np.ndarray] = None) -> dict:
  """A segment with nothing scored (a video too short to score)."""
  s = np.zeros(0) if seconds is None else np.asarray(seconds)
  return {"seconds": s, "signal": np.zeros_like(s), "micro": np.zeros_like(s),
          "macro": np.zeros_like(s)}
