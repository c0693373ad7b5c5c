"""SAT3D on ShapeNet cars (EG3D shapenetcars128-64 + CLIP): the FFHQ experiment with cars' models.

  python launch/train.py --config configs/sat3d_cars.py[:tiny|:bench]

Expects `weights/eg3d/shapenetcars128-64` (converted from shapenetcars128-64.pkl) and a CLIP
directory at `weights/clip-vit-base-patch16`; ':tiny' needs nothing. Cars are seen from all
around, so the view distribution covers the full yaw circle; every other hyperparameter is
configs/sat3d_ffhq.py's.
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("sat3d_ffhq.py", arg)
  c.domain = "cars"
  c.descriptors = "shapenet_cars"
  if arg == "tiny":
    c.generator = "preset:cars128_tiny"
  elif arg == "bench":
    c.generator = "preset:shapenetcars128"
  else:
    c.generator = "weights/eg3d/shapenetcars128-64"
  c.views.yaw_std = 1.5
  c.views.yaw_limit = 3.1
  c.views.pitch_std = 0.15
  c.lock()
  return c
