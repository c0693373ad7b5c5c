"""Pictures of a prediction on one clip (launch/predict.py): the motion curve with the onset and
apex marked, and the aligned onset and apex with the displacement field and the class
probabilities (matplotlib, Agg backend)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from frldgt_jax.results import pyplot


def write_motion_png(path: str | os.PathLike, curve: np.ndarray, onset: int, apex: int,
                     spotted: bool, title: str = "") -> None:
  """The smoothed motion energy per frame (frldgt_jax/apex.py) with onset and apex marked."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6, 2.8), dpi=100)
  frames = np.arange(len(curve))
  ax.plot(frames, curve, color="tab:blue", lw=1.5, marker=".", label="motion energy")
  ax.axvline(onset, color="tab:green", ls="--", label=f"onset {onset}")
  ax.axvline(apex, color="tab:red", ls="--",
             label=f"apex {apex} ({'spotted' if spotted else 'given'})")
  ax.set_xlabel("frame")
  ax.set_ylabel("mean |frame - onset| (AU areas)")
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_prediction_png(path: str | os.PathLike, onset: np.ndarray, apex: np.ndarray,
                         field: Optional[np.ndarray], field_name: str,
                         probabilities: Sequence[float], class_names: Sequence[str],
                         title: str = "") -> None:
  """Aligned onset and apex [S, S], the displacement field [S, S, 2] (dx, dy) drawn as arrows
  over the apex (scaled so they can be seen; the largest length is printed), and a bar chart of
  the class probabilities."""
  plt = pyplot()
  fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), dpi=100)
  for ax, image, name in ((axes[0], onset, "onset (aligned)"), (axes[1], apex, "apex (aligned)"),
                          (axes[2], apex, field_name)):
    ax.imshow(np.asarray(image).squeeze(), cmap="gray", vmin=0, vmax=255 if np.asarray(
        image).dtype == np.uint8 else 1)
    ax.set_title(name, fontsize=9)
    ax.axis("off")
  if field is not None:
    field = np.asarray(field, np.float32)
    size = field.shape[0]
    step = max(1, size // 16)
    centres = np.arange(step // 2, size, step)
    y, x = np.meshgrid(centres, centres, indexing="ij")
    dx, dy = field[y, x, 0], field[y, x, 1]
    longest = float(np.sqrt(dx ** 2 + dy ** 2).max())
    # The field says where each apex pixel came from on the onset (frldgt_jax.warp): the face
    # moved by -field, drawn from onset to apex position.
    scale = 0.8 * step / longest if longest > 0 else 1.0
    axes[2].quiver(x, y, -dx * scale, -dy * scale, color="yellow", angles="xy",
                   scale_units="xy", scale=1, width=0.006)
    axes[2].set_title(f"{field_name}\n(arrows x{scale:.1f}; longest {longest:.2f} px)",
                      fontsize=8)
  probabilities = np.asarray(probabilities, np.float64)
  bars = axes[3].bar(np.arange(len(class_names)), probabilities, color="tab:blue")
  bars[int(np.argmax(probabilities))].set_color("tab:red")
  axes[3].set_xticks(np.arange(len(class_names)), class_names, rotation=20)
  axes[3].set_ylim(0, 1)
  axes[3].set_title("class probabilities", fontsize=9)
  for i, p in enumerate(probabilities):
    axes[3].text(i, p + 0.02, f"{p:.2f}", ha="center", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
