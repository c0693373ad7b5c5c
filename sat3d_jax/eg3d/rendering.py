"""Styles -> tri-planes -> views: the one place that renders StyleSpace vectors.

The backbone (the tri-planes) depends on the styles only; the volume renderer and the
super-resolution depend on the camera too. So a face's planes are computed once and rendered
from as many cameras as wanted: every caller that renders styles (the `Generator`
conveniences, the SAT3D model's training step, the editor and the studio, the evaluation, the
benchmarks) goes through these functions.

`styles` is {layer: [N, dim]} or flat StyleSpace vectors [N, C] (all layers, toRGB included, in
the official order of `Generator.flatten_styles`). Pure functions, params first (jit / grad
them with params un-donated):

  flat_styles(params, arch, ws) -> flat StyleSpace vectors [N, C] of ws [N, num_ws, w_dim]
  planes(params, arch, styles, options, noise_mode, rng) -> tri-planes [N, 3, R, R, 32]
  render(params, arch, planes, styles, cams, options, rng, ..., face_index)
      -> {'image', 'image_raw', 'image_depth'}; row r: face face_index[r] (default r) from
         cams[r] [M, 25]
  render_views(params, arch, planes, styles, cams, options, rng)
      -> the same dict, row n * V + v: face n from cams[n, v] ([N, V, 25]) or cams[v] ([V, 25])
  synthesize(params, arch, styles, cams, options, noise_mode, rng, ...) -> the same dict:
      planes then render, the full generator from styles (eg3d.apply_synthesis_from_styles)

`render(planes(...))` equals `synthesize` bit for bit (tests/eg3d/test_eg3d_parity.py,
tests/studio/test_studio_files.py). The `jit_*` twins are jitted at module level with the
hashable architecture and options static, so every generator of one architecture (a
pivotal-tuned copy, a model loaded again) shares one compilation.

It lives in the EG3D package because it is generator-level (no mask, no edit, no SAT3D
notion) and the package's own `Generator` uses it; it builds only on generator.py's `apply_*`.
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import jax
import jax.numpy as jnp

from sat3d_jax.eg3d import generator as eg3d_generator
from sat3d_jax.eg3d.architecture import Arch
from sat3d_jax.eg3d.generator import Options, Params

Styles = Union[Mapping[str, jax.Array], jax.Array]
_OPTIONS = Options()  # the default execution choices (float32, non-fused)


def styles_dict(styles: Styles, arch: Arch) -> dict[str, jax.Array]:
  """{layer: [N, dim]} of a styles dict (as it is) or of flat vectors [N, C]."""
  if isinstance(styles, Mapping):
    return dict(styles)
  width = sum(dim for _, dim in arch.style_layers)
  if styles.shape[-1] != width:
    raise ValueError(f"flat styles have {styles.shape[-1]} channels, expected {width}")
  return eg3d_generator.styles_from_flat(styles, arch)


def flat_styles(params: Params, arch: Arch, ws: jax.Array) -> jax.Array:
  """Flat StyleSpace vectors [N, C] of ws [N, num_ws, w_dim]: every layer's affine styles
  concatenated in the official order (the inverse of styles_dict)."""
  styles = eg3d_generator.apply_styles(params, arch, ws)
  return jnp.concatenate([styles[name] for name, _ in arch.style_layers], axis=-1)


def _rows(styles: Styles, fn) -> Styles:
  """fn applied to the rows of every layer's styles (of the flat vectors before splitting)."""
  if isinstance(styles, Mapping):
    return {name: fn(value) for name, value in styles.items()}
  return fn(styles)


def planes(params: Params, arch: Arch, styles: Styles, options: Options = _OPTIONS,
           noise_mode: str = "const", rng: Optional[jax.Array] = None) -> jax.Array:
  """Tri-planes [N, 3, R, R, 32] of the styles: everything that does not depend on the camera."""
  return eg3d_generator.apply_planes(params, arch, styles_dict(styles, arch), options,
                                     noise_mode, rng)


def render(params: Params, arch: Arch, planes: jax.Array, styles: Styles, cams: jax.Array,
           options: Options = _OPTIONS, rng: Optional[jax.Array] = None,
           neural_rendering_resolution: Optional[int] = None,
           face_index: Optional[jax.Array] = None) -> dict[str, jax.Array]:
  """{'image', 'image_raw', 'image_depth'} (NHWC, images in [-1, 1]) of row r = face
  face_index[r] (its planes [F, ...] and super-resolution styles [F, ...]) from cams[r]
  [M, 25]; without face_index, face r (F = M). `rng` as eg3d.apply_render."""
  if face_index is not None:
    planes = jnp.take(planes, face_index, axis=0)
    styles = _rows(styles, lambda x: jnp.take(x, face_index, axis=0))
  return eg3d_generator.apply_render(params, arch, planes, styles_dict(styles, arch), cams,
                                     options, rng, neural_rendering_resolution)


def render_views(params: Params, arch: Arch, planes: jax.Array, styles: Styles, cams: jax.Array,
                 options: Options = _OPTIONS, rng: Optional[jax.Array] = None
                 ) -> dict[str, jax.Array]:
  """As render, for N faces (planes, styles [N, ...]) each from V cameras: cams [N, V, 25]
  (face n from cams[n, v]) or [V, 25] (every face from the same V). Row n * V + v is face n
  from its view v; each face's planes are repeated, not recomputed."""
  n = planes.shape[0]
  if cams.ndim == 2:
    cams = jnp.broadcast_to(cams, (n,) + cams.shape)
  if cams.ndim != 3 or cams.shape[0] != n:
    raise ValueError(f"need cameras [{n}, V, 25] or [V, 25] for {n} faces, got {cams.shape}")
  v = cams.shape[1]
  return render(params, arch, jnp.repeat(planes, v, axis=0),
                _rows(styles, lambda x: jnp.repeat(x, v, axis=0)), cams.reshape(n * v, -1),
                options, rng)


def synthesize(params: Params, arch: Arch, styles: Styles, cams: jax.Array,
               options: Options = _OPTIONS, noise_mode: str = "const",
               rng: Optional[jax.Array] = None,
               neural_rendering_resolution: Optional[int] = None) -> dict[str, jax.Array]:
  """The full generator from styles: row r of styles [N, ...] from cams[r] [N, 25], the
  backbone included (eg3d.apply_synthesis_from_styles)."""
  return eg3d_generator.apply_synthesis_from_styles(params, arch, styles_dict(styles, arch),
                                                    cams, options, noise_mode, rng,
                                                    neural_rendering_resolution)


jit_flat_styles = jax.jit(flat_styles, static_argnames=("arch",))
jit_planes = jax.jit(planes, static_argnames=("arch", "options", "noise_mode"))
jit_render = jax.jit(render, static_argnames=("arch", "options", "neural_rendering_resolution"))
jit_render_views = jax.jit(render_views, static_argnames=("arch", "options"))
jit_synthesize = jax.jit(synthesize, static_argnames=("arch", "options", "noise_mode",
                                                      "neural_rendering_resolution"))
