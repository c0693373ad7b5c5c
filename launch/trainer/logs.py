"""Run logging: metrics.jsonl, TensorBoard event files, image files and a console progress line.

Only process 0 writes. `WORKDIR/metrics.jsonl` holds one JSON object per logged step with at
least `step` and `loss` (plus `steps_per_sec` and the task's other metrics). TensorBoard event
files come from tensorboardX, which needs no TensorFlow (accelerator images often have none);
`tensorboard --logdir WORKDIR/tensorboard` reads them.
"""
from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Mapping, Optional

import numpy as np


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunLog:
  """Writes scalars and images of a run; a no-op on processes other than 0."""

  def __init__(self, workdir: pathlib.Path, total_steps: int, enabled: bool = True,
               tensorboard: bool = True):
    self.enabled = enabled
    self.total_steps = total_steps
    self.workdir = pathlib.Path(workdir)
    self._tb = None
    self._last_time: Optional[float] = None
    self._last_step: Optional[int] = None
    self._losses: dict = {}  # (prefix, stage) -> [(step, loss)] of this process, for the summary
    if not enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(self.workdir / "tensorboard"), flush_secs=30)

  def start(self, step: int) -> None:
    self._last_time, self._last_step = time.perf_counter(), step

  def exclude_time(self, seconds: float) -> None:
    """Leaves `seconds` (e.g. an evaluation pass) out of the next steps/s measurement."""
    if self._last_time is not None:
      self._last_time += seconds

  def scalars(self, step: int, metrics: Mapping[str, float], prefix: str = "train") -> dict:
    """Logs one step's scalars; returns the logged record (with steps_per_sec when known)."""
    record = {"step": int(step)}
    record.update({k: float(v) for k, v in metrics.items()})
    now = time.perf_counter()
    if prefix == "train":  # evaluations neither get a rate nor restart the clock
      if self._last_time is not None and step > self._last_step:
        record["steps_per_sec"] = (step - self._last_step) / (now - self._last_time)
      self._last_time, self._last_step = now, step
    if "loss" in record:
      # A task whose training has stages with different losses (FRL-DGT: the DGM's photometric
      # loss, then cross-entropy) logs a 'stage' scalar; each stage's losses are summarised on
      # their own (an interval that spans two stages is left out of the summary).
      stage = record.get("stage")
      if stage is None or float(stage).is_integer():
        key = (prefix, None if stage is None else int(stage))
        self._losses.setdefault(key, []).append((record["step"], record["loss"]))
    if not self.enabled:
      return record
    if prefix != "train":
      record = {"step": record["step"], **{f"{prefix}/{k}": v for k, v in record.items()
                                           if k != "step"}}
    self._jsonl.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in record.items():
        if k != "step":
          self._tb.add_scalar(k if "/" in k else f"{prefix}/{k}", v, step)
      self._tb.flush()
    return record

  def loss_summary(self) -> list[str]:
    """One line per logged loss series of this invocation: its first and last value (training
    losses are means over each logging interval; evaluations are whole-set means)."""
    lines = []
    for (prefix, stage), series in self._losses.items():
      (first_step, first), (last_step, last) = series[0], series[-1]
      of_stage = "" if stage is None else f", stage {stage}"
      what = (f"train loss{of_stage} (mean over each logged interval)" if prefix == "train"
              else f"{prefix}/loss{of_stage}")
      if len(series) == 1:
        lines.append(f"{what}: {first:.5g} at step {first_step}")
        continue
      change = f" ({(last - first) / abs(first):+.1%})" if first else ""
      lines.append(f"{what}: {first:.5g} at step {first_step} -> {last:.5g} at step "
                   f"{last_step}{change}")
    return lines

  def progress(self, step: int, record: Mapping[str, float]) -> None:
    """Prints a one-line progress report with steps/s and the ETA."""
    if not self.enabled:
      return
    rate = record.get("steps_per_sec")
    parts = [f"step {step}/{self.total_steps}", f"loss {record.get('loss', float('nan')):.5g}"]
    if rate:
      parts += [f"{rate:.2f} steps/s", f"ETA {_format_eta((self.total_steps - step) / rate)}"]
    print("  ".join(parts), file=sys.stderr, flush=True)

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Writes image summaries ([N,H,W,C] in [0, 1]) to TensorBoard and PNG grids on disk."""
    if not self.enabled or not images:
      return
    from PIL import Image  # pylint: disable=g-import-not-at-top
    out_dir = self.workdir / "images"
    out_dir.mkdir(exist_ok=True)
    for name, batch in images.items():
      batch = np.clip(np.asarray(batch, np.float32), 0.0, 1.0)
      if batch.shape[-1] == 1:
        batch = np.repeat(batch, 3, axis=-1)
      grid = np.concatenate(list(batch), axis=1)  # one row, left to right
      safe = name.replace("/", "_")
      Image.fromarray((grid * 255 + 0.5).astype(np.uint8)).save(
          out_dir / f"{safe}_{step:08d}.png")
      if self._tb is not None:
        self._tb.add_images(name, batch, step, dataformats="NHWC")
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._tb is not None:
        self._tb.close()
