"""The clips a FRL-DGT config trains on and its leave-one-subject-out folds.

`load_loso_data(config)` reads the prepared dataset the config names (building the generated
corpus first for the :synthetic variants), keeps the clips with a label of the config's label
set and makes one fold per subject (data/pipeline.py). `selected_folds`, `fold_labels` and
`plan_slots` say which folds a run trains, on which labels, and how they are padded to fill the
devices. Config errors name the field (`validate_config`); missing data says how to prepare it.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import Optional, Sequence

import ml_collections
import numpy as np

from frldgt_jax import model as model_lib
from frldgt_jax import motion as motion_lib
from frldgt_jax.data import pipeline
from frldgt_jax.errors import InputError

# Stream tag of the per-fold label permutation (labels_shuffled), apart from pipeline.py's.
_SHUFFLE_STREAM = 7


@dataclasses.dataclass(frozen=True)
class LosoData:
  """The clips a config trains on, their labels in [0, C) and all LOSO folds over them."""
  prepared: pipeline.PreparedData
  labels: np.ndarray            # int64 [N]
  folds: list                   # [pipeline.Fold], one per subject, natural subject order
  class_names: tuple
  source: str                   # the prepared dataset folder
  flow: Optional[np.ndarray] = None  # float32 [N, S, S, 2] TV-L1 onset->apex, when the model
                                     # reads it (config.model.motion, frldgt_jax/motion.py)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _say(message: str) -> None:
  print(message, flush=True)


def corpus_config(config: ml_collections.ConfigDict):
  """The generated corpus of a :synthetic config: data.synthetic_* and the nuisance switches and
  magnitudes of data.corpus (frldgt_jax/data/synthetic.py's CorpusConfig; absent: defaults)."""
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  d = config.data
  nuisances = dict(d.get("corpus", {}) or {})
  if "databases" in nuisances:
    nuisances["databases"] = tuple(nuisances["databases"])
  known = {f.name for f in dataclasses.fields(synthetic.CorpusConfig)}
  unknown = sorted(set(nuisances) - known)
  if unknown:
    raise InputError(f"config.data.corpus: unknown field(s) {unknown}; CorpusConfig has "
                     f"{sorted(known)}")
  try:
    return synthetic.CorpusConfig(subjects=d.synthetic_subjects,
                                  clips_per_subject=d.synthetic_clips_per_subject,
                                  seed=d.synthetic_seed, **nuisances)
  except (TypeError, ValueError) as e:
    raise InputError(f"config.data.corpus: {e}") from None


def synthetic_dirs(config: ml_collections.ConfigDict) -> tuple[pathlib.Path, pathlib.Path]:
  """(corpus dir, TFDS data dir) of the :synthetic variants, one folder per corpus config (a
  corpus with non-default nuisances gets a suffix naming a hash of its settings)."""
  d = config.data
  name = f"subjects{d.synthetic_subjects}_clips{d.synthetic_clips_per_subject}_seed" \
         f"{d.synthetic_seed}"
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  corpus = dataclasses.asdict(corpus_config(config))
  defaults = dataclasses.asdict(synthetic.CorpusConfig(
      subjects=d.synthetic_subjects, clips_per_subject=d.synthetic_clips_per_subject,
      seed=d.synthetic_seed))
  if corpus != defaults:
    import hashlib  # pylint: disable=g-import-not-at-top
    import json  # pylint: disable=g-import-not-at-top
    changed = {k: v for k, v in corpus.items() if defaults[k] != v}
    name += "_" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
  root = pathlib.Path(d.synthetic_root) / name
  return root / "corpus", root / "tfds"


def ensure_synthetic_dataset(config: ml_collections.ConfigDict) -> pathlib.Path:
  """Generates the synthetic corpus and builds its TFDS dataset when absent; returns its folder.

  The corpus is written to a temporary folder and renamed when complete, and TFDS builds into a
  temporary folder too, so an interrupted run leaves nothing half-made that would be reused.
  The corpus is aligned with its true onset landmarks ('landmarks') or its crops ('cropped');
  dlib's landmarks ('landmarks68') come from launch/prepare_data.py run on the corpus folder.
  """
  from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  d = config.data
  corpus, data_dir = synthetic_dirs(config)
  target = builders.dataset_dir(data_dir, d.dataset, resolution=d.resolution, frames=d.frames,
                                alignment=d.alignment)
  if (target / "dataset_info.json").is_file():
    return target
  if not (corpus / "manifest.json").is_file():
    wanted = corpus_config(config)
    _say(f"generating the synthetic micro-expression corpus in {corpus} "
         f"({wanted.subjects} subjects per database x "
         f"{wanted.clips_per_subject} clips, seed {wanted.seed})")
    tmp = corpus.with_name(f"{corpus.name}.tmp-{os.getpid()}")
    start = time.time()
    synthetic.generate_corpus(tmp, wanted, overwrite=True)
    if corpus.exists():  # generated meanwhile by another process: keep that one
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(tmp)
    else:
      tmp.rename(corpus)
    _say(f"  corpus written in {time.time() - start:.0f} s")
  if d.alignment not in ("landmarks", "cropped"):
    raise InputError(f"config.data.alignment {d.alignment!r}: the generated corpus is aligned "
                     "with its true landmarks ('landmarks') or its crops ('cropped'); for dlib's "
                     f"landmarks run launch/prepare_data.py --manual_dir {corpus} and set "
                     "config.data.dataset_dir")
  landmarks = tuple(str(p) for p in sorted(corpus.glob("landmarks_*.csv")))
  options = builders.BuildOptions(
      landmarks_csv=landmarks if d.alignment == "landmarks" else None,
      composite_csv=str(corpus / "composite_3class.csv") if d.dataset == "composite" else None)
  _say(f"building TFDS dataset {d.dataset} ({d.frames} frames at {d.resolution}x{d.resolution}, "
       f"alignment {d.alignment}) from {corpus} into {data_dir}")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  start = time.time()
  builder, summary = builders.build(d.dataset, corpus, data_dir, resolution=d.resolution,
                                    frames=d.frames, alignment=d.alignment, options=options)
  _say(f"  built {summary['counts']['total']} clips in {time.time() - start:.0f} s: "
       f"{builder.data_dir}")
  return pathlib.Path(builder.data_dir)


def dataset_folder(config: ml_collections.ConfigDict) -> pathlib.Path:
  """The prepared dataset a config reads (building the synthetic one when needed)."""
  d = config.data
  if d.synthetic:
    return ensure_synthetic_dataset(config)
  if d.dataset_dir:
    folder = pathlib.Path(d.dataset_dir)
  else:
    from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
    folder = builders.dataset_dir(d.data_dir, d.dataset, resolution=d.resolution,
                                  frames=d.frames, alignment=d.alignment)
  if not (folder / "dataset_info.json").is_file():
    flag = {"landmarks": " --landmarks CSV", "cropped": " --use_cropped"}.get(d.alignment, "")
    raise FileNotFoundError(
        f"no prepared dataset at {folder}. Prepare it first: python launch/prepare_data.py "
        f"--dataset {d.dataset} --manual_dir DIR --data_dir {d.data_dir} --resolution "
        f"{d.resolution} --frames {d.frames}{flag} (or set --config.data.dataset_dir), or use "
        f"the :synthetic variant")
  return folder


def load_loso_data(config: ml_collections.ConfigDict) -> LosoData:
  """Loads the prepared clips with a label of the config's label set and makes the LOSO folds."""
  validate_config(config)
  folder = dataset_folder(config)
  prepared = pipeline.load_prepared(folder)
  labels = getattr(prepared, config.data.labels)
  prepared = prepared.select(labels >= 0)
  labels = np.asarray(getattr(prepared, config.data.labels), np.int64)
  if not len(labels):
    raise InputError(f"{folder}: no clip has a {config.data.labels} label")
  num_classes = len(config.data.class_names)
  if labels.max() >= num_classes:
    raise InputError(f"{folder}: {config.data.labels} values reach {labels.max()} but the "
                     f"config names {num_classes} classes")
  t, s = prepared.frames.shape[1], prepared.frames.shape[2]
  if s != config.data.resolution or t != config.data.frames:
    raise InputError(f"{folder} stores {t} frames at {s}x{s}; the config asks for "
                     f"{config.data.frames} at {config.data.resolution}")
  folds = pipeline.loso_folds(prepared.subject_keys)
  flow = None
  if model_lib.reads_tvl1(config.model):
    start = time.time()
    flow = motion_lib.clip_flows(prepared.frames, bool(config.data.match_brightness))
    _say(f"TV-L1 flow of {len(flow)} clips (onset -> apex) in {time.time() - start:.0f} s")
  return LosoData(prepared, labels, folds, tuple(config.data.class_names), str(folder), flow)


def in_memory_data(config: ml_collections.ConfigDict) -> LosoData:
  """Random clips laid out as `load_loso_data(config)` lays out a :synthetic config's corpus.

  The clips, subjects and labels are those the generated corpus plans (synthetic.plan_corpus,
  no pixels drawn), so the folds hold as many clips as the prepared dataset's; the frames (and
  TV-L1 flows, when the model reads them) are seeded noise of the stored shapes and dtypes.
  Nothing is read from disk and TensorFlow is not needed: for measuring the training programs
  (launch/benchmarks/suites/frldgt.py) where the prepared dataset cannot be read. Only the
  generated corpus's layout is known without the data: other configs raise InputError.
  """
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  validate_config(config)
  d = config.data
  if not d.synthetic:
    raise InputError("in-memory clips follow the generated corpus's layout; the prepared "
                     f"dataset of {d.dataset!r} (config.data.synthetic False) must be read")
  plans = [p for p in synthetic.plan_corpus(corpus_config(config))
           if getattr(p, d.labels) >= 0]
  if not plans:
    raise InputError(f"the generated corpus plans no clip with a {d.labels} label")
  n, t, s = len(plans), int(d.frames), int(d.resolution)
  rng = np.random.default_rng(config.seed)
  frames = rng.integers(0, 256, (n, t, s, s, 1), dtype=np.uint8)
  zeros = np.zeros(n, np.int64)
  prepared = pipeline.PreparedData(
      frames=frames, label=np.asarray([p.label for p in plans], np.int64),
      label5=np.asarray([p.label5 for p in plans], np.int64),
      database=np.asarray([p.database for p in plans]),
      subject=np.asarray([p.subject for p in plans]),
      sample=np.asarray([p.sample for p in plans]),
      onset_index=zeros, apex_index=zeros + t - 1, offset_index=zeros + t - 1,
      frame_indices=np.tile(np.arange(t, dtype=np.int64), (n, 1)))
  labels = np.asarray(getattr(prepared, d.labels), np.int64)
  flow = None
  if model_lib.reads_tvl1(config.model):
    flow = rng.standard_normal((n, s, s, 2)).astype(np.float32)
  return LosoData(prepared, labels, pipeline.loso_folds(prepared.subject_keys),
                  tuple(d.class_names), "(in memory)", flow)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises InputError naming the field when the config is inconsistent."""
  model_lib.validate_config(config.model)
  if config.model.image_size != config.data.resolution:
    raise InputError(f"config.model.image_size ({config.model.image_size}) must equal "
                     f"config.data.resolution ({config.data.resolution})")
  if config.model.num_classes != len(config.data.class_names):
    raise InputError(f"config.model.num_classes ({config.model.num_classes}) must equal the "
                     f"number of config.data.class_names ({len(config.data.class_names)})")
  _check_alignment(config.data.alignment)
  if config.data.labels not in ("label", "label5"):
    raise InputError(f"config.data.labels must be 'label' or 'label5', got "
                     f"{config.data.labels!r}")
  if not 0 <= config.dgm_pretrain_steps < config.total_steps:
    raise InputError(f"config.dgm_pretrain_steps ({config.dgm_pretrain_steps}) must be in "
                     f"[0, total_steps={config.total_steps})")
  if config.sweep_mode not in ("auto", "stacked", "per_fold"):
    raise InputError(f"config.sweep_mode must be 'auto', 'stacked' or 'per_fold', got "
                     f"{config.sweep_mode!r}")
  if config.get("dgm_pairs", "all") not in pipeline.DGM_PAIRS:
    raise InputError(f"config.dgm_pairs must be one of {list(pipeline.DGM_PAIRS)}, got "
                     f"{config.dgm_pairs!r}")
  for field in ("batch_size", "pair_batch_size", "eval_batch_size"):
    if config[field] < 1:
      raise InputError(f"config.{field} must be positive, got {config[field]}")
  if config.data.frames - 1 - 2 * config.augment.max_jitter < 1:
    raise InputError(f"config.augment.max_jitter {config.augment.max_jitter} leaves no onset < "
                     f"apex among {config.data.frames} frames")


def _check_alignment(alignment: str) -> None:
  """A new run's data.alignment must be one the builders make (frldgt_jax/data/align.py's
  list; checked without TensorFlow)."""
  from frldgt_jax.data import align  # pylint: disable=g-import-not-at-top
  if alignment in align.RETIRED_ALIGNMENTS:
    raise InputError(f"config.data.alignment {alignment!r} names data of an earlier builder that "
                     f"nothing builds now; use {align.RETIRED_ALIGNMENTS[alignment]!r} "
                     f"(alignments: {', '.join(align.ALIGNMENTS)})")
  if alignment not in align.ALIGNMENTS:
    raise InputError(f"config.data.alignment must be one of {', '.join(align.ALIGNMENTS)}, "
                     f"got {alignment!r}")


def selected_folds(config: ml_collections.ConfigDict, folds: Sequence) -> list[int]:
  """Fold indices named by config.folds: 'all', or comma-separated indices / subject keys."""
  spec = str(config.folds).strip()
  if spec in ("", "all"):
    return [f.index for f in folds]
  by_subject = {f.test_subject: f.index for f in folds}
  out = []
  for part in (p.strip() for p in spec.split(",") if p.strip()):
    if part.lstrip("-").isdigit():
      k = int(part)
      if not 0 <= k < len(folds):
        raise InputError(f"config.folds: fold {k} does not exist (0..{len(folds) - 1})")
    elif part in by_subject:
      k = by_subject[part]
    else:
      raise InputError(f"config.folds: {part!r} is neither a fold index nor a subject key "
                       f"(e.g. {folds[0].test_subject!r})")
    if k in out:
      raise InputError(f"config.folds names fold {k} twice")
    out.append(k)
  return out


FINAL_SUBJECT = "(every subject)"


def with_final_fold(data: LosoData) -> tuple[LosoData, int]:
  """`data` with one more fold that trains on every clip and holds none out (the final model to
  deploy; not an evaluation), and that fold's index."""
  k = len(data.folds)
  final = pipeline.Fold(k, FINAL_SUBJECT, np.arange(len(data.labels)), np.zeros(0, np.int64))
  return dataclasses.replace(data, folds=list(data.folds) + [final]), k


