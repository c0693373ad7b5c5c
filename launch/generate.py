"""Render multi-view grids and turntable videos from an EG3D generator.

  python launch/generate.py --generator weights/ffhq512-128 --seeds 0-3 --out out/gen \
      [--trunc 0.7] [--views 5] [--frames 60]
  python launch/generate.py --generator preset:tiny128 --seeds 0 --out out/gen   # random weights

--generator takes anything sat3d_jax.eg3d.load_generator accepts (a converted directory, an
official .pkl, a state-dict .npz with its .json) or `preset:NAME` for randomly initialised weights
of a preset architecture. Per seed it writes seedNNNN.png (images over a yaw sweep, their depth
maps in the row below, depth normalised per seed, near = bright) and seedNNNN.mp4 (a turntable:
image | depth). As the official gen_samples.py: z = RandomState(seed).randn(z_dim), the mapping
is conditioned on the frontal camera, truncation cutoff 14, FOV 18.837 degrees.
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import warnings
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import imageio.v3 as iio  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sat3d_jax import eg3d  # noqa: E402

# Turntable of the official gen_videos.py: yaw = pi/2 + 0.35 sin(t), pitch = pi/2 - 0.05 + 0.25 cos(t).
VIDEO_YAW_RANGE, VIDEO_PITCH_RANGE, VIDEO_PITCH_OFFSET = 0.35, 0.25, -0.05


def parse_seeds(text: str) -> list[int]:
  """'0-3' -> [0, 1, 2, 3]; '1,5,7-8' -> [1, 5, 7, 8]."""
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
      raise argparse.ArgumentTypeError(f"bad seed range {part!r} (use e.g. 0-3 or 1,5,7)")
  if not seeds:
    raise argparse.ArgumentTypeError("no seeds given")
  return seeds


def make_generator(spec: str, modconv: str, ray_chunk: Optional[int]) -> eg3d.Generator:
  if spec.startswith("preset:"):
    return eg3d.random_generator(spec[len("preset:"):], seed=0, modconv=modconv,
                                 ray_chunk=ray_chunk)
  return eg3d.load_generator(spec, modconv=modconv, ray_chunk=ray_chunk)


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] images -> uint8, as the official scripts (x * 127.5 + 128, clamped)."""
  return np.clip(np.asarray(images) * 127.5 + 128, 0, 255).astype(np.uint8)


def depth_to_uint8(depth: np.ndarray, size: int, lo: float, hi: float) -> np.ndarray:
  """Depth [N, r, r, 1] -> grey RGB uint8 [N, size, size, 3], near = bright."""
  d = jax.image.resize(jnp.asarray(depth), (depth.shape[0], size, size, 1), "linear")
  d = 1.0 - (np.asarray(d) - lo) / max(hi - lo, 1e-8)
  return np.repeat(np.clip(d * 255.0 + 0.5, 0, 255).astype(np.uint8), 3, axis=-1)


