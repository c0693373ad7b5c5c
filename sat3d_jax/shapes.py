"""A face as a 3D shape: EG3D's shape extraction (gen_samples.py --shapes) from tri-planes.

    mesh = face_mesh(generator, params, planes, resolution=256)   # planes [1, 3, R, R, 32]
    write_ply("face.ply", mesh); write_obj("face.obj", mesh)

As the official script: the density sigma of the decoder is sampled on a regular grid of
`resolution`^3 points filling the cube of side box_warp centred on the origin (create_samples),
a border of round(30 * resolution / 256) voxels is set to -1000 so the surface closes, and the
surface is the marching-cubes level set sigma = 10 (scikit-image; shape_utils uses level 10).
Differences, on purpose: the grid is exactly regular (the official create_samples divides the
flat index with float division, shifting rows by fractions of a voxel) and vertices are in the
generator's world coordinates (the official .ply is in voxel units of the flipped grid). A
generator whose densities never reach 10 (random weights) gets the level halfway between the
grid's lowest and highest density inside the border, and the mesh says which level it used.
The density comes from the planes computed once per face, so a mesh costs no extra backbone.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax.eg3d import renderer

MISSING = 'the 3D shapes need scikit-image: pip install -e ".[studio]"'
OFFICIAL_LEVEL = 10.0
BORDER_VALUE = -1000.0


@dataclasses.dataclass
class Mesh:
  """vertices [V, 3] float32 (world coordinates), faces [F, 3] int32, the level used."""
  vertices: np.ndarray
  faces: np.ndarray
  level: float


def available() -> bool:
  """Whether marching cubes (scikit-image, the [studio] extra) can be imported."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec("skimage") is not None


def grid_points(resolution: int, cube_length: float) -> np.ndarray:
  """[resolution^3, 3] points of the sampling grid, x slowest and z fastest (create_samples'
  order), from -cube_length / 2 to +cube_length / 2 on each axis."""
  axis = np.linspace(-cube_length / 2, cube_length / 2, resolution, dtype=np.float32)
  x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
  return np.stack([x, y, z], -1).reshape(-1, 3)


@functools.partial(jax.jit, static_argnames=("arch", "dtype"))
def _densities(params, planes, points, arch, dtype):
  sigma, _ = renderer.run_model(params, arch, planes, points[None], dtype)
  return sigma[0, :, 0]


def density_grid(generator, params, planes: jax.Array, resolution: int,
                 chunk: int = 1 << 18) -> np.ndarray:
  """sigma [R, R, R] (indexed x, y, z) of one face's planes [1, ...] on grid_points, with the
  official border of BORDER_VALUE."""
  if planes.shape[0] != 1:
    raise ValueError(f"need the planes of one face [1, ...], got {planes.shape}")
  if resolution < 8:
    raise ValueError(f"shape resolution must be >= 8, got {resolution}")
  points = grid_points(resolution, float(generator.arch.render.box_warp))
  chunk = min(chunk, len(points))
  out = []
  for start in range(0, len(points), chunk):
    part = points[start:start + chunk]
    n = len(part)
    if n < chunk:
      part = np.concatenate([part, np.zeros((chunk - n, 3), np.float32)])
    out.append(np.asarray(_densities(params, planes, jnp.asarray(part), generator.arch,
                                     generator.options.dtype), np.float32)[:n])
  sigma = np.concatenate(out).reshape(resolution, resolution, resolution)
  pad = int(30 * resolution / 256)
  if pad:
    for axis in range(3):
      index = [slice(None)] * 3
      index[axis] = slice(0, pad)
      sigma[tuple(index)] = BORDER_VALUE
      index[axis] = slice(resolution - pad, None)
      sigma[tuple(index)] = BORDER_VALUE
  return sigma


def surface_level(sigma: np.ndarray) -> float:
  """The official level 10 where the densities reach it, else halfway between the lowest and
  highest density inside the border (module docstring)."""
  inside = sigma[sigma > BORDER_VALUE]
  if inside.size == 0:
    raise ValueError("the density grid is all border; use a higher resolution")
  lo, hi = float(inside.min()), float(inside.max())
  if lo < OFFICIAL_LEVEL < hi:
    return OFFICIAL_LEVEL
  return (lo + hi) / 2 if hi > lo else lo - 1.0


def extract_mesh(sigma: np.ndarray, cube_length: float, level: float | None = None) -> Mesh:
  """Marching cubes (scikit-image) of sigma [R, R, R] at `level` (default surface_level),
  vertices in the world coordinates of grid_points."""
  from skimage import measure  # pylint: disable=g-import-not-at-top
  level = surface_level(sigma) if level is None else float(level)
  r = sigma.shape[0]
  spacing = cube_length / (r - 1)
  vertices, faces, _, _ = measure.marching_cubes(sigma, level=level, spacing=(spacing,) * 3)
  return Mesh((vertices - cube_length / 2).astype(np.float32), faces.astype(np.int32), level)


def face_mesh(generator, params, planes: jax.Array, resolution: int = 256) -> Mesh:
  """The shape of one face (planes [1, ...]) as a mesh (module docstring)."""
  sigma = density_grid(generator, params, planes, resolution)
  return extract_mesh(sigma, float(generator.arch.render.box_warp))


def write_ply(path: str | os.PathLike, mesh: Mesh) -> None:
  """A binary little-endian PLY: float x, y, z vertices and uchar-counted int faces."""
  header = ("ply\nformat binary_little_endian 1.0\ncomment sat3d_jax.shapes, level "
            f"{mesh.level:g}\nelement vertex {len(mesh.vertices)}\nproperty float x\n"
            "property float y\nproperty float z\n"
            f"element face {len(mesh.faces)}\nproperty list uchar int vertex_indices\n"
            "end_header\n")
  faces = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
  faces["n"], faces["v"] = 3, mesh.faces
  with open(path, "wb") as f:
    f.write(header.encode("ascii"))
    f.write(np.asarray(mesh.vertices, "<f4").tobytes())
    f.write(faces.tobytes())


def read_ply(path: str | os.PathLike) -> Mesh:
  """Reads what write_ply writes (triangles only)."""
  with open(path, "rb") as f:
    data = f.read()
  end = data.index(b"end_header\n") + len(b"end_header\n")
  header = data[:end].decode("ascii").splitlines()
  counts = {line.split()[1]: int(line.split()[2]) for line in header
            if line.startswith("element")}
  level = next(float(line.split()[-1]) for line in header if line.startswith("comment"))
  nv, nf = counts["vertex"], counts["face"]
  vertices = np.frombuffer(data, "<f4", nv * 3, end).reshape(nv, 3)
  faces = np.frombuffer(data, [("n", "u1"), ("v", "<i4", (3,))], nf, end + nv * 12)
  return Mesh(vertices.copy(), faces["v"].astype(np.int32), level)


def write_obj(path: str | os.PathLike, mesh: Mesh) -> None:
  """A Wavefront OBJ (what browsers' 3D viewers read as a solid surface)."""
  with open(path, "w", encoding="ascii") as f:
    f.write(f"# sat3d_jax.shapes, level {mesh.level:g}\n")
    np.savetxt(f, mesh.vertices, fmt="v %.5f %.5f %.5f")
    np.savetxt(f, mesh.faces + 1, fmt="f %d %d %d")
