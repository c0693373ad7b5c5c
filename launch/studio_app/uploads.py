"""Checks of what people upload to the studio, before any of it reaches a model.

A photo must be a PNG, JPEG or WebP file of at most `max_bytes`, fully readable (not
truncated), with 8-bit RGB / RGBA / grey / palette pixels and at most MAX_PIXELS pixels.
16-bit, float, CMYK and other colour spaces are refused with a message saying what to do
(a silent conversion would show people a face that is not the one they uploaded).
"""
from __future__ import annotations

import os
import pathlib

import numpy as np

from sat3d_jax.errors import InputError

PHOTO_TYPES = (".png", ".jpg", ".jpeg", ".webp")
PHOTO_FORMATS = ("PNG", "JPEG", "WEBP")
EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P")
MAX_PIXELS = 40_000_000


def check_size(path: str | os.PathLike, max_bytes: int, what: str) -> pathlib.Path:
  """The path of an uploaded file no larger than `max_bytes`."""
  if not path:
    raise InputError(f"no {what} uploaded")
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"the uploaded {what} is gone; upload it again")
  size = path.stat().st_size
  if size > max_bytes:
    raise InputError(f"{path.name}: {size / 1e6:.1f} MB is more than the studio's limit of "
                     f"{max_bytes / 1e6:.0f} MB for a {what}")
  return path


def read_photo(path: str | os.PathLike, max_bytes: int) -> np.ndarray:
  """uint8 RGB [H, W, 3] of an uploaded photo, upright by its EXIF orientation (module
  docstring says what is refused)."""
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  path = check_size(path, max_bytes, "photo")
  name = path.name
  try:
    with Image.open(path) as im:
      kind, mode, size = im.format, im.mode, im.size
      if kind not in PHOTO_FORMATS:
        raise InputError(f"{name}: a {kind} image; upload a PNG, JPEG or WebP photo")
      if size[0] * size[1] > MAX_PIXELS:
        raise InputError(f"{name}: {size[0]}x{size[1]} pixels is more than the studio's "
                         f"limit of {MAX_PIXELS / 1e6:.0f} megapixels")
      if mode == "CMYK":
        raise InputError(f"{name}: a CMYK image (print colours); save it as RGB and upload "
                         "it again")
      if mode not in EIGHT_BIT_MODES:
        raise InputError(f"{name}: pixels of mode {mode} (16-bit or floating point); save it "
                         "as an 8-bit RGB photo and upload it again")
      im.load()  # decodes everything: a truncated file fails here
      rgb = ImageOps.exif_transpose(im).convert("RGB")
  except InputError:
    raise
  except Image.DecompressionBombError:
    raise InputError(f"{name}: too many pixels") from None
  except (OSError, ValueError, SyntaxError) as e:  # not an image, truncated, corrupt
    raise InputError(f"{name}: not a readable image ({e})") from None
  return np.asarray(rgb)