def render(G: eg3d.Generator, ws: jax.Array, cams: np.ndarray, batch: int):
  """Images [N, H, W, 3] and depths [N, r, r, 1] of one ws [1, num_ws, w_dim] at cams [N, 25].

  Runs fixed-size batches (the last one padded) so the generator compiles once.
  """
  images, depths = [], []
  for start in range(0, len(cams), batch):
    part = cams[start:start + batch]
    n = len(part)
    padded = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)]) if n < batch else part
    out = G.synthesis(jnp.repeat(ws, batch, axis=0), jnp.asarray(padded))
    images.append(np.asarray(out["image"][:n]))
    depths.append(np.asarray(out["image_depth"][:n]))
  return np.concatenate(images), np.concatenate(depths)


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--generator", required=True,
                 help="converted dir, .pkl, state-dict .npz (+ .json), or preset:NAME")
  p.add_argument("--seeds", type=parse_seeds, required=True, help="e.g. 0-3 or 1,5,7")
  p.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
  p.add_argument("--trunc", type=float, default=0.7, help="truncation psi")
  p.add_argument("--trunc-cutoff", type=int, default=14, help="truncation cutoff (num ws)")
  p.add_argument("--views", type=int, default=5, help="views in the grid (yaw sweep)")
  p.add_argument("--yaw-range", type=float, default=0.4,
                 help="grid yaw sweep +-radians around frontal (gen_samples.py uses 0.4)")
  p.add_argument("--frames", type=int, default=60, help="turntable video frames (0 = no video)")
  p.add_argument("--fps", type=int, default=30)
  p.add_argument("--fov", type=float, default=eg3d.camera.DEFAULT_FOV_DEGREES,
                 help="field of view in degrees")
  p.add_argument("--modconv", choices=("nonfused", "fused"), default="nonfused")
  p.add_argument("--ray-chunk", type=int, default=None, help="rays per chunk (bounds memory)")
  args = p.parse_args(argv)
  if args.views < 1 or args.frames < 0:
    p.error("--views must be >= 1 and --frames >= 0")

  print(f"loading generator {args.generator}")
  G = make_generator(args.generator, args.modconv, args.ray_chunk)
  rk = G.rendering_kwargs
  pivot = rk.get("avg_camera_pivot", [0, 0, 0])
  radius = float(rk.get("avg_camera_radius", 2.7))
  print(f"  {G.img_resolution} px, neural rendering {G.neural_rendering_resolution} px, "
        f"{len(G.style_layers)} style layers; camera radius {radius}, pivot {pivot}")
  args.out.mkdir(parents=True, exist_ok=True)

  cond = np.asarray(eg3d.orbit_labels(0.0, 0.0, pivot, radius, args.fov))[None]
  yaws = np.linspace(-args.yaw_range, args.yaw_range, args.views) if args.views > 1 else [0.0]
  grid_cams = np.asarray(eg3d.orbit_labels(-np.asarray(yaws), np.zeros(args.views), pivot,
                                           radius, args.fov))
  t = 2 * math.pi * np.arange(args.frames) / max(args.frames, 1)
  video_cams = np.asarray(eg3d.orbit_labels(
      VIDEO_YAW_RANGE * np.sin(t), VIDEO_PITCH_OFFSET + VIDEO_PITCH_RANGE * np.cos(t), pivot,
      radius, args.fov)) if args.frames else np.zeros((0, 25), np.float32)
  batch = args.views
  written = []
  for seed in tqdm(args.seeds, desc="seeds", unit="seed"):
    z = np.random.RandomState(seed).randn(1, G.z_dim).astype(np.float32)
    ws = G.mapping(jnp.asarray(z), jnp.asarray(cond), truncation_psi=args.trunc,
                   truncation_cutoff=args.trunc_cutoff)
    images, depths = render(G, ws, grid_cams, batch)
    lo, hi = float(depths.min()), float(depths.max())
    size = images.shape[1]
    top = np.concatenate(list(to_uint8(images)), axis=1)
    bottom = np.concatenate(list(depth_to_uint8(depths, size, lo, hi)), axis=1)
    png = args.out / f"seed{seed:04d}.png"
    iio.imwrite(png, np.concatenate([top, bottom], axis=0))
    written.append(png)
    if args.frames:
      frames_img, frames_depth = [], []
      for start in tqdm(range(0, args.frames, batch), desc=f"seed {seed} video", unit="batch",
                        leave=False):
        im, de = render(G, ws, video_cams[start:start + batch], batch)
        frames_img.append(im)
        frames_depth.append(de)
      im, de = np.concatenate(frames_img), np.concatenate(frames_depth)
      lo, hi = float(de.min()), float(de.max())
      frames = np.concatenate([to_uint8(im), depth_to_uint8(de, size, lo, hi)], axis=2)
      mp4 = args.out / f"seed{seed:04d}.mp4"
      _write_mp4(mp4, frames, args.fps)
      written.append(mp4)
  print(f"wrote {len(written)} files to {args.out.resolve()}:")
  for f in written:
    print(f"  {f}")
  return 0


def _write_mp4(path: pathlib.Path, frames: np.ndarray, fps: int) -> None:
  """H.264 MP4 through imageio-ffmpeg's bundled ffmpeg binary."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  h, w = frames.shape[1:3]
  # ffmpeg is started with fork+exec at once; JAX's warning about fork() does not apply.
  warnings.filterwarnings("ignore", message="os.fork\\(\\) was called", category=RuntimeWarning)
  writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264",
                                       quality=8, macro_block_size=1)
  writer.send(None)
  for frame in frames:
    writer.send(np.ascontiguousarray(frame))
  writer.close()


if __name__ == "__main__":
  sys.exit(main())
