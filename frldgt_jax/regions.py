"""AU (action unit) regions on the aligned face crop, and the patch indices that fall inside them.

Regions are boxes in normalised crop coordinates (x right, y down, both in [0, 1]) derived from
the alignment template (left eye, right eye, mouth centre; see docs/frldgt.md, "Micro-expression
conventions"). 'left'/'right' mean image-left/image-right (image-left is the subject's right side).

Each right-hand region is the exact mirror (about x = 0.5) of its left-hand partner and each
centred region is symmetric, so a horizontal flip of the crop maps the patches of one region onto
the patches of its partner. Membership is decided in integer-exact patch-grid arithmetic so that
this symmetry holds bit for bit at every grid size; `region_patch_indices` checks it.
"""
import dataclasses
from typing import Sequence

import numpy as np

from frldgt_jax.data.align import TEMPLATE as _TEMPLATE  # left eye, right eye, mouth (x, y)

TEMPLATE = np.asarray(_TEMPLATE, dtype=np.float64).reshape(3, 2)
_LEFT_EYE, _RIGHT_EYE, _MOUTH = TEMPLATE

if not (abs(_LEFT_EYE[0] + _RIGHT_EYE[0] - 1.0) < 1e-9 and abs(_LEFT_EYE[1] - _RIGHT_EYE[1]) < 1e-9
        and abs(_MOUTH[0] - 0.5) < 1e-9):
  raise ValueError(f'regions.py assumes a template symmetric about x = 0.5; got {TEMPLATE}')


@dataclasses.dataclass(frozen=True)
class Region:
  """An axis-aligned box: centre x offset from the midline (cx - 0.5), centre y, half sizes."""
  name: str
  dx_mid: float
  cy: float
  half_w: float
  half_h: float
  aus: str  # the action units the box is meant to cover (documentation only)

  def mirrored(self, name: str) -> 'Region':
    return dataclasses.replace(self, name=name, dx_mid=-self.dx_mid)


def _box(name, x0, x1, y0, y1, aus):
  return Region(name, (x0 + x1) / 2 - 0.5, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2, aus)


def _centred_box(name, half_w, y0, y1, aus):
  # Exactly on the midline (no rounding residue), so the box is its own mirror image.
  return Region(name, 0.0, (y0 + y1) / 2, half_w, (y1 - y0) / 2, aus)


# Sizes in units of the template's inter-ocular distance (d) and eye-to-mouth height (h); chosen
# to cover the FACS muscles of each group on a crop aligned to TEMPLATE (a project decision; the
# paper's exact boxes are unknown, docs/frldgt.md).
_D = _RIGHT_EYE[0] - _LEFT_EYE[0]
_H = _MOUTH[1] - _LEFT_EYE[1]
_EX, _EY = _LEFT_EYE
_MX, _MY = _MOUTH

_BROW_EYE_LEFT = _box('brow_eye_left', _EX - 0.45 * _D, _EX + 0.40 * _D,
                      _EY - 0.55 * _H, _EY + 0.20 * _H, 'AU1 AU2 AU4 AU6 AU7')
_GLABELLA_NOSE = _centred_box('glabella_nose', 0.30 * _D, _EY - 0.45 * _H, _MY - 0.25 * _H,
                              'AU4 AU9')
_MOUTH_CORNER_LEFT = _box('mouth_corner_left', _MX - 0.85 * _D, _MX - 0.05 * _D,
                          _MY - 0.45 * _H, _MY + 0.20 * _H, 'AU10 AU12 AU14 AU15')
_MOUTH_CHIN = _centred_box('mouth_chin', 0.45 * _D, _MY - 0.10 * _H, min(_MY + 0.50 * _H, 1.0),
                           'AU17 AU24 AU25 AU26')

