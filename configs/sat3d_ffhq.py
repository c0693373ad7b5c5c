"""SAT3D on FFHQ faces (EG3D ffhq512-128 + CLIP).

  python launch/train.py --config configs/sat3d_ffhq.py          # converted weights (see below)
  python launch/train.py --config configs/sat3d_ffhq.py:tiny     # no weights: random tiny models

Default variant: `weights/eg3d/ffhq512-128` (python launch/convert_eg3d.py --pkl
ffhq512-128.pkl --out weights/eg3d/ffhq512-128) and a local Hugging Face CLIP directory at
`weights/clip-vit-base-patch16`. Variants: '' (default), 'tiny' (random micro EG3D + tiny CLIP,
a few minutes on 2 CPU cores), 'bench' (random full FFHQ-512 EG3D, batch 8, for throughput).
"""
from sat3d_jax.configs import sat3d_config


def get_config(arg: str = ""):
  return sat3d_config(domain="ffhq", variant=arg,
                      generator="weights/eg3d/ffhq512-128", tiny_generator="preset:micro",
                      bench_generator="preset:ffhq512", descriptors="ffhq")
