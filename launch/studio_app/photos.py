"""A photo in the studio: the face found and cut out with EG3D's in-the-wild recipe
(launch/common/photo_crop.py) and inverted into the generator's W+ with its camera estimated
(sat3d_jax/inversion.py), as launch/invert.py does without pivotal tuning.
"""
from __future__ import annotations

import numpy as np

from launch.common import photo_crop
from sat3d_jax import inversion
from sat3d_jax.editor import Editor, Face


def invert_photo(editor: Editor, photo: np.ndarray, name: str, w_steps: int,
                 wplus_steps: int) -> tuple[Face, np.ndarray, float]:
  """(the face, the aligned crop uint8 [S, S, 3], PSNR dB) of a photo uint8 [H, W, 3].

  The optimisation shows tqdm bars (the page follows them). No face: an InputError saying so.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  generator = editor.generator
  points, _ = photo_crop.five_points(photo, name)  # FaceNotFoundError is an InputError
  crop = photo_crop.crop(photo, points, generator.img_resolution, name).image
  config = inversion.InversionConfig(w_steps=w_steps, wplus_steps=wplus_steps)
  target = jnp.asarray(crop[None].astype(np.float32) / 127.5 - 1.0)
  result = inversion.invert(generator, target, config=config, progress=True)
  face = editor.latent_face(np.asarray(result.ws), np.asarray(result.c)[0],
                            f"photo {name} (PSNR {result.psnr:.1f} dB)")
  return face, crop, float(result.psnr)
