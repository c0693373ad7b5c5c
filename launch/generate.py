"""Render multi-view grids and turntable videos from an EG3D generator.

  python launch/generate.py --generator weights/ffhq512-128 --seeds 0-3 --out out/gen \
      [--trunc 0.7] [--views 5] [--frames 60]
  python launch/generate.py --generator preset:tiny128 --seeds 0 --out out/gen   # random weights

--generator takes anything sat3d_jax.eg3d.load_generator accepts (a converted directory, an
official .pkl, a state-dict .npz with its .json) or `preset:NAME` for randomly initialised weights
of a preset architecture. Per seed it writes seedNNNN.png (images over a yaw sweep, their depth
maps in the row below, depth normalised per seed, near = bright) and seedNNNN.mp4 (a turntable:
image | depth), and with --shapes seedNNNN.ply (its 3D shape: EG3D's density grid and marching
cubes, sat3d_jax/shapes.py). The tri-planes of a seed are computed once for all of its views.
As the official gen_samples.py: z = RandomState(seed).randn(z_dim), the mapping is conditioned
on the frontal camera, truncation cutoff 14, FOV 18.837 degrees.
"""
from __future__ import annotations

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from tqdm import tqdm

from sat3d_jax import eg3d, media, shapes


def parse_seeds(text: str) -> list[int]:
  """'0-3' -> [0, 1, 2, 3]; '1,5,7-8' -> [1, 5, 7, 8]. Raises ValueError for anything else."""
  seeds = []
  for part in text.split(","):
    part = part.strip()
    if not part:
      continue
    try:
      if "-" in part:
        lo, hi = (int(v) for v in part.split("-", 1))
        if hi < lo:
          raise ValueError
        seeds.extend(range(lo, hi + 1))
      else:
        seeds.append(int(part))
    except ValueError:
      raise ValueError(f"bad seed range {part!r} (use e.g. 0-3 or 1,5,7)") from None
  if not seeds:
    raise ValueError("no seeds given")
  return seeds


class _SeedsParser(flags.ArgumentParser):
  """--seeds: a list of seeds and inclusive ranges, '0-3' or '1,5,7-8'."""

  def parse(self, argument):
    return list(argument) if isinstance(argument, (list, tuple)) else parse_seeds(argument)

  def flag_type(self):
    return "seed list"


_GENERATOR = flags.DEFINE_string(
    "generator", None, "Converted dir, .pkl, state-dict .npz (+ .json), or preset:NAME.",
    required=True)
