"""Fuzzing the image readers: SAT3D's photos (inversion and measurement both read through
sat3d_jax/image_file.py) and FRL-DGT's frames (frldgt_jax/data/clips.py). Images of every
mode and format Pillow writes (16-bit, CMYK, palette, alpha, 1-bit, EXIF-rotated, 1x1), then
byte-mutated and truncated; 0-byte files, non-images with an image extension and a
decompression bomb (refused from the header, in a subprocess whose peak memory is measured)."""
import dataclasses
import io
import json
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from frldgt_jax.data import clips
from sat3d_jax import image_file
from sat3d_jax.errors import InputError
from tests.robustness import harness

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _valid_rgb(rgb):
  assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
  assert rgb.shape[0] * rgb.shape[1] <= image_file.MAX_PIXELS


def _valid_gray(gray):
  assert gray.dtype == np.uint8 and gray.ndim == 2 and gray.size > 0
  assert gray.shape[0] * gray.shape[1] <= clips.MAX_PIXELS


PIL_DECODE = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError,
              Image.DecompressionBombError)
PHOTOS = harness.Reader("photos (invert, measure)", image_file.read_rgb, InputError, _valid_rgb,
                        PIL_DECODE)
FRAMES = harness.Reader("micro-expression frames", clips.load_gray, clips.ClipError,
                        _valid_gray, PIL_DECODE)

_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif",
            "WEBP": ".webp"}
_MODES = ["RGB", "L", "RGBA", "LA", "P", "P+transparency", "CMYK", "I;16", "1", "F"]


@st.composite
def images(draw):
  """(bytes, file name, (width, height) upright) of a small image in a random mode and format
  (a mode the format cannot hold is saved as TIFF, which holds them all)."""
  width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
  mode = draw(st.sampled_from(_MODES))
  fmt = draw(st.sampled_from(sorted(_FORMATS)))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  if mode == "I;16":
    im = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
  elif mode == "F":
    im = Image.fromarray(rng.random((height, width), dtype=np.float32))
  else:
    base = mode.split("+")[0]
    im = Image.fromarray(rng.integers(0, 255, (height, width, 4), dtype=np.uint8))
    im = im.convert(base)
    if mode == "P+transparency":
      im.info["transparency"] = 0
  upright = (width, height)
  kwargs = {}
  if fmt == "JPEG":
    exif = Image.Exif()
    orientation = draw(st.integers(1, 8))
    exif[0x0112] = orientation
    kwargs["exif"] = exif.tobytes()
    if orientation >= 5:
      upright = (height, width)
  out = io.BytesIO()
  try:
    im.save(out, fmt, **kwargs)
  except (OSError, ValueError, KeyError):
    out, fmt, upright = io.BytesIO(), "TIFF", (width, height)
    im.save(out, fmt)
  return out.getvalue(), "image" + _FORMATS[fmt], upright


@harness.fuzz(60)
@given(image=images())
def test_photos_of_every_mode_and_format(recorder, image):
  data, name, upright = image

  def upright_rgb(rgb):
    _valid_rgb(rgb)
    assert (rgb.shape[1], rgb.shape[0]) == upright, f"{rgb.shape} is not {upright} upright"

  recorder.check_bytes(dataclasses.replace(PHOTOS, validate=upright_rgb), data, name)


@harness.fuzz(100)
@given(image=images(), data=st.data())
def test_mutated_photos(recorder, image, data):
  raw, name, _ = image
  recorder.check_bytes(PHOTOS, data.draw(harness.mutated(raw)), name)


@harness.fuzz(100)
@given(image=images(), data=st.data(), mutate=st.booleans())
def test_frames(recorder, image, data, mutate):
  raw, name, _ = image
  if mutate:
    raw = data.draw(harness.mutated(raw))
  recorder.check_bytes(FRAMES, raw, name.replace("image", "img46"))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
  return (struct.pack(">I", len(payload)) + kind + payload
          + struct.pack(">I", zlib.crc32(kind + payload)))


def png_bomb(size: int = 20000) -> bytes:
  """A valid grey PNG of size x size zeros: ~400 MB of pixels in a few hundred KB."""
  compressor = zlib.compressobj(9)
  row = b"\0" * (size + 1)  # filter byte + pixels
  idat = b"".join(compressor.compress(row) for _ in range(size)) + compressor.flush()
  header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
          + _png_chunk(b"IEND", b""))


def png_claiming(size: int) -> bytes:
  """A PNG whose header claims size x size grey pixels over a few bytes of pixel data."""
  header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
          + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def _one_by_one() -> bytes:
  out = io.BytesIO()
  Image.new("RGB", (1, 1), (10, 20, 30)).save(out, "PNG")
  return out.getvalue()


SPECIAL = {
    "0-byte.jpg": b"",
    "text.jpg": b"this is not an image\n" * 10,
    "html.png": b"<html><body>not found</body></html>",
    "one_by_one.png": _one_by_one(),
    "header_claims_20000.png": png_claiming(20000),
    "header_claims_10001.png": png_claiming(10001),
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_images(recorder, name):
  recorder.check_bytes(PHOTOS, SPECIAL[name], name)
  recorder.check_bytes(FRAMES, SPECIAL[name], name.replace(".", "_img1."))


_BOMB_CHILD = """
import json, sys
from frldgt_jax.data import clips
from sat3d_jax import image_file
from sat3d_jax.errors import InputError
errors = []
InputError = (InputError, clips.ClipError)
for read in (image_file.read_rgb, clips.load_gray):
  try:
    read(sys.argv[1])
    errors.append(None)
  except InputError as e:
    errors.append(str(e))
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
print(json.dumps({"errors": errors, "max_rss_mib": int(status["VmHWM"].split()[0]) / 1024}))
"""


def test_decompression_bomb_is_refused_before_allocation(recorder, tmp_path):
  """A 20000x20000 PNG (400 MB of pixels): both readers refuse it from its header, and the
  reading process's peak memory stays far below the pixels' size."""
  path = tmp_path / "bomb.png"
  path.write_bytes(png_bomb(20000))
  assert path.stat().st_size < 2 << 20
  proc = subprocess.run([sys.executable, "-c", _BOMB_CHILD, str(path)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert proc.returncode == 0, proc.stderr
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  for error in result["errors"]:
    assert error and "bomb.png" in error and "pixels" in error, result
  assert result["max_rss_mib"] < 250, result
  for reader in (PHOTOS.name, FRAMES.name):
    recorder.count(reader, "refused")
