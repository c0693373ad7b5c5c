"""The learned mask as a picture: per attribute (rows) and style layer (columns), the number of
channels the attribute controls there (sum of P[a, c] over the layer's channels)."""
from __future__ import annotations

import io

import numpy as np


def mask_figure(layer_names: list[str], channels: np.ndarray, attributes) -> np.ndarray:
  """uint8 RGB image of the [A, L] matrix `channels` as a heat map with its numbers."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  a, l = channels.shape
  fig, ax = plt.subplots(figsize=(max(6, 0.45 * l + 2), max(2.5, 0.35 * a + 1.5)))
  shown = ax.imshow(channels, cmap="viridis", aspect="auto")
  ax.set_xticks(range(l), [n.replace("backbone.synthesis.", "").replace("superresolution.", "sr.")
                           for n in layer_names], rotation=90, fontsize=7)
  ax.set_yticks(range(a), list(attributes), fontsize=8)
  if a * l <= 400:
    for i in range(a):
      for j in range(l):
        ax.text(j, i, f"{channels[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="w" if channels[i, j] < channels.max() / 2 else "k")
  fig.colorbar(shown, ax=ax, label="channels (sum of P)")
  ax.set_title("learned mask: channels each attribute controls per style layer", fontsize=9)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=90)
  plt.close(fig)
  return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
