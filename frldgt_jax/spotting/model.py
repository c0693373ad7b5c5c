"""The spotting model: a small temporal convolution net giving per-frame micro/macro scores.

Input: the motion features of a window of frames [B, L, F] (frldgt_jax/spotting/features.py).
Output: per-frame logits [B, L, 3] over (none, micro, macro).

Why this shape. SoftNet (Liong et al. 2021) and MEAN (genbing99/MEAN_Spot-then-recognize) score
every frame from the optical flow around it and decode intervals from the score curve; the
features here already carry the flow-like change per face region, so what is left to learn is
(a) which combinations of regions are an expression rather than head drift or a blink, and (b)
how long the change lasts, which is what tells micro from macro. A stack of dilated 1-D
convolutions (dilations 1, 2, 4, ...; WaveNet / TCN style, residual) sees a receptive field of
1 + 2 * (kernel - 1) / 2 * sum(dilations) frames with few parameters, runs on a whole window
as one program and is translation-equivariant in time, so a window of any length can be scored.
Per-frame 3-way classification (rather than SoftNet's regressed score) gives the kind for free.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

CLASSES = ("none", "micro", "macro")


class SpottingNet(nn.Module):
  """Dilated residual temporal conv net: [B, L, F] features -> [B, L, 3] logits."""
  width: int = 32
  kernel: int = 3
  dilations: Sequence[int] = (1, 2, 4, 8, 16)

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(self.width, name="embed")(x)
    for i, d in enumerate(self.dilations):
      y = nn.LayerNorm(name=f"norm_{i}")(h)
      y = nn.Conv(self.width, (self.kernel,), kernel_dilation=(d,), padding="SAME",
                  name=f"conv_{i}")(y)
      y = nn.gelu(y)
      h = h + nn.Dense(self.width, name=f"mix_{i}")(y)
    return nn.Dense(len(CLASSES), name="head")(nn.LayerNorm(name="norm_out")(h))


def receptive_field(kernel: int, dilations: Sequence[int]) -> int:
  """Frames one output frame sees."""
  return 1 + (kernel - 1) * int(sum(dilations))


def probabilities(logits: jnp.ndarray) -> jnp.ndarray:
  """Softmax over the (none, micro, macro) axis."""
  return nn.softmax(logits, axis=-1)
