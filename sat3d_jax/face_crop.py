"""Face crop of a photograph approximating EG3D's FFHQ preprocessing, from three landmarks.

What EG3D did (NVlabs/eg3d, dataset_preprocessing/ffhq):
1. `align_multiprocess.py`: the FFHQ alignment recipe on dlib's 68 landmarks, with a 1.8x larger
   quad: eye_left/right = mean of each eye's 6 contour points, mouth = mean of the two mouth
   corners, eye_to_eye = right - left, eye_to_mouth = mouth - eye_avg,
   x = eye_to_eye - rot90(eye_to_mouth) (numpy: flipud(eye_to_mouth) * [-1, 1]), normalised and
   scaled by max(|eye_to_eye| * 2, |eye_to_mouth| * 1.8); the quad is a square along x centred on
   eye_avg + 0.1 * eye_to_mouth. This step removes the in-plane rotation (roll) of the head.
2. `crop_images.py` with Deep3DFaceRecon's `align_img`: MTCNN's 5 points (eyes, nose, mouth
   corners) are fitted by least squares (POS: an orthographic projection) to the standard 3D
   landmarks `LM3D_STD`; the image is scaled so that one unit of that 3D face is 300 px
   (`rescale_factor`) and cropped 1024 px around the projection of the 3D origin; then the centre
   700 px are cut out and resized to 512. No further rotation.
   So the final crop is centred on the 3D origin's projection and spans 700 / 300 = 2.333 units
   of the standard face.

What this module does: three photo landmarks, a float [3, 2] array (image-left eye centre,
image-right eye centre, mouth centre, in pixels; the caller finds them, e.g. with the OpenCV
detector of launch/common/faces.py, or gives them), give (1) the roll, by step 1's formula
applied to these three points, and (2) scale and translation, by least squares of the three
points onto `EG3D_TEMPLATE`: where the standard 3D face's eyes and mouth centre land in EG3D's
crop for a frontal head (orthographic, as POS). Together a similarity transform photo -> crop.

Where it differs from the original (expect a few percent of crop size on real photos):
- landmarks: three points (with launch/common/faces.py: Haar eye boxes refined to the pupil and
  the smile-cascade box centre, or a mouth placed below the eyes) instead of dlib's 68 points
  and MTCNN's 5;
- scale/translation: fitted to the frontal projection of the standard face, whereas POS fits the
  projection for the head's actual pose; a turned head (yaw) shortens the eye distance by about
  cos(yaw), so its crop comes out zoomed in by about 1 / cos(yaw) (4.5% at 0.3 rad);
- the nose is not used; there is no 1.8x intermediate image, no reflect-and-blur padding outside
  the photo (the border pixels are replicated) and the resampling is bilinear with an area
  reduction instead of PIL's quad transform, bicubic resize and Lanczos.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["EG3D_CENTER_CROP", "EG3D_RESCALE_FACTOR", "EG3D_TEMPLATE", "LM3D_STD", "FaceCrop",
           "crop_face", "crop_matrix", "ffhq_roll", "template_pixels"]

# Deep3DFaceRecon's standard 5 landmarks of the 3D face (util/load_mats.load_lm3d of
# similarity_Lm3D_all.mat, the values its docstrings and many ports print): image-left eye,
# image-right eye, nose tip, image-left and image-right mouth corner; x right, y up, z to camera.
LM3D_STD = np.array([[-0.31148657, 0.29036078, 0.13377953],
                     [0.30979887, 0.28972036, 0.13179526],
                     [0.0032535, -0.04617932, 0.55244243],
                     [-0.25216928, -0.38133916, 0.22405732],
                     [0.2484662, -0.38128236, 0.22235769]])
# eg3d crop_images(_in_the_wild).py: align_img(rescale_factor=300, target_size=1024), then the
# centre 700 px -> the crop spans 700 / 300 units of the standard face.
EG3D_RESCALE_FACTOR = 300.0
EG3D_CENTER_CROP = 700.0
_SPAN = EG3D_CENTER_CROP / EG3D_RESCALE_FACTOR


def _project(points3d: np.ndarray) -> np.ndarray:
  """Frontal orthographic projection into normalised crop coordinates (x right, y down)."""
  return np.stack([0.5 + points3d[:, 0] / _SPAN, 0.5 - points3d[:, 1] / _SPAN], axis=1)


# Image-left eye, image-right eye and mouth centre (mean of the corners) in EG3D's crop,
# normalised to [0, 1] edge to edge: about (0.3665, 0.3756), (0.6328, 0.3758), (0.4992, 0.6634).
EG3D_TEMPLATE = tuple(tuple(float(v) for v in p) for p in np.concatenate(
    [_project(LM3D_STD[:2]), _project(LM3D_STD[3:].mean(0, keepdims=True))]))


class FaceCrop(NamedTuple):
  """An aligned crop and how it was made.

  image: uint8 [size, size, 3] RGB crop.
  matrix: float64 [2, 3] photo pixel -> crop pixel (OpenCV convention: pixel centres at integers).
  landmarks: float64 [3, 2], the photo landmarks used (left eye, right eye, mouth).
  roll_degrees: the head's in-plane rotation that the crop removed (positive = clockwise in the
    photo, i.e. the image-right eye lower).
  """
  image: np.ndarray
  matrix: np.ndarray
  landmarks: np.ndarray
  roll_degrees: float


def template_pixels(size: int) -> np.ndarray:
  """EG3D_TEMPLATE in pixel coordinates of a `size` crop (pixel centres at integers), [3, 2]."""
  return np.asarray(EG3D_TEMPLATE, np.float64) * size - 0.5


def _points(landmarks) -> np.ndarray:
  """The landmarks as a float64 [3, 2] array, checked: finite, left eye image-left of right."""
  points = np.asarray(landmarks, dtype=np.float64)
  if points.shape != (3, 2) or not np.all(np.isfinite(points)):
    problem = "are not 3 finite (x, y) points"
  elif not points[0, 0] < points[1, 0]:
    problem = "have the left eye not image-left of the right eye"
  else:
    return points
  raise ValueError(f"landmarks {problem}: {points.tolist()} (expected image-left eye, "
                   "image-right eye, mouth centre)")


def ffhq_roll(landmarks) -> float:
  """The crop's rotation angle (radians) by the FFHQ recipe on (left eye, right eye, mouth).

  x = eye_to_eye - rot90(eye_to_mouth), rot90((a, b)) = (-b, a); the angle of x from the image
  x axis (y down), i.e. positive when the image-right eye is lower.

  Args:
    landmarks: float [3, 2] array-like (image-left eye, image-right eye, mouth), pixels.
  """
  p = _points(landmarks)
  eye_to_eye = p[1] - p[0]
  eye_to_mouth = p[2] - (p[0] + p[1]) / 2
  x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
  return float(math.atan2(x[1], x[0]))


_TEMPLATE_ROLL = ffhq_roll(EG3D_TEMPLATE)


def crop_matrix(landmarks, size: int) -> np.ndarray:
  """The similarity transform [2, 3] photo pixel -> EG3D-like crop pixel of a `size` crop.

  Rotation: `ffhq_roll` of the landmarks minus that of the template (undone). Scale and
  translation: least squares of the three rotated landmarks onto `template_pixels(size)` (the
  closed form of the fit with the rotation fixed).

  Args:
    landmarks: float [3, 2] array-like (image-left eye, image-right eye, mouth), photo pixels.
  """
  points = _points(landmarks)
  # Relative to the template's own FFHQ angle (0.07 degrees), so that a face with the template's
  # proportions is mapped onto it exactly.
  angle = ffhq_roll(points) - _TEMPLATE_ROLL
  cos, sin = math.cos(-angle), math.sin(-angle)
  rot = np.array([[cos, -sin], [sin, cos]])
  src = points @ rot.T
  dst = template_pixels(size)
  src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
  denom = float(np.sum(src_c * src_c))
  if not denom > 1e-9:
    raise ValueError(f"degenerate landmarks (all at one place): {points.tolist()}")
  scale = float(np.sum(src_c * dst_c)) / denom
  if not scale > 0:
    raise ValueError(f"landmarks {points.tolist()} do not look like a face (eyes above mouth)")
  shift = dst.mean(0) - scale * src.mean(0)
  return np.concatenate([scale * rot, shift[:, None]], axis=1)


def crop_face(image: np.ndarray, size: int, landmarks, name: str = "<image>") -> FaceCrop:
  """Cuts the EG3D-like `size` crop of a photo around the face at `landmarks`.

  Args:
    image: uint8 RGB [H, W, 3] (grey [H, W] and RGBA are converted).
    size: side of the square crop (the generator's img_resolution).
    landmarks: float [3, 2] array-like, photo pixels: image-left eye centre, image-right eye
      centre, mouth centre (launch/common/faces.py detects them).
    name: the image's name for error messages.
  Raises:
    ValueError: not a uint8 RGB/grey image, or landmarks that are not 3 finite points with the
      left eye image-left of the right one and the mouth below them.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"{name}: expected a uint8 image, got {image.dtype}")
  if image.ndim == 2:
    image = np.repeat(image[:, :, None], 3, axis=2)
  if image.ndim != 3 or image.shape[2] not in (3, 4):
    raise ValueError(f"{name}: expected an RGB image [H, W, 3], got shape {image.shape}")
  image = np.ascontiguousarray(image[:, :, :3])
  points = _points(landmarks)
  matrix = crop_matrix(points, size)
  # Warp at a resolution where the crop is not minified (bilinear would alias), then reduce by
  # area averaging. Pixel p of the `size` crop is pixel factor * (p + 0.5) - 0.5 of the big one.
  scale = math.hypot(matrix[0, 0], matrix[1, 0])
  factor = max(1, min(8, math.ceil(1.0 / scale))) if scale < 1 else 1
  big = size * factor
  enlarge = np.array([[factor, 0.0, 0.5 * (factor - 1)], [0.0, factor, 0.5 * (factor - 1)]])
  matrix_big = enlarge @ np.vstack([matrix, [0.0, 0.0, 1.0]])
  crop = cv2.warpAffine(image, matrix_big, (big, big), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
  if factor > 1:
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
  return FaceCrop(crop, matrix, points, math.degrees(ffhq_roll(points) - _TEMPLATE_ROLL))