def fold_labels(config: ml_collections.ConfigDict, data: LosoData, fold) -> np.ndarray:
  """The labels fold `fold` trains on: the true ones, or (labels_shuffled) a permutation of
  its training clips' labels among its training clips (held-out clips keep theirs, unused)."""
  labels = data.labels.copy()
  if config.labels_shuffled:
    rng = np.random.default_rng([config.seed, fold.index, _SHUFFLE_STREAM])
    train = np.asarray(fold.train_idx)
    labels[train] = labels[train][rng.permutation(len(train))]
  return labels


@dataclasses.dataclass(frozen=True)
class ModelSlot:
  """One model of a run: which fold's data it trains on and its rng identity."""
  fold: int          # index into LosoData.folds
  model_id: int      # folded into its rngs; == fold for real folds
  dummy: bool        # padding so the fold axis divides the devices; its predictions are unused


def plan_slots(fold_ids: Sequence[int], num_folds: int, multiple: int = 1) -> list[ModelSlot]:
  """Real folds, padded with dummy copies (ids >= num_folds) up to a multiple of `multiple`."""
  slots = [ModelSlot(k, k, False) for k in fold_ids]
  extra = (-len(slots)) % max(multiple, 1)
  slots += [ModelSlot(fold_ids[j % len(fold_ids)], num_folds + j, True) for j in range(extra)]
  return slots


def check_held_out_once(data: LosoData, fold_ids: Sequence[int], folds: np.ndarray,
                        index: np.ndarray) -> None:
  """Asserts every selected fold's held-out clips are predicted exactly once, by that fold."""
  expected = np.sort(np.concatenate([data.folds[k].test_idx for k in fold_ids]))
  if not np.array_equal(np.sort(index), expected):
    raise AssertionError("the predictions do not cover each held-out clip exactly once")
  keys = data.prepared.subject_keys
  for k in fold_ids:
    if set(keys[index[folds == k]].tolist()) != {data.folds[k].test_subject}:
      raise AssertionError(f"fold {k} predicted clips of another subject than its own")
