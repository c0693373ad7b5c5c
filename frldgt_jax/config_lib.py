"""The FRL-DGT config shared by configs/frldgt_{composite,casme2,samm,smic,casme2_5class}.py.

Config files are loaded by path, so the common part lives here. Every choice frldgt.md leaves to
the project is a field; the driver's `base_config()` fields come first.

Variants (the `:arg` of `--config configs/frldgt_composite.py:arg`), comma-separated:
  ''              the prepared real dataset (launch/prepare_data.py), full-size model.
  synthetic       the generated corpus (frldgt_jax/data/synthetic.py; 4 subjects per database x
                  6 clips), generated and built with the real TFDS builder when absent; a small
                  model at 64 x 64 whose budget reaches UF1 >= 0.9 on 2 CPU cores in minutes.
  synthetic_tiny  a tiny corpus (2 subjects per database x 3 clips) and a tiny model: seconds to
                  a minute, for tests.
Modifiers that can follow either: 'shuffled' (control: shuffled training labels), 'zero'
(control: the DGM replaced by a zero displacement), 'per_fold' / 'stacked' (the sweep mode;
default 'auto': stacked on GPU/TPU, fold by fold on CPU), 'bf16' (bfloat16 compute).
E.g. `--config configs/frldgt_composite.py:synthetic,zero`.
"""
from __future__ import annotations

import ml_collections

from frldgt_jax import model as model_lib
from launch.trainer import base_config

DATASETS = ("composite", "casme2", "samm", "smic")
BASE_VARIANTS = ("", "synthetic", "synthetic_tiny")
MODIFIERS = ("shuffled", "zero", "per_fold", "stacked", "bf16")
CLASS_NAMES_3 = ("negative", "positive", "surprise")
CLASS_NAMES_5 = ("happiness", "disgust", "repression", "surprise", "others")


def parse_variant(arg: str) -> tuple[str, tuple[str, ...]]:
  """'synthetic,zero' -> ('synthetic', ('zero',)); raises ValueError naming what is unknown."""
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  base = ""
  if parts and parts[0] in BASE_VARIANTS:
    base, parts = parts[0], parts[1:]
  unknown = [p for p in parts if p not in MODIFIERS]
  if unknown:
    raise ValueError(f"unknown config variant part(s) {unknown} in {arg!r}; a variant is one of "
                     f"{[v for v in BASE_VARIANTS if v]} (or nothing) followed by modifiers "
                     f"from {list(MODIFIERS)}, comma-separated")
  return base, tuple(parts)


