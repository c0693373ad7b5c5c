"""A photo in the studio: the face found (launch/common/faces.py), cut out like EG3D's FFHQ crop
(sat3d_jax/face_crop.py) and inverted into the generator's W+ with its camera estimated
(sat3d_jax/inversion.py), as launch/invert.py does without pivotal tuning.
"""
from __future__ import annotations

import numpy as np

from sat3d_jax import face_crop, inversion
from sat3d_jax.editor import Editor, Face
from sat3d_jax.errors import InputError


def invert_photo(editor: Editor, photo: np.ndarray, name: str, w_steps: int,
                 wplus_steps: int) -> tuple[Face, np.ndarray, float]:
  """(the face, the aligned crop uint8 [S, S, 3], PSNR dB) of a photo uint8 [H, W, 3].

  The optimisation shows tqdm bars (the page follows them). No face: an InputError saying so.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from launch.common import faces  # pylint: disable=g-import-not-at-top
  generator = editor.generator
  size = generator.img_resolution
  points, _ = faces.detect_landmarks(photo, name)  # FaceNotFoundError is an InputError
  try:
    crop = face_crop.crop_face(photo, size, points, name).image
  except ValueError as e:
    raise InputError(f"{name}: {e}") from None
  config = inversion.InversionConfig(w_steps=w_steps, wplus_steps=wplus_steps)
  target = jnp.asarray(crop[None].astype(np.float32) / 127.5 - 1.0)
  result = inversion.invert(generator, target, config=config, progress=True)
  face = editor.latent_face(np.asarray(result.ws), np.asarray(result.c)[0],
                            f"photo {name} (PSNR {result.psnr:.1f} dB)")
  return face, crop, float(result.psnr)
