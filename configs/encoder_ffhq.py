"""The SAT3D inversion encoder on FFHQ (EG3D ffhq512-128): the experiment, every hyperparameter.

  python launch/train.py --config configs/encoder_ffhq.py        # converted weights (see below)
  python launch/train.py --config configs/encoder_ffhq.py:tiny   # no weights: random micro EG3D
  python launch/train.py --config configs/encoder_ffhq.py:bench  # random full FFHQ-512, batch 8

The data are the frozen generator's own samples, rendered inside the step from z ~ N(0, I) under
FFHQ-like views (sat3d_jax/encoder.py); no dataset is needed. `--config.data.photos=FOLDER` mixes
in aligned real photos (sat3d_jax/photo_folder.py). Default variant: the converted
`weights/eg3d/ffhq512-128` (python launch/convert_eg3d.py --pkl ffhq512-128.pkl --out
weights/eg3d/ffhq512-128) and, for the CLIP term, `weights/clip-vit-base-patch16`. Variants: ''
(default), 'tiny' (random micro EG3D, no CLIP, minutes on 2 CPU cores), 'bench' (random full
FFHQ-512 EG3D and a random ViT-B/16 CLIP, batch 8, for throughput). docs/encoder.md says why.
"""
import ml_collections

from launch.trainer import base_config

VARIANTS = ("", "tiny", "bench")


def get_config(arg: str = ""):
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/encoder_ffhq.py; known: "
                     f"{', '.join(repr(v) for v in VARIANTS)}")
  c = base_config()
  c.task = "launch.tasks.encoder"
  c.total_steps = 50000
  c.log_every = 100
  c.checkpoint_every = 2000
  c.summary_every = 2000
  c.global_batch_size = 8

  # The frozen generator (and CLIP for the feature term).
  c.generator = "weights/eg3d/ffhq512-128"  # converted dir / .pkl / fixture .npz / 'preset:NAME'
  c.generator_modconv = "nonfused"
  c.compute_dtype = "float32"
  c.ray_chunk = 0
  c.clip = "weights/clip-vit-base-patch16"  # local HF dir, 'tiny', 'random-vit-b16' or '' (none)
  c.stats_samples = 4096             # mapped z for the W statistics the target is whitened by

  # The backbone (sat3d_jax/encoder.py): crop resized to input_size, one stride-2 residual
  # stage per width (GroupNorm), every stage pooled into the heads.
  c.encoder = ml_collections.ConfigDict(dict(
      input_size=256, widths=(64, 128, 256, 256, 512, 512), blocks=2, hidden=512, groups=8))

  # Real photos (optional): a folder of aligned EG3D in-the-wild crops (square, any size) of
  # which photo_fraction of every batch is drawn; they get the reconstruction terms only.
  c.data = ml_collections.ConfigDict(dict(photos="", photo_fraction=0.25))

  # Samples: z ~ N(0, I) at this truncation, views as SAT3D's FFHQ-like poses (radians).
  c.views = ml_collections.ConfigDict(dict(
      yaw_std=0.3, yaw_limit=0.8, pitch_std=0.1, pitch_limit=0.35))
  c.loss = ml_collections.ConfigDict(dict(
      truncation_psi=1.0, wplus=1.0, camera=1.0, l2=1.0, l1=0.0, ms_ssim=0.5, clip=0.1))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3, warmup_steps=500, final_learning_rate_fraction=0.05))

  # Evaluation: the same loss on a fixed held-out set of samples (eval_seed apart from seed).
  c.eval_every = 2000
  c.eval_samples = 64                # a multiple of global_batch_size; 0 = no evaluation
  c.eval_seed = 1

  if arg == "tiny":
    # Measured on the 2-core CPU (docs/encoder.md): 4000 steps of batch 8 in about 20 minutes
    # there; after 600 steps the encoder alone had twice the L2 it has after these.
    c.generator = "preset:micro"
    c.clip = ""
    c.loss.clip = 0.0
    c.total_steps = 4000
    c.log_every = 50
    c.checkpoint_every = 500
    c.summary_every = 1000
    c.eval_every = 500
    c.eval_samples = 32
    c.stats_samples = 2048
    c.encoder.input_size = 64
    c.encoder.widths = (16, 32, 64, 64)
    c.encoder.blocks = 1
    c.encoder.hidden = 32
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 20
  elif arg == "bench":
    c.generator = "preset:ffhq512"
    c.clip = "random-vit-b16"
    c.total_steps = 20
    c.eval_samples = 0
  return c