ALL_REGIONS = {
    r.name: r for r in (
        _BROW_EYE_LEFT,
        _BROW_EYE_LEFT.mirrored('brow_eye_right'),
        _GLABELLA_NOSE,
        _MOUTH_CORNER_LEFT,
        _MOUTH_CORNER_LEFT.mirrored('mouth_corner_right'),
        _MOUTH_CHIN,
    )
}
# Left/right partners; centred regions are their own partner.
MIRROR_PARTNER = {
    'brow_eye_left': 'brow_eye_right', 'brow_eye_right': 'brow_eye_left',
    'mouth_corner_left': 'mouth_corner_right', 'mouth_corner_right': 'mouth_corner_left',
    'glabella_nose': 'glabella_nose', 'mouth_chin': 'mouth_chin',
}
DEFAULT_REGIONS = ('brow_eye_left', 'brow_eye_right', 'glabella_nose',
                   'mouth_corner_left', 'mouth_corner_right')


def _check_names(names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in ALL_REGIONS]
  if unknown:
    raise ValueError(f'unknown AU region(s) {unknown}; known: {sorted(ALL_REGIONS)}')
  if len(set(names)) != len(names):
    raise ValueError(f'AU region names repeat: {list(names)}')
  missing = [n for n in names if MIRROR_PARTNER[n] not in names]
  if missing:
    raise ValueError(f'AU regions {missing} are listed without their mirror partner '
                     f'{[MIRROR_PARTNER[n] for n in missing]}; flips need both')


def region_masks(grid: int, names: Sequence[str] = DEFAULT_REGIONS) -> np.ndarray:
  """Boolean [K, grid, grid] masks: patch (row i, col j) belongs to region k.

  A patch belongs to a box when its centre lies in the box (closed); each half size is at least
  half a patch, so every region holds at least one patch at any grid size.
  """
  _check_names(names)
  if grid < 1:
    raise ValueError(f'patch grid must be positive, got {grid}')
  # Patch centres in grid units, x measured from the midline: exact (half-)integers, so the
  # membership test of a mirrored box gives the mirrored answer exactly.
  centre_x = np.arange(grid) + 0.5 - grid / 2
  centre_y = np.arange(grid) + 0.5
  masks = []
  for name in names:
    r = ALL_REGIONS[name]
    in_x = np.abs(centre_x - r.dx_mid * grid) <= max(r.half_w * grid, 0.5)
    in_y = np.abs(centre_y - r.cy * grid) <= max(r.half_h * grid, 0.5)
    masks.append(in_y[:, None] & in_x[None, :])
  return np.stack(masks)


def mirror_permutation(grid: int) -> np.ndarray:
  """Index map perm [grid*grid] with mirrored_tokens = tokens[perm] for raster-ordered patches.

  Horizontal flip of the crop maps patch (i, j) to (i, grid - 1 - j).
  """
  rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
  return (rows * grid + (grid - 1 - cols)).reshape(-1)


def partner_permutation(names: Sequence[str] = DEFAULT_REGIONS) -> np.ndarray:
  """perm [K] with perm[k] = index of region k's mirror partner in `names`."""
  _check_names(names)
  return np.array([list(names).index(MIRROR_PARTNER[n]) for n in names], dtype=np.int32)


def region_patch_indices(grid: int, names: Sequence[str] = DEFAULT_REGIONS):
  """Static gather of raster patch indices per region, padded to the largest region.

  Returns (indices int32 [K, L], valid bool [K, L]); padded slots hold index 0 and valid False.
  Within a region patches are in raster order. Raises if the regions are not mirror-consistent.
  """
  masks = region_masks(grid, names)
  flat = masks.reshape(len(names), -1)
  length = int(flat.sum(1).max())
  indices = np.zeros((len(names), length), dtype=np.int32)
  valid = np.zeros((len(names), length), dtype=bool)
  for k, row in enumerate(flat):
    members = np.flatnonzero(row)
    indices[k, :members.size] = members
    valid[k, :members.size] = True
  # Mirror consistency: mirroring region k's patches gives exactly its partner's patches.
  perm = mirror_permutation(grid)
  partner = partner_permutation(names)
  for k in range(len(names)):
    if not np.array_equal(flat[k][perm], flat[partner[k]]):
      raise AssertionError(f'AU region {names[k]} is not the mirror of {names[partner[k]]} '
                           f'on a {grid}x{grid} patch grid')
  return indices, valid