_SEEDS = flags.DEFINE(_SeedsParser(), "seeds", None, "Seeds, e.g. 0-3 or 1,5,7.",
                      required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_TRUNC = flags.DEFINE_float("trunc", 0.7, "Truncation psi.")
_TRUNC_CUTOFF = flags.DEFINE_integer("trunc_cutoff", 14, "Truncation cutoff (number of ws).",
                                     lower_bound=0)
_VIEWS = flags.DEFINE_integer("views", 5, "Views in the grid (a yaw sweep).", lower_bound=1)
_YAW_RANGE = flags.DEFINE_float(
    "yaw_range", 0.4, "Grid yaw sweep +- radians around frontal (gen_samples.py uses 0.4).")
_FRAMES = flags.DEFINE_integer("frames", 60, "Turntable video frames (0 = no video).",
                               lower_bound=0)
_FPS = flags.DEFINE_integer("fps", 30, "Frames per second of the video.", lower_bound=1)
_FOV = flags.DEFINE_float("fov", eg3d.camera.DEFAULT_FOV_DEGREES, "Field of view in degrees.")
_MODCONV = flags.DEFINE_enum("modconv", "nonfused", ["nonfused", "fused"],
                             "Modulated convolution implementation.")
_SHAPES = flags.DEFINE_bool("shapes", False,
                            "Also write each seed's 3D shape, seedNNNN.ply (marching cubes).")
_SHAPE_RES = flags.DEFINE_integer("shape_resolution", 256,
                                  "Density grid points per axis of --shapes.", lower_bound=8)
_RAY_CHUNK = flags.DEFINE_integer("ray_chunk", None, "Rays per chunk (bounds memory).",
                                  lower_bound=1)


def face_planes(G: eg3d.Generator, ws: jax.Array, batch: int):
  """(planes, styles) of one ws [1, num_ws, w_dim], repeated `batch` times: what every camera
  of the seed reuses (the backbone runs once per seed)."""
  styles = G.styles(ws)
  planes = G.planes(styles)
  return (jnp.repeat(planes, batch, axis=0),
          {name: jnp.repeat(v, batch, axis=0) for name, v in styles.items()})


def render(G: eg3d.Generator, face, cams: np.ndarray):
  """Images [N, H, W, 3] and depths [N, r, r, 1] of a face_planes(...) result at cams [N, 25].

  Runs fixed-size batches (the batch of face_planes; the last one padded) so the renderer
  compiles once.
  """
  planes, styles = face
  batch = planes.shape[0]
  images, depths = [], []
  for start in range(0, len(cams), batch):
    part = cams[start:start + batch]
    n = len(part)
    padded = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)]) if n < batch else part
    out = G.render(planes, styles, jnp.asarray(padded))
    images.append(np.asarray(out["image"][:n]))
    depths.append(np.asarray(out["image_depth"][:n]))
  return np.concatenate(images), np.concatenate(depths)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  seeds, out = _SEEDS.value, pathlib.Path(_OUT.value)
  if _SHAPES.value and not shapes.available():
    cli.fail(shapes.MISSING)
  views, frames, fov = _VIEWS.value, _FRAMES.value, _FOV.value
  print(f"{len(seeds)} seed(s): {', '.join(map(str, seeds[:8]))}"
        + (", ..." if len(seeds) > 8 else ""))
  print(f"loading generator {_GENERATOR.value}")
  G = eg3d.generator_from_spec(_GENERATOR.value, modconv=_MODCONV.value,
                              ray_chunk=_RAY_CHUNK.value)
  rk = G.rendering_kwargs
  pivot = rk.get("avg_camera_pivot", [0, 0, 0])
  radius = float(rk.get("avg_camera_radius", 2.7))
  print(f"  {G.img_resolution} px, neural rendering {G.neural_rendering_resolution} px, "
        f"{len(G.style_layers)} style layers; camera radius {radius}, pivot {pivot}")
  out.mkdir(parents=True, exist_ok=True)

  cond = np.asarray(eg3d.orbit_labels(0.0, 0.0, pivot, radius, fov))[None]
  yaws = np.linspace(-_YAW_RANGE.value, _YAW_RANGE.value, views) if views > 1 else [0.0]
  grid_cams = np.asarray(eg3d.orbit_labels(-np.asarray(yaws), np.zeros(views), pivot,
                                           radius, fov))
  turn = media.turntable_views(frames)
  video_cams = np.asarray(eg3d.orbit_labels(turn[:, 0], turn[:, 1], pivot, radius, fov)) \
      if frames else np.zeros((0, 25), np.float32)
  batch = views
  written, notes = [], {}
  for seed in tqdm(seeds, desc="seeds", unit="seed"):
    z = np.random.RandomState(seed).randn(1, G.z_dim).astype(np.float32)
    ws = G.mapping(jnp.asarray(z), jnp.asarray(cond), truncation_psi=_TRUNC.value,
                   truncation_cutoff=_TRUNC_CUTOFF.value)
    face = face_planes(G, ws, batch)
    images, depths = render(G, face, grid_cams)
    lo, hi = float(depths.min()), float(depths.max())
    size = images.shape[1]
    png = out / f"seed{seed:04d}.png"
    media.write_png(png, media.image_grid([media.to_uint8(images),
                                           media.depth_to_uint8(depths, size, lo, hi)]))
    written.append(png)
    if frames:
      frames_img, frames_depth = [], []
      for start in tqdm(range(0, frames, batch), desc=f"seed {seed} video", unit="batch",
                        leave=False):
        im, de = render(G, face, video_cams[start:start + batch])
        frames_img.append(im)
        frames_depth.append(de)
      im, de = np.concatenate(frames_img), np.concatenate(frames_depth)
      lo, hi = float(de.min()), float(de.max())
      video = np.concatenate([media.to_uint8(im), media.depth_to_uint8(de, size, lo, hi)],
                             axis=2)
      mp4 = out / f"seed{seed:04d}.mp4"
      media.write_mp4(mp4, video, _FPS.value)
      written.append(mp4)
    if _SHAPES.value:
      mesh = shapes.face_mesh(G, G.params, face[0][:1], _SHAPE_RES.value)
      ply = out / f"seed{seed:04d}.ply"
      shapes.write_ply(ply, mesh)
      written.append(ply)
      notes[ply] = f"{len(mesh.vertices)} vertices, {len(mesh.faces)} triangles"
  cli.print_outputs(out, written, notes=notes)


if __name__ == "__main__":
  cli.run(main)
