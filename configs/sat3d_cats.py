"""SAT3D on AFHQ cats (EG3D afhqcats512-128 + CLIP).

  python launch/train.py --config configs/sat3d_cats.py[:tiny]

Expects `weights/eg3d/afhqcats512-128` (converted from afhqcats512-128.pkl) and a CLIP directory
at `weights/clip-vit-base-patch16`; ':tiny' needs nothing.
"""
from sat3d_jax.configs import sat3d_config


def get_config(arg: str = ""):
  return sat3d_config(domain="cats", variant=arg,
                      generator="weights/eg3d/afhqcats512-128", tiny_generator="preset:micro",
                      bench_generator="preset:afhqcats512", descriptors="afhq_cats")
