"""A photo in the studio: the face found and cut out with EG3D's in-the-wild recipe
(launch/common/photo_crop.py) and inverted into the generator's W+ with its camera estimated
(sat3d_jax/inversion.py), as launch/invert.py does without pivotal tuning; with an encoder
(sat3d_jax/encoder.py) its prediction is the result or the optimisation's start.
"""
from __future__ import annotations

import numpy as np

from launch.common import photo_crop
from sat3d_jax import inversion
from sat3d_jax.editor import Editor, Face


def invert_photo(editor: Editor, photo: np.ndarray, name: str, w_steps: int,
                 wplus_steps: int, encoder=None) -> tuple[Face, np.ndarray, float, float]:
  """(the face, the aligned crop uint8 [S, S, 3], PSNR dB, seconds) of a photo uint8 [H, W, 3].

  encoder: a sat3d_jax.encoder.TrainedEncoder: its code and camera are the result, or the start
  of w_steps + wplus_steps of optimisation; without one the optimisation starts from w_avg and
  a camera grid. seconds: the inversion's wall time (the crop excluded). The optimisation shows
  tqdm bars (the page follows them). No face: an InputError saying so.
  """
  import time  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  generator = editor.generator
  points, _ = photo_crop.five_points(photo, name)  # FaceNotFoundError is an InputError
  crop = photo_crop.crop(photo, points, generator.img_resolution, name).image
  config = inversion.InversionConfig(w_steps=w_steps, wplus_steps=wplus_steps)
  target = jnp.asarray(crop[None].astype(np.float32) / 127.5 - 1.0)
  tick = time.perf_counter()
  init_ws = init_angles = None
  if encoder is not None:
    init_ws, angles = jax.block_until_ready(encoder(target))
    init_angles = tuple(float(a) for a in np.asarray(angles)[0])
  result = inversion.invert(generator, target, config=config, progress=True, init_ws=init_ws,
                            init_angles=init_angles)
  seconds = time.perf_counter() - tick
  how = "encoder" if encoder is not None else "optimisation"
  if encoder is not None and w_steps + wplus_steps:
    how += f" + {w_steps + wplus_steps} steps"
  face = editor.latent_face(np.asarray(result.ws), np.asarray(result.c)[0],
                            f"photo {name} ({how}, PSNR {result.psnr:.1f} dB)")
  return face, crop, float(result.psnr), seconds
