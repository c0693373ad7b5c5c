"""Reading a user's photo (inversion, measurement): `read_rgb(path)` -> uint8 RGB [H, W, 3].

Every photo a SAT3D command reads comes through here, with one set of checks: the file exists
and is an image Pillow identifies; its header's size is at most `MAX_PIXELS` (a decompression
bomb -- e.g. a 20000x20000 PNG of a few hundred KB -- is refused before its pixels are
allocated); its pixels decode. Then it is turned upright by its EXIF orientation, 16-bit grey
is scaled (not clipped) to 8 bits, and transparency is composited over white. FRL-DGT reads its
frames with the same checks in `frldgt_jax/data/clips.py` (the libraries share no code).
"""
from __future__ import annotations

import os
import pathlib
import struct

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sat3d_jax.errors import InputError

# 10000 x 10000: far above any camera a face photo comes from, far below what breaks memory.
MAX_PIXELS = 100_000_000
# What Pillow's decoders raise on damaged data (truncated streams, broken chunks, bad tables).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError)
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# The EXIF orientation tag; its values 5-8 turn the image by 90 degrees (width and height swap).
ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _to_rgb(im: Image.Image) -> np.ndarray:
  if im.mode in _SIXTEEN_BIT_GREY:  # convert() would clip 16-bit values at 255
    grey = np.asarray(im).astype(np.float64)
    grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)
  if im.mode == "F":
    raise ValueError("32-bit float pixels have no agreed 8-bit range")
  if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
    rgba = im.convert("RGBA")
    im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
  return np.asarray(im.convert("RGB"))


def _open(path: pathlib.Path) -> Image.Image:
  """The image opened lazily (its header read), after every check but decoding."""
  try:
    im = Image.open(path)
  except FileNotFoundError as e:
    raise InputError(f"{path}: no such image") from e
  except Image.DecompressionBombError as e:
    raise InputError(f"{path}: image header claims more than {MAX_PIXELS} pixels "
                     f"(a decompression bomb?): {e}") from e
  except UnidentifiedImageError as e:
    raise InputError(f"{path}: not an image file Pillow can identify") from e
  except OSError as e:
    raise InputError(f"{path}: cannot be read ({e})") from e
  width, height = im.size
  if width * height > MAX_PIXELS:
    im.close()
    raise InputError(f"{path}: {width}x{height} pixels is more than {MAX_PIXELS} (refused "
                     "before decoding: a decompression bomb?)")
  if width < 1 or height < 1:
    im.close()
    raise InputError(f"{path}: image is {width}x{height} pixels")
  return im


def upright_size(path: str | os.PathLike) -> tuple[int, int]:
  """(width, height) of an image file as `read_rgb` returns it (EXIF rotations swap them), from
  its header: every check of `read_rgb` but decoding the pixels (an InputError naming the file)."""
  with _open(pathlib.Path(path)) as im:
    width, height = im.size
    if im.getexif().get(ORIENTATION_TAG, 1) in _TRANSPOSING_ORIENTATIONS:
      return height, width
    return width, height


def read_rgb(path: str | os.PathLike) -> np.ndarray:
  """uint8 RGB [H, W, 3] of an image file, upright by its EXIF orientation.

  Raises:
    InputError: naming the file and the check that failed (missing, not an image, too many
      pixels, undecodable data).
  """
  path = pathlib.Path(path)
  with _open(path) as im:
    try:
      rgb = _to_rgb(ImageOps.exif_transpose(im))
    except _DECODE_ERRORS as e:
      raise InputError(f"{path}: {im.format} pixel data cannot be decoded "
                       f"({type(e).__name__}: {e})") from e
  return rgb


def check_square(width: int, height: int, name: str) -> None:
  """An InputError naming `name` unless an aligned face crop's size is square."""
  if width != height:
    raise InputError(f"{name}: an aligned face crop must be square, got {width}x{height}")


def aligned_crop(photo: np.ndarray, size: int, name: str) -> np.ndarray:
  """uint8 [size, size, 3] of a photo that already is a square face crop (EG3D's in-the-wild
  crop at any size), resized (area-averaged down, bicubic up); a non-square one is an
  InputError naming it."""
  h, w = photo.shape[:2]
  check_square(w, h, name)
  if h == size:
    return photo
  interp = cv2.INTER_AREA if h > size else cv2.INTER_CUBIC
  return cv2.resize(photo, (size, size), interpolation=interp)
