"""SAT3D on AFHQ cats (EG3D afhqcats512-128 + CLIP): the FFHQ experiment with the cats' models.

  python launch/train.py --config configs/sat3d_cats.py[:tiny|:bench]

Expects `weights/eg3d/afhqcats512-128` (converted from afhqcats512-128.pkl) and a CLIP directory
at `weights/clip-vit-base-patch16`; ':tiny' needs nothing. Every other hyperparameter is
configs/sat3d_ffhq.py's.
"""
from launch.trainer import from_file


def get_config(arg: str = ""):
  c = from_file("sat3d_ffhq.py", arg)
  c.domain = "cats"
  c.descriptors = "afhq_cats"
  if arg == "bench":
    c.generator = "preset:afhqcats512"
  elif not arg:
    c.generator = "weights/eg3d/afhqcats512-128"
  # ':tiny' keeps the FFHQ config's random micro generator, the same architecture family.
  c.lock()
  return c
