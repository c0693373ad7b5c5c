"""The encoder against optimisation on held-out generator samples (docs/encoder.md's table).

Held-out samples: z ~ N(0, I) from a seed apart from training's, rendered at FFHQ-like views
(the encoder config's distribution). Each method inverts every sample alone, as launch/invert.py
does a photo, without being told the camera: optimisation searches its grid (then refines during
the W phase), the encoder predicts it. Rows:

  start            the W-space mean at the frontal camera (where both begin)
  encoder          the encoder's prediction alone
  encoder + N      N W+ steps from it (the encoder's camera fixed)
  optimise N       N steps from the start, half W (camera refined), half W+
  optimise 200+200 the default (sat3d_jax/inversion.py InversionConfig)

Each row: the reconstruction terms of inversion.reconstruction_loss (l2, l1, 1 - MS-SSIM), PSNR,
the W+ error (mean squared difference whitened by the encoder's W statistics, as its training
loss) and the mean wall time per sample (after compilation: every program is warmed first).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax import encoder as encoder_lib, inversion
from sat3d_jax.eg3d.generator import Generator

METRICS = ("l2", "l1", "ms_ssim", "psnr", "wplus", "seconds")


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """Held-out samples: codes ws [N, num_ws, w_dim], views [N, 2], images [N, H, W, 3]."""
  ws: np.ndarray
  views: np.ndarray
  images: np.ndarray


def held_out(generator: Generator, count: int, seed: int = 12345, yaw_std: float = 0.3,
             yaw_limit: float = 0.8, pitch_std: float = 0.1, pitch_limit: float = 0.35,
             truncation_psi: float = 1.0) -> HeldOut:
  """`count` samples drawn as the encoder's training draws them, from their own seed."""
  # z and the views from streams of their own, so the first k of `count` samples are the
  # samples of count = k.
  z = np.random.default_rng(seed).standard_normal((count, generator.z_dim)).astype(np.float32)
  views = np.random.default_rng(seed + 1).standard_normal((count, 2))
  yaw = np.clip(yaw_std * views[:, 0], -yaw_limit, yaw_limit)
  pitch = np.clip(pitch_std * views[:, 1], -pitch_limit, pitch_limit)
  views = np.stack([yaw, pitch], -1).astype(np.float32)
  rig = inversion.CameraRig.of(generator)
  frontal = jnp.broadcast_to(rig.labels(jnp.zeros(2)), (count, 25))
  ws = generator.mapping(jnp.asarray(z), frontal, truncation_psi)
  images = np.concatenate([np.asarray(inversion.render(generator, ws[i:i + 1],
                                                       rig.labels(views[i:i + 1])))
                           for i in range(count)])
  return HeldOut(np.asarray(ws), views, images)


def _scores(generator, ws, c, target, true_ws, stats) -> dict[str, float]:
  image = inversion.render(generator, ws, c)
  _, parts = inversion.reconstruction_loss(image, target, inversion.LossWeights().as_array())
  wplus = jnp.mean(jnp.square((jnp.asarray(ws) - true_ws) / stats["std"]))
  out = {k: float(parts[k]) for k in ("l2", "l1", "ms_ssim", "psnr")}
  out["wplus"] = float(wplus)
  return out


def compare(generator: Generator, encoder: encoder_lib.TrainedEncoder, samples: HeldOut,
            **kwargs) -> dict[str, dict[str, float]]:
  """{row: {metric: mean over the samples}} of `compare_samples` (same arguments)."""
  return {row: {m: float(np.mean([e[m] for e in entries])) for m in METRICS}
          for row, entries in compare_samples(generator, encoder, samples, **kwargs).items()}


