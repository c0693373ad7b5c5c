"""Spotting micro- and macro-expressions in long videos: CAS(ME)^2 long videos, LOSO.

  python launch/spot_sweep.py --config configs/spotting_casme2_lv.py:synthetic --workdir W
  python launch/spot_sweep.py --config configs/spotting_casme2_lv.py --workdir W   # CAS(ME)^2
  python launch/train.py --config configs/spotting_casme2_lv.py --config.final_model=True \
      --workdir W1                                        # the spotter launch/spot.py takes
  python launch/spot.py --spotter W1 --recogniser R --video LONG.mp4 --out DIR

The task (launch/tasks/spotting.py) trains every LOSO fold of config.data.dataset in one driver
run (the fold is the driver's model axis), each with the same fixed budget and nothing selected
on the held-out subject (launch/spot_sweep.py spots and scores the held-out subjects); with
config.final_model=True it trains one model on every video instead (what launch/spot.py uses).
docs/spotting.md has the design and the measured choices.

Variants: '' (CAS(ME)^2 as it ships, in data/casme2_lv), 'synthetic' (the generated corpus of
python launch/make_synthetic.py --long --out out/long_corpus), 'tiny' (toy aligned videos of
frldgt_jax/spotting/toy.py, a minute and a half on 2 CPU cores: the committed
tests/fixtures/spotter_tiny). Other datasets: configs/spotting_samm_lv.py,
configs/spotting_casme3a.py.
"""
import ml_collections

from launch.trainer import base_config

VARIANTS = ("", "synthetic", "tiny")


def get_config(arg: str = ""):
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r} of configs/spotting_casme2_lv.py; known: "
                     f"{', '.join(repr(v) for v in VARIANTS)}")
  c = base_config()
  c.task = "launch.tasks.spotting"
  c.name = "spotting_casme2_lv"
  c.variant = arg
  c.total_steps = 3000
  c.log_every = 50
  c.checkpoint_every = 500
  c.batch_size = 16                  # windows per fold per step
  c.window = 256                     # frames per training window
  c.final_model = False              # True: one model on every video (no folds)

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "casme2_lv"       # 'casme2_lv', 'samm_lv', 'casme3_a' or 'toy'
  c.data.root = "data/casme2_lv"     # the dataset as it ships (frldgt_jax/data/long_videos.py)
  c.data.image_size = 64             # aligned face crops the features are computed on
  c.data.fps = 30.0                  # the rate features and decoding count frames at
  c.data.toy = ml_collections.ConfigDict()
  c.data.toy.subjects = 6
  c.data.toy.videos_per_subject = 2
  c.data.toy.frames = 900
  c.data.toy.micro = 6
  c.data.toy.macro = 3

  c.features = ml_collections.ConfigDict()
  c.features.offsets = (4, 12)       # frames: ~half a micro-, ~half a short macro-expression

  c.model = ml_collections.ConfigDict()
  c.model.width = 32
  c.model.kernel = 3
  c.model.dilations = (1, 2, 4, 8, 16)

  c.augment = ml_collections.ConfigDict()
  c.augment.feature_jitter = 0.1

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 1.0

  c.decode = ml_collections.ConfigDict()
  c.decode.threshold = 0.5
  c.decode.smooth = 3
  c.decode.max_gap = 2
  c.decode.min_length_micro = 3
  c.decode.min_length_macro = 8

  if arg == "synthetic":
    c.name = "spotting_casme2_lv_synthetic"
    c.data.root = "out/long_corpus/casme2_lv"
    c.total_steps = 1500
  if arg == "tiny":
    c.name = "spotting_tiny"
    c.data.dataset = "toy"
    c.data.root = ""
    c.data.toy.subjects = 8
    c.total_steps = 1200
    c.log_every = 100
    c.checkpoint_every = 1200
    c.keep_checkpoints = 1
    c.model.width = 16
    c.final_model = True
    c.tensorboard = False
  c.lock()
  return c
