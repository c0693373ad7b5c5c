"""SAT3D on ShapeNet cars (EG3D shapenetcars128-64 + CLIP).

  python launch/train.py --config configs/sat3d_cars.py[:tiny]

Expects `weights/eg3d/shapenetcars128-64` (converted from shapenetcars128-64.pkl) and a CLIP
directory at `weights/clip-vit-base-patch16`; ':tiny' needs nothing. Cars are seen from all
around, so the view distribution covers the full yaw circle.
"""
from sat3d_jax.configs import sat3d_config


def get_config(arg: str = ""):
  config = sat3d_config(domain="cars", variant=arg,
                        generator="weights/eg3d/shapenetcars128-64",
                        tiny_generator="preset:cars128_tiny",
                        bench_generator="preset:shapenetcars128", descriptors="shapenet_cars")
  with config.unlocked():
    config.views.yaw_std = 1.5
    config.views.yaw_limit = 3.1
    config.views.pitch_std = 0.15
  return config