def compare_samples(generator: Generator, encoder: encoder_lib.TrainedEncoder, samples: HeldOut,
                    steps: Sequence[int] = (20, 50, 100), default: bool = True,
                    optimise_steps: Optional[Sequence[int]] = None,
                    weights: Optional[inversion.LossWeights] = None,
                    progress: bool = False, encoder_wplus_lr: Optional[float] = None
                    ) -> dict[str, list[dict[str, float]]]:
  """{row: [{metric: value} per sample]} (see the module docstring): encoder + N for N in
  `steps`, optimise N for N in `optimise_steps` (default: `steps`), and the default 200 + 200
  optimisation when `default`. encoder_wplus_lr: the W+ learning rate of the encoder + N rows
  (default: the optimisation's, InversionConfig.wplus_lr)."""
  rig = inversion.CameraRig.of(generator)
  stats = encoder.stats
  rows: dict[str, list[dict]] = {}

  def add(row, scores, seconds):
    rows.setdefault(row, []).append({**scores, "seconds": seconds})

  runs: list[tuple[str, Optional[int], Optional[int], bool]] = []  # (row, w, w+, encoder)
  runs += [(f"encoder + {n}", 0, n, True) for n in steps]
  runs += [(f"optimise {n}", n // 2, n - n // 2, False)
           for n in (steps if optimise_steps is None else optimise_steps)]
  if default:
    d = inversion.InversionConfig()
    runs.append((f"optimise {d.w_steps}+{d.wplus_steps}", d.w_steps, d.wplus_steps, False))
  warmed = False
  for i in range(samples.ws.shape[0]):
    target = jnp.asarray(samples.images[i:i + 1])
    true_ws = jnp.asarray(samples.ws[i:i + 1])
    w_avg = inversion.initial_w(generator).reshape(1, 1, -1)
    start = jnp.broadcast_to(w_avg, true_ws.shape)
    add("start", _scores(generator, start, rig.labels(jnp.zeros((1, 2))), target, true_ws,
                         stats), 0.0)
    if not warmed:  # compile the encoder before timing it
      jax.block_until_ready(encoder(target))
    tick = time.perf_counter()
    ws_enc, angles = jax.block_until_ready(encoder(target))
    enc_seconds = time.perf_counter() - tick
    angles = tuple(float(a) for a in np.asarray(angles)[0])
    add("encoder", _scores(generator, ws_enc, rig.labels(jnp.asarray([angles])), target,
                           true_ws, stats), enc_seconds)
    for row, w_steps, wplus_steps, from_encoder in runs:
      config = inversion.InversionConfig(w_steps=w_steps, wplus_steps=wplus_steps,
                                         weights=weights or inversion.LossWeights())
      if from_encoder and encoder_wplus_lr is not None:
        config = dataclasses.replace(config, wplus_lr=encoder_wplus_lr)
      kwargs = dict(init_ws=ws_enc, init_angles=angles) if from_encoder else {}
      if not warmed:  # compile every program of this run before timing it
        inversion.invert(generator, target, config=dataclasses.replace(
            config, w_steps=min(w_steps, 1), wplus_steps=min(wplus_steps, 1)), rig=rig,
            progress=False, **kwargs)
      tick = time.perf_counter()
      result = inversion.invert(generator, target, config=config, rig=rig, progress=progress,
                                **kwargs)
      seconds = time.perf_counter() - tick + (enc_seconds if from_encoder else 0.0)
      add(row, _scores(generator, result.ws, result.c, target, true_ws, stats), seconds)
    warmed = True
  return rows


def markdown(table: dict[str, dict[str, float]]) -> str:
  """The table as Markdown rows (docs/encoder.md)."""
  lines = ["| method | L2 | L1 | 1 - MS-SSIM | PSNR (dB) | W+ error | s / sample |",
           "|---|---|---|---|---|---|---|"]
  for row, m in table.items():
    lines.append(f"| {row} | {m['l2']:.4f} | {m['l1']:.4f} | {m['ms_ssim']:.4f} | "
                 f"{m['psnr']:.2f} | {m['wplus']:.3f} | {m['seconds']:.3f} |")
  return "\n".join(lines)
