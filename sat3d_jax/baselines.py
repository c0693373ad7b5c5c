"""The classical 2D editing baselines SAT3D is compared with (docs/sat3d.md, "Evaluation").

* Style mixing (StyleGAN, Karras et al. 2019, section 3.1): the source's w layers with one band
  taken from the reference. Bands follow the StyleGAN convention by resolution: "coarse" =
  the ws that drive the 4^2-8^2 layers, "middle" = 16^2-32^2, "fine" = 64^2 and up. Each ws index
  is assigned to the lowest resolution of the backbone layers that read it (a ws index is shared
  by one block's toRGB and the next block's first conv). For EG3D FFHQ-512 (num_ws = 14, a 256 px
  backbone) this gives coarse 0-3, middle 4-7, fine 8-13 (the index the super-resolution reads,
  13, is fine); `style_mixing_bands` derives them for any architecture.
* Correlated channel swap: per attribute, the flat style channels whose values correlate most
  with the attribute's measurement over random samples are copied from the reference in full
  (s_edit[c] = s_ref[c] on those channels, s_src elsewhere). A channel's correlation with an
  attribute is max over the attribute's K groups of |Pearson r(s_c, q_a,k)| (for K = 2 both groups
  give the same |r|).
* The unedited source: s_edit = s_src.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

BANDS = ("coarse", "middle", "fine")
# Upper resolution (inclusive) of the coarse and middle bands (StyleGAN, section 3.1).
_COARSE_MAX, _MIDDLE_MAX = 8, 32


def style_mixing_bands(arch) -> dict[str, tuple[int, int]]:
  """{band: (start, stop)} ws index ranges of an EG3D `Arch` (see module docstring)."""
  lowest = {}
  for block in arch.backbone_blocks:
    for layer in block.layers:
      lowest[layer.w_index] = min(lowest.get(layer.w_index, layer.resolution), layer.resolution)
  for i in range(arch.num_ws):  # indices only the super-resolution reads are fine detail
    lowest.setdefault(i, arch.img_resolution)
  band_of = ["coarse" if lowest[i] <= _COARSE_MAX else
             "middle" if lowest[i] <= _MIDDLE_MAX else "fine" for i in range(arch.num_ws)]
  bands = {}
  for name in BANDS:
    index = [i for i, b in enumerate(band_of) if b == name]
    if index:
      if index != list(range(index[0], index[-1] + 1)):
        raise ValueError(f"ws indices of the {name} band are not contiguous: {index}")
      bands[name] = (index[0], index[-1] + 1)
  return bands


def mix_ws(ws_src: np.ndarray, ws_ref: np.ndarray, band: tuple[int, int]) -> np.ndarray:
  """Style mixing: ws_src [..., num_ws, w_dim] with ws[band[0]:band[1]] from ws_ref."""
  start, stop = band
  out = np.array(ws_src, copy=True)
  out[..., start:stop, :] = np.asarray(ws_ref)[..., start:stop, :]
  return out


def pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Pearson r [C, K] between every column of x [N, C] and every column of y [N, K].

  A column with zero variance (a constant channel or group) has r = 0 with everything.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(f"need x [N, C] and y [N, K] with the same N, got {x.shape}, {y.shape}")
  if x.shape[0] < 2:
    raise ValueError("Pearson correlation needs at least 2 samples")
  xc = x - x.mean(0)
  yc = y - y.mean(0)
  sx = np.sqrt(np.sum(xc * xc, 0))
  sy = np.sqrt(np.sum(yc * yc, 0))
  cov = xc.T @ yc
  denom = np.outer(sx, sy)
  return np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)


def attribute_correlations(styles: np.ndarray, measurements: Mapping[str, np.ndarray]
                           ) -> dict[str, np.ndarray]:
  """{attribute: [C]} max over the attribute's groups of |Pearson r(s_c, q_a,k)|.

  styles [N, C] flat styles of N samples; measurements {attribute: [N, K] QMM probabilities}.
  """
  return {a: np.max(np.abs(pearson_columns(styles, q)), axis=1)
          for a, q in measurements.items()}


def correlated_channels(correlation: np.ndarray, count: int,
                        allowed: Optional[np.ndarray] = None) -> np.ndarray:
  """The `count` channels (sorted indices) with the highest score, among `allowed` channels
  (default all); ties go to the lower index. The score is a correlation here (the swap
  baseline); a mask's control probabilities P[a] give the channels attribute a owns most."""
  correlation = np.asarray(correlation)
  candidates = np.arange(correlation.shape[0]) if allowed is None else np.asarray(allowed)
  count = int(min(max(count, 0), candidates.shape[0]))
  order = np.argsort(-correlation[candidates], kind="stable")[:count]
  return np.sort(candidates[order])


def swap_channels(s_src: np.ndarray, s_ref: np.ndarray, channels: Sequence[int]) -> np.ndarray:
  """s_src [..., C] with the given channels copied from s_ref (a full swap, no blending)."""
  out = np.array(s_src, copy=True)
  channels = np.asarray(channels, np.int64)
  out[..., channels] = np.asarray(s_ref)[..., channels]
  return out


def mask_channel_budget(probabilities: np.ndarray, attribute_index: int) -> int:
  """How many channels SAT3D's mask spends on an attribute: round(sum_c P[a, c]).

  m_a = P[a] has this L1 mass, so the swap baseline moves the same total amount of style
  channels as SAT3D's delta = 1 edit, but all-or-nothing on the most correlated ones (at least 1).
  """
  return max(1, int(round(float(np.sum(np.asarray(probabilities)[attribute_index])))))
