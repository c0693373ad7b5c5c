"""FRL-DGT, leave-one-subject-out on the MEGC2019 composite (CASME II + SAMM + SMIC-HS, 3 classes,
68 subjects): the experiment, every hyperparameter.

  python launch/sweep.py --config configs/frldgt_composite.py               # prepared real data
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic     # generated corpus
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic,zero --config.folds=0,1

The real data must be prepared first (python launch/prepare_data.py --dataset composite ...).
Variants (the `:arg`), comma-separated:
  ''              the prepared real dataset, full-size model.
  synthetic       the generated corpus (frldgt_jax/data/synthetic.py; 4 subjects per database x
                  6 clips), generated and built with the real TFDS builder when absent; a small
                  model at 64 x 64 whose budget reaches UF1 >= 0.9 on 2 CPU cores in minutes.
  synthetic_tiny  a tiny corpus (2 subjects per database x 3 clips) and a tiny model (tests).
Modifiers that can follow either: 'shuffled' (control: shuffled training labels), 'zero'
(control: the DGM replaced by a zero displacement), 'paper' (the DGM trained end to end at the
model's step size on the resampled frames, as the paper states it; for the generated corpus also
the stage 1 this project used before docs/frldgt.md "Does the DGM learn the motion?": 300 steps
at 2e-3, no smoothness), 'per_fold' / 'stacked' (the sweep mode),
'bf16' (bfloat16 compute); the motion the transformers see (model.motion, frldgt_jax/motion.py):
'tvl1', 'dgm+tvl1', 'nomotion'; 'reduced' (200 stage-2 steps per fold, the budget of the seed
tables in docs/frldgt.md and docs/frldgt_own_clips.md); for the generated corpus, its nuisances
(data.corpus): 'clean' (all off) or 'only_<nuisance>' (that one alone, stronger than the
default: STRONGER). The other FRL-DGT configs start from this one.
"""
import ml_collections

from launch.trainer import base_config

BASE_VARIANTS = ("", "synthetic", "synthetic_tiny")
# The generated corpus's nuisances at a stronger setting than the default (data.corpus), for the
# one-at-a-time table: 'only_<name>' turns every other nuisance off. 'small_au' halves the AU
# amplitude (the expression, not a nuisance) with every nuisance off.
STRONGER = {
    "translation": {"head_translation": True, "head_translation_px": 2.5},   # default 0.625
    "rotation": {"head_rotation": True, "head_rotation_deg": 0.6},           # default 0.15
    "illumination": {"illumination": True, "illumination_gain": 0.05},       # default 0.012
    "noise": {"sensor_noise": True, "sensor_noise_sigma": 8.0},              # default 2.5
    "jpeg": {"jpeg": True, "jpeg_quality": 60},                              # default 92
    "blinks": {"blinks": True, "blink_rate": 1.0},                           # default 0.3
    "small_au": {"au_amplitude_px": 3.75},                                   # default 7.5
}
NUISANCE_SWITCHES = ("head_translation", "head_rotation", "illumination", "sensor_noise", "jpeg",
                     "blinks")
MODIFIERS = ("shuffled", "zero", "paper", "per_fold", "stacked", "bf16", "tvl1", "dgm+tvl1",
             "nomotion", "reduced", "clean") + tuple(f"only_{name}" for name in STRONGER)


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


