"""A folder of aligned face photos mixed into a stream of generated examples (NumPy and Pillow).

The inversion encoder (sat3d_jax/encoder.py) trains on the frozen generator's own samples; a
folder of real photos, already cut as EG3D's in-the-wild crop (square, any size), can replace
some rows of every batch (`config.data.photos`, docs/encoder.md). Those rows carry no W+ code
and no camera: only the reconstruction terms judge them.

`PhotoFolder` checks the whole folder when it is opened (at start-up): it holds images, each is
an image file Pillow identifies, within the pixel limit and square (sat3d_jax/image_file.py; the
pixels are decoded when a batch needs them). `mix_photos` adds to each batch of a step-indexed
stream (sat3d_jax/pairs.py)
  photo     [B, size, size, 3] uint8   the photo of a photo row, zeros elsewhere,
  is_photo  [B] float32                1 on the rows that are photos,
with a fixed number of photo rows per batch. Which rows, and which photos, come from NumPy's
Philox keyed by (seed, step), so a resumed run sees the batches an uninterrupted one would have.
Nothing here needs TensorFlow.
"""
from __future__ import annotations

import os
import pathlib
from typing import Iterator

import numpy as np
from tqdm import tqdm

from sat3d_jax import image_file, pairs
from sat3d_jax.errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PROGRESS_FROM = 1000  # folders of at least this many photos show the start-up check's progress
_SALT = 200  # apart from the pairs' training (0..6) and evaluation (100..106) streams


class PhotoFolder:
  """The aligned photos of a folder, read at `size` px (see the module docstring).

  Raises:
    InputError: the folder is missing or holds no image, or one image cannot be read or is not
      square (the message names it).
  """

  def __init__(self, folder: str | os.PathLike, size: int):
    self.folder = pathlib.Path(folder)
    self.size = int(size)
    if not self.folder.is_dir():
      raise InputError(f"{self.folder}: the photo folder does not exist")
    self.paths = sorted(p for p in self.folder.iterdir()
                        if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not self.paths:
      raise InputError(f"{self.folder}: no photos in the folder (looked for "
                       f"{', '.join(SUFFIXES)})")
    for path in tqdm(self.paths, desc="checking photos", unit="photo",
                     disable=len(self.paths) < PROGRESS_FROM):
      image_file.check_square(*image_file.upright_size(path), str(path))

  def __len__(self) -> int:
    return len(self.paths)

  def read(self, index: int) -> np.ndarray:
    """uint8 [size, size, 3] of photo `index`."""
    path = self.paths[index]
    return image_file.aligned_crop(image_file.read_rgb(path), self.size, str(path))


def photo_rows(fraction: float, batch_size: int) -> int:
  """The photo rows of each batch: `fraction` of it, rounded, at least one, and at least one
  generated row left (a ValueError otherwise)."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"the photo fraction must be in (0, 1), got {fraction}")
  rows = int(round(fraction * batch_size))
  if rows < 1 or rows >= batch_size:
    raise ValueError(f"a photo fraction of {fraction} of a batch of {batch_size} is {rows} "
                     f"rows; it must leave between 1 and {batch_size - 1} of them photos")
  return rows


def mix_photos(batches: Iterator[dict], folder: PhotoFolder, *, fraction: float,
               batch_size: int, seed: int, start_step: int, rows: slice = slice(None)
               ) -> Iterator[dict]:
  """The batches of a step-indexed stream (rows `rows` of each, the first for `start_step`)
  with `photo` and `is_photo` added (see the module docstring)."""
  count = photo_rows(fraction, batch_size)
  for step, batch in enumerate(batches, start_step):
    rng = pairs.step_rng(seed, step, _SALT)
    chosen = rng.permutation(batch_size)[:count]
    which = rng.integers(0, len(folder), batch_size)
    is_photo = np.zeros(batch_size, np.float32)
    is_photo[chosen] = 1.0
    mine = range(batch_size)[rows]
    photo = np.zeros((len(mine), folder.size, folder.size, 3), np.uint8)
    for i, row in enumerate(mine):
      if is_photo[row]:
        photo[i] = folder.read(int(which[row]))
    yield {**batch, "photo": photo, "is_photo": is_photo[rows]}
