"""EG3D's in-the-wild face crop of a photograph, from 5 landmarks, reproduced step by step.

The official recipe for a new photo (NVlabs/eg3d, dataset_preprocessing/ffhq/
preprocess_in_the_wild.py -> batch_mtcnn.py and crop_images_in_the_wild.py, which calls
Deep3DFaceRecon_pytorch's util/preprocess.py `align_img`):
1. MTCNN's 5 points (eyes, nose tip, mouth corners; the largest face above confidence 0.9), y
   flipped to point up (y' = H - 1 - y), in float32.
2. POS: least squares of an affine orthographic projection of the standard 3D face's 5 points
   (face_shape.STANDARD_FIVE) onto them; the scale s is the mean norm of the two projection rows,
   t the translation (where the 3D origin lands).
3. The photo is resized by k = 300 / s (bicubic, to int(W k) x int(H k)) and 1024 x 1024 cut
   around the origin's projection (`resize_n_crop_img`, zero outside the photo).
4. The centre 700 x 700 of that is resized to 512 with Lanczos.

`crop_in_the_wild` does the same with PIL, the same float32/float64 arithmetic and truncations,
but resizes only the part of the photo that the final crop shows (PIL's `resize(box=...)`, whose
pixel grid is the full resize's), so a small face in a large photo costs no giant intermediate
image. The 5 points come from MTCNN (the official detector) or from 68 landmarks through
`face_shape.five_points` (Deep3DFaceRecon's `extract_5p`); launch/common/faces.py finds both.
tests/sat3d/test_face_crop.py compares the result with the official scripts' own output.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image

from sat3d_jax import face_shape

__all__ = ["ALIGN_SIZE", "CENTER_CROP", "OUTPUT_SIZE", "RESCALE_FACTOR", "CropPlan", "FaceCrop",
           "crop_in_the_wild", "crop_plan", "pos_fit"]

# crop_images_in_the_wild.py: align_img(target_size=1024, rescale_factor=300), then the centre
# 700 px resized to 512.
ALIGN_SIZE = 1024
RESCALE_FACTOR = 300.0
CENTER_CROP = 700
OUTPUT_SIZE = 512


def pos_fit(points2d, points3d) -> tuple[np.ndarray, float]:
  """Deep3DFaceRecon's POS: (t [2], s) of the orthographic fit of points3d [N, 3] to [N, 2].

  Least squares of x = R1 . X + tx, y = R2 . X + ty over the 8 unknowns; s is the mean norm of
  R1 and R2. Both point sets in the same y-up convention.
  """
  xp = np.asarray(points2d)
  x = np.asarray(points3d)
  n = xp.shape[0]
  a = np.zeros([2 * n, 8])
  a[0::2, 0:3] = x
  a[0::2, 3] = 1
  a[1::2, 4:7] = x
  a[1::2, 7] = 1
  b = np.reshape(xp, [2 * n, 1])
  k = np.linalg.lstsq(a, b, rcond=None)[0]
  s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
  return np.array([k[3, 0], k[7, 0]]), float(s)


class CropPlan(NamedTuple):
  """Where the crop lies: in the photo resized by `scale` to `resized` (w, h), the aligned
  ALIGN_SIZE window starts at (left, up); the output is its centre CENTER_CROP resized to
  `size`."""
  scale: float
  resized: tuple[int, int]
  left: int
  up: int
  size: int

  def matrix(self, photo_size: tuple[int, int]) -> np.ndarray:
    """[2, 3] photo pixel -> output crop pixel (pixel centres at integers)."""
    w0, h0 = photo_size
    kx, ky = self.resized[0] / w0, self.resized[1] / h0
    margin = (ALIGN_SIZE - CENTER_CROP) // 2
    r = self.size / CENTER_CROP
    # Resize: (x + 0.5) * kx - 0.5; crop: - (left + margin); resize to size: (u + 0.5) r - 0.5.
    return np.array([[kx * r, 0.0, (0.5 * kx - 0.5 - self.left - margin + 0.5) * r - 0.5],
                     [0.0, ky * r, (0.5 * ky - 0.5 - self.up - margin + 0.5) * r - 0.5]])


class FaceCrop(NamedTuple):
  """An aligned crop and how it was made.

  image: uint8 [size, size, 3] RGB crop.
  matrix: float64 [2, 3] photo pixel -> crop pixel (pixel centres at integers).
  points: float32 [5, 2] the photo's 5 points used (face_shape.FIVE_POINT_NAMES), y down.
  plan: the CropPlan.
  """
  image: np.ndarray
  matrix: np.ndarray
  points: np.ndarray
  plan: CropPlan


def _five(points) -> np.ndarray:
  p = np.asarray(points, dtype=np.float32)
  if p.shape == (68, 2):
    p = face_shape.five_points(p)
  if p.shape != (5, 2) or not np.all(np.isfinite(p)):
    raise ValueError(f"expected 5 (or 68) finite (x, y) landmarks, got shape {p.shape}")
  if not p[0, 0] < p[1, 0]:
    raise ValueError(f"the image-left eye {p[0].tolist()} must be image-left of the right one "
                     f"{p[1].tolist()} (order: {', '.join(face_shape.FIVE_POINT_NAMES)})")
  return p


def crop_plan(points, photo_size: tuple[int, int], size: int = OUTPUT_SIZE) -> CropPlan:
  """The crop's placement for 5 (or 68) photo landmarks (x right, y down), as align_img does.

  Args:
    points: [5, 2] in face_shape.FIVE_POINT_NAMES order, or [68, 2] (iBUG order), pixels.
    photo_size: (width, height) of the photo.
    size: output side (512 in EG3D; the generator's resolution when inverting).
  """
  w0, h0 = photo_size
  lm = _five(points).copy()
  lm[:, -1] = h0 - 1 - lm[:, -1]
  t, s = pos_fit(lm, face_shape.STANDARD_FIVE)
  if not s > 0:
    raise ValueError(f"degenerate landmarks: {points}")
  k = RESCALE_FACTOR / s
  # np.int32 conversions of resize_n_crop_img (truncation towards zero).
  w, h = int(w0 * k), int(h0 * k)
  left = math.trunc(w / 2 - ALIGN_SIZE / 2 + float((t[0] - w0 / 2) * k))
  up = math.trunc(h / 2 - ALIGN_SIZE / 2 + float((h0 / 2 - t[1]) * k))
  return CropPlan(k, (w, h), left, up, int(size))


def crop_in_the_wild(image: np.ndarray, points, size: int = OUTPUT_SIZE,
                     name: str = "<image>") -> FaceCrop:
  """EG3D's in-the-wild crop of a photo around the face at `points` (see the module docstring).

  Args:
    image: uint8 RGB [H, W, 3] (grey [H, W] and RGBA are converted).
    points: [5, 2] photo pixels in face_shape.FIVE_POINT_NAMES order (MTCNN's keypoints), or
      the 68 iBUG landmarks [68, 2] (reduced by Deep3DFaceRecon's extract_5p).
    size: output side; 512 is EG3D's, another size resizes the 700 px centre to it instead.
    name: the image's name for error messages.
  Raises:
    ValueError: not a uint8 image, or landmarks of the wrong shape or order.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"{name}: expected a uint8 image, got {image.dtype}")
  if image.ndim == 2:
    image = np.repeat(image[:, :, None], 3, axis=2)
  if image.ndim != 3 or image.shape[2] not in (3, 4):
    raise ValueError(f"{name}: expected an RGB image [H, W, 3], got shape {image.shape}")
  photo = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
  try:
    plan = crop_plan(points, photo.size, size)
  except ValueError as e:
    raise ValueError(f"{name}: {e}") from e
  w0, h0 = photo.size
  w, h = plan.resized
  margin = (ALIGN_SIZE - CENTER_CROP) // 2
  x0, y0 = plan.left + margin, plan.up + margin
  # The part of the centre window inside the resized photo; outside, PIL's crop gives zeros.
  ix0, iy0 = max(x0, 0), max(y0, 0)
  ix1, iy1 = min(x0 + CENTER_CROP, w), min(y0 + CENTER_CROP, h)
  canvas = Image.new("RGB", (CENTER_CROP, CENTER_CROP))
  if ix1 > ix0 and iy1 > iy0:
    box = (ix0 * w0 / w, iy0 * h0 / h, ix1 * w0 / w, iy1 * h0 / h)
    part = photo.resize((ix1 - ix0, iy1 - iy0), resample=Image.Resampling.BICUBIC, box=box)
    canvas.paste(part, (ix0 - x0, iy0 - y0))
  out = canvas.resize((plan.size, plan.size), resample=Image.Resampling.LANCZOS)
  return FaceCrop(np.asarray(out), plan.matrix(photo.size), _five(points), plan)