def frldgt_config(*, dataset: str, variant: str = "", five_class: bool = False
                  ) -> ml_collections.ConfigDict:
  """The FRL-DGT LOSO config for `dataset` ('composite', 'casme2', 'samm' or 'smic').

  `five_class` selects CASME II's 5 classes (label5) instead of the 3 composite classes.
  """
  if dataset not in DATASETS:
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
  if five_class and dataset != "casme2":
    raise ValueError("the 5-class labels exist for CASME II only")
  base, modifiers = parse_variant(variant)

  c = base_config()
  c.task = "frldgt_jax.task"
  c.name = f"frldgt_{dataset}" + ("_5class" if five_class else "")
  c.variant = variant
  c.seed = 0
  # total_steps (driver field) is the whole budget of every fold: the first dgm_pretrain_steps
  # train the DGM alone on frame pairs (stage 1), the rest train end to end (stage 2).
  c.total_steps = 3000
  c.dgm_pretrain_steps = 500
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.tensorboard = False

  c.data = ml_collections.ConfigDict()
  c.data.dataset = dataset           # which prepared dataset (TFDS builder) the clips come from
  c.data.labels = "label5" if five_class else "label"  # 'label' (3 classes) or 'label5'
  c.data.class_names = CLASS_NAMES_5 if five_class else CLASS_NAMES_3
  c.data.data_dir = "data/tfds"      # TFDS data dir written by launch/prepare_data.py
  c.data.dataset_dir = ""            # explicit prepared dataset folder (overrides data_dir)
  c.data.resolution = 128            # S (must equal model.image_size)
  c.data.frames = 8                  # T stored frames, onset..apex
  c.data.alignment = "detect"        # 'detect' | 'landmarks' | 'cropped' (prepare_data flags)
  c.data.match_brightness = True     # each pair's target brightness set to the onset's
  c.data.synthetic = False           # True: generate + build the synthetic corpus when absent
  c.data.synthetic_root = "data/synthetic_me"  # corpus and TFDS data under a per-config folder
  c.data.synthetic_subjects = 4      # per database
  c.data.synthetic_clips_per_subject = 6
  c.data.synthetic_seed = 0

  c.model = model_lib.default_model_config("default")
  c.batch_size = 32                  # clips per fold per step (stage 2)
  c.pair_batch_size = 32             # frame pairs per fold per step (stage 1)
  c.class_weighted = True            # L_CE weighted by inverse class frequency of the fold
  c.class_balanced = False           # class-balanced sampling instead of uniform epochs
  c.labels_shuffled = False          # control: training labels permuted within each fold
  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=5e-4, warmup_steps=100, final_learning_rate_fraction=0.01,
      weight_decay=0.05, b1=0.9, b2=0.999, grad_clip_norm=1.0,
      dgm_learning_rate=1e-3))       # stage 1 (Adam, constant)
  c.augment = ml_collections.ConfigDict(dict(
      max_rotation_deg=5.0, max_scale=0.05, max_shift=0.03, flip_prob=0.5, max_jitter=1,
      flip_aware=True,               # tell the model which examples were mirrored
      # Flips, rotations, zooms and shifts of the stage-1 pairs too. Off: with them the DGM
      # learnt no motion in 300 steps on the generated corpus (probe UF1 0.24, chance); without
      # them it did, from every initialisation tried (probe UF1 0.96-1.0).
      stage1_geometric=False))

  # 'stacked' (all folds in one program), 'per_fold', or 'auto': stacked on GPU/TPU, per_fold on
  # CPU, where XLA runs the stack's per-fold convolutions as grouped convolutions about 4x slower
  # per example than one fold's (measured on the :synthetic model, 2 CPU cores).
  c.sweep_mode = "auto"
  c.folds = "all"                    # 'all', or fold indices / subject keys: '0,5' 'samm/6'
  c.eval_batch_size = 64             # held-out clips per fold per prediction call

  if base == "synthetic":
    _synthetic(c, subjects=4, clips=6)
  elif base == "synthetic_tiny":
    _synthetic_tiny(c)
  for modifier in modifiers:
    if modifier == "shuffled":
      c.labels_shuffled = True
    elif modifier == "zero":
      c.model.displacement = "zero"
    elif modifier in ("per_fold", "stacked"):
      c.sweep_mode = modifier
    elif modifier == "bf16":
      c.model.compute_dtype = "bfloat16"
  if five_class:
    c.model.num_classes = 5
  c.model.image_size = c.data.get_ref("resolution")
  return c


def _synthetic(c: ml_collections.ConfigDict, subjects: int, clips: int) -> None:
  """The generated corpus at 64 x 64 with a small model (the :synthetic variant)."""
  c.data.synthetic = True
  c.data.synthetic_subjects = subjects
  c.data.synthetic_clips_per_subject = clips
  c.data.alignment = "landmarks"     # the corpus writes the true onset landmarks
  c.data.resolution = 64
  c.model = model_lib.default_model_config("tiny")
  c.model.dgm.input_stride = 4       # U-Net at 16 and 8 pixels: cheap on CPU, motion is smooth
  c.model.dgm.widths = (16, 16)
  # The AU motion is sparse (brows, mouth corners; 0.5-1.5 px at 64 px): an L1 smoothness
  # weight of 0.1 held the DGM's field at zero through any affordable stage 1 (a logistic
  # probe on its onset->apex field scored UF1 0.24, chance), weight 0 let it learn the motion
  # in 300 steps (probe UF1 0.98).
  c.model.dgm.smooth_weight = 0.0
  c.model.dropout = 0.0
  c.total_steps = 700
  c.dgm_pretrain_steps = 300
  c.batch_size = 16
  c.pair_batch_size = 16
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 20
  c.optimizer.dgm_learning_rate = 2e-3
  c.log_every = 20
  c.checkpoint_every = 100


def _synthetic_tiny(c: ml_collections.ConfigDict) -> None:
  """A tiny corpus and model for tests (the :synthetic_tiny variant)."""
  _synthetic(c, subjects=2, clips=3)
  c.data.resolution = 32
  c.model.patch_size = 8
  c.model.token_dim = 16
  c.model.num_heads = 2
  c.model.dgm.input_stride = 4
  c.model.dgm.widths = (8, 8)
  c.total_steps = 12
  c.dgm_pretrain_steps = 4
  c.batch_size = 8
  c.pair_batch_size = 8
  c.optimizer.warmup_steps = 2
  c.log_every = 4
  c.checkpoint_every = 4
  c.eval_batch_size = 8