def get_config(arg: str = ""):
  base, modifiers = parse_variant(arg)
  # The generated corpus's DGM recipe (docs/frldgt.md "Does the DGM learn the motion?"), unless
  # 'paper' asks for the DGM training before it.
  recipe = base == "synthetic" and "paper" not in modifiers
  c = base_config()
  c.task = "launch.tasks.frldgt"
  c.name = "frldgt_composite"
  c.variant = arg
  c.seed = 0
  # total_steps is the whole budget of every fold: the first dgm_pretrain_steps train the DGM
  # alone on frame pairs (stage 1), the rest train end to end (stage 2).
  c.total_steps = 3000
  c.dgm_pretrain_steps = 500
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.tensorboard = False

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "composite"       # which prepared dataset (TFDS builder) the clips come from
  c.data.labels = "label"            # 'label' (3 classes) or 'label5' (CASME II's 5)
  c.data.class_names = ("negative", "positive", "surprise")
  c.data.data_dir = "data/tfds"      # TFDS data dir written by launch/prepare_data.py
  c.data.dataset_dir = ""            # explicit prepared dataset folder (overrides data_dir)
  c.data.resolution = 128            # S (must equal model.image_size)
  c.data.frames = 8                  # T stored frames, onset..apex
  c.data.alignment = "landmarks68"   # dlib's 68 | 'landmarks' (CSV) | 'cropped' (prepare_data)
  c.data.match_brightness = True     # each pair's target brightness set to the onset's
  c.data.synthetic = False           # True: generate + build the synthetic corpus when absent
  c.data.synthetic_root = "data/synthetic_me"  # corpus and TFDS data under a per-config folder
  c.data.synthetic_subjects = 4      # per database
  c.data.synthetic_clips_per_subject = 6
  c.data.synthetic_seed = 0
  # The generated corpus's nuisances: one switch and one magnitude each (raw pixels of a CASME II
  # 640 x 480 frame; frldgt_jax/data/synthetic.py, CorpusConfig), and which databases it holds.
  c.data.corpus = ml_collections.ConfigDict(dict(
      databases=("casme2", "samm", "smic"), distractors=True,
      head_translation=True, head_translation_px=0.625,
      head_rotation=True, head_rotation_deg=0.15,
      illumination=True, illumination_gain=0.012,
      sensor_noise=True, sensor_noise_sigma=2.5,
      jpeg=True, jpeg_quality=92,
      blinks=True, blink_rate=0.3,
      au_amplitude_px=7.5))

  # Every size of the model (frldgt_jax/model.py builds it from these fields).
  c.model = ml_collections.ConfigDict()
  c.model.image_size = 128           # S: aligned grayscale crops [S, S, 1]
  c.model.num_classes = 3
  c.model.compute_dtype = "float32"  # or 'bfloat16': params float32, matmuls/convs bf16
  c.model.displacement = "dgm"       # 'dgm' | 'zero' (ablation: no DGM, zero field)
  c.model.motion = "dgm"             # 'dgm' | 'tvl1' | 'dgm+tvl1' | 'none' (frldgt_jax/motion.py)
  c.model.inputs = ("displacement", "apex")  # which per-patch inputs are tokenised
  c.model.token_fusion = "linear"    # 'linear' (one Dense over the per-patch embeddings) or
                                     # 'sequence' (modality tokens concatenated)
  c.model.regions = ("brow_eye_left", "brow_eye_right", "glabella_nose", "mouth_corner_left",
                     "mouth_corner_right")  # add 'mouth_chin' for a sixth region
  c.model.patch_size = 8             # tokens on an (S / patch_size)^2 grid
  c.model.token_dim = 64
  c.model.num_heads = 4
  c.model.mlp_ratio = 2.0
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0
  c.model.local_depth = 1
  c.model.global_depth = 1
  c.model.full_depth = 2
  c.model.local_shared_weights = False  # one transformer per AU region (False) or one for all
  c.model.dgm = ml_collections.ConfigDict()
  c.model.dgm.input_stride = 4       # space-to-depth fold: the U-Net runs at S/4, S/8, S/16
  c.model.dgm.widths = (16, 32, 32)  # U-Net channels per level
  c.model.dgm.convs_per_level = 2
  c.model.dgm.photometric = "charbonnier"  # or 'l1', or 'census' (soft census, 7 x 7)
  c.model.dgm.charbonnier_eps = 1e-3
  c.model.dgm.charbonnier_alpha = 0.45
  c.model.dgm.smooth_weight = 0.1
  c.model.dgm.edge_alpha = 0.0       # > 0: edge-aware smoothness, weights exp(-edge_alpha |dI|)
  c.model.dgm.distill_weight = 0.0   # > 0: stage 1 also fits the training clips' TV-L1 flow
  c.model.dgm_weight = 0.1           # lambda in L = L_CE + lambda * L_DGM (stage 2)

  c.batch_size = 32                  # clips per fold per step (stage 2)
  c.pair_batch_size = 32             # frame pairs per fold per step (stage 1)
  c.dgm_pairs = "all"                # stage-1 pairs: 'all' i < j, or 'onset' (0, j)
  c.class_weighted = True            # L_CE weighted by inverse class frequency of the fold
  c.class_balanced = False           # class-balanced sampling instead of uniform epochs
  c.labels_shuffled = False          # control: training labels permuted within each fold
  # Stage 2: AdamW with warmup and cosine decay over the stage-2 steps, gradients clipped;
  # stage 1: Adam at dgm_learning_rate, constant.
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=5e-4, warmup_steps=100, final_learning_rate_fraction=0.01,
      weight_decay=0.05, b1=0.9, b2=0.999, grad_clip_norm=1.0,
      dgm_learning_rate=1e-3,
      # The DGM's stage-2 step size relative to the model's. At 1 (the paper's plain end-to-end
      # training) the cross-entropy pulled the stage-1 field further from the true motion than
      # zero in 8 of 9 runs; 0.1 kept it (docs/frldgt.md "Does the DGM learn the motion?").
      dgm_stage2_lr_scale=0.1))
  c.augment = ml_collections.ConfigDict(dict(
      max_rotation_deg=5.0, max_scale=0.05, max_shift=0.03, flip_prob=0.5, max_jitter=1,
      flip_aware=True,               # tell the model which examples were mirrored
      # Flips, rotations, zooms and shifts of the stage-1 pairs too. Off: with them the DGM
      # learnt no motion in 300 steps on the generated corpus (probe UF1 0.24, chance); without
      # them it did, from every initialisation tried (probe UF1 0.96-1.0).
      stage1_geometric=False,
      # Stage 2: the DGM's field of the stored (jittered) pair, moved with the frames' geometric
      # augmentation as TV-L1's flow is, instead of the DGM's field of the resampled frames
      # (which bilinear resampling blurs, unlike any frame it sees in stage 1 or at prediction).
      dgm_on_stored_frames=True))

  # 'stacked' (all folds in one program), 'per_fold', or 'auto': stacked on GPU/TPU, per_fold on
  # CPU, where XLA runs the stack's per-fold convolutions as grouped convolutions about 4x slower
  # per example than one fold's (measured on the :synthetic model, 2 CPU cores).
  c.sweep_mode = "auto"
  c.folds = "all"                    # 'all', or fold indices / subject keys: '0,5' 'samm/6'
  # Also train one model on every subject with the same budget (W/final/, launch/predict.py's
  # default model). Not an evaluation: its training set holds every subject.
  c.final_model = False
  c.eval_batch_size = 64             # held-out clips per fold per prediction call

  if base in ("synthetic", "synthetic_tiny"):
    # The generated corpus at 64 x 64 with a small model.
    c.data.synthetic = True
    # The corpus's true onset landmarks (exact). dlib found all 78 drawn onset faces, eyes and
    # mouth within 3 px on average (docs/faces.md); that alignment: prepare_data.py on the corpus.
    c.data.alignment = "landmarks"
    c.data.resolution = 64
    c.model.token_dim = 32
    c.model.num_heads = 2
    c.model.full_depth = 1
    c.model.dropout = 0.0
    c.model.dgm.input_stride = 4     # U-Net at 16 and 8 pixels: cheap on CPU, motion is smooth
    c.model.dgm.widths = (16, 16)
    # The AU motion is sparse (brows, mouth corners; 0.5-1.5 px at 64 px): an L1 smoothness
    # weight of 0.1 held the DGM's field at zero through any affordable stage 1 (a logistic
    # probe on its onset->apex field scored UF1 0.24, chance), weight 0 let it learn the motion
    # in 300 steps (probe UF1 0.98).
    c.model.dgm.smooth_weight = 0.0
    c.total_steps = 700
    c.dgm_pretrain_steps = 300
    c.batch_size = 16
    c.pair_batch_size = 16
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 20
    c.optimizer.dgm_learning_rate = 2e-3
    if recipe:
      # docs/frldgt.md "Does the DGM learn the motion?": stage 1 reaches its plateau against the
      # true motion (about 0.3 px end-point error in the AU regions) by 400-600 steps at 5e-3,
      # and a little smoothness quiets the field outside them; stage 2 keeps its 400 steps.
      c.dgm_pretrain_steps = 600
      c.total_steps = 1000
      c.optimizer.dgm_learning_rate = 5e-3
      c.model.dgm.smooth_weight = 0.01
    c.log_every = 20
    c.checkpoint_every = 100
  if base == "synthetic_tiny":
    # A tiny corpus and model: seconds to a minute, for tests.
    c.data.synthetic_subjects = 2
    c.data.synthetic_clips_per_subject = 3
    c.data.resolution = 32
    c.model.token_dim = 16
    c.model.dgm.widths = (8, 8)
    c.total_steps = 12
    c.dgm_pretrain_steps = 4
    c.batch_size = 8
    c.pair_batch_size = 8
    c.optimizer.warmup_steps = 2
    # The tiny test model keeps the DGM training that the committed legacy sweep
    # (tests/fixtures/legacy_ee41ea4) ran with, so that sweep resumes under today's config.
    c.optimizer.dgm_stage2_lr_scale = 1.0
    c.augment.dgm_on_stored_frames = False
    c.log_every = 4
    c.checkpoint_every = 4
    c.eval_batch_size = 8
  for modifier in modifiers:
    if modifier == "shuffled":
      c.labels_shuffled = True
    elif modifier == "zero":
      c.model.displacement = "zero"
    elif modifier == "paper":
      c.optimizer.dgm_stage2_lr_scale = 1.0
      c.augment.dgm_on_stored_frames = False
    elif modifier in ("per_fold", "stacked"):
      c.sweep_mode = modifier
    elif modifier == "bf16":
      c.model.compute_dtype = "bfloat16"
    elif modifier in ("tvl1", "dgm+tvl1"):
      c.model.motion = modifier
    elif modifier == "nomotion":
      c.model.motion = "none"
    elif modifier == "reduced":
      # The budget of docs/frldgt_own_clips.md's tables: every subject still held out once,
      # fewer steps per fold (200 in stage 2; the generated corpus's stage 1 as above).
      if recipe:
        c.total_steps = 800
      else:
        c.total_steps = 400
        c.dgm_pretrain_steps = 200
    elif modifier == "clean" or modifier.startswith("only_"):
      for switch in NUISANCE_SWITCHES:
        c.data.corpus[switch] = False
      if modifier != "clean":
        c.data.corpus.update(STRONGER[modifier[len("only_"):]])
  c.model.image_size = c.data.get_ref("resolution")
  return c
