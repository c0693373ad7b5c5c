"""TFDS builders (manual download) for CASME II, SAMM, SMIC-HS and the MEGC2019 composite.

Builders (registered names chosen not to clash with anything TFDS ships; one per database of
frldgt_jax/data/databases.py, `BUILDERS[name]`):
  `casme2_me`, `samm_me`, `smic_me`: every clip of the database's annotation source;
  `megc2019_composite`: the clips of a composite list (default: the 442-clip MEGC2019 list
  shipped as frldgt_jax/data/megc2019_composite_3class.csv), from all three databases.

Usage (CSV: onset landmarks, e.g. written by launch/prepare_data.py with dlib's 68 points):
    builder = builders.BUILDERS["casme2"](data_dir=OUT,
                                          config=builders.me_config(128, 8, "landmarks68"),
                                          options=builders.BuildOptions(landmarks_csv=CSV))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DIR))
or `python launch/prepare_data.py --dataset casme2 --manual_dir DIR --data_dir OUT`.

Two kinds of settings:
- `MeConfig` (the TFDS BuilderConfig; it names the dataset's folder, so datasets built with
  different settings never overwrite each other): `resolution` S, `frames` T and `alignment`
  ('landmarks68': onset landmarks from a CSV that launch/prepare_data.py writes with dlib's
  68-point predictor, completed by the user's CSV for faces dlib misses; 'landmarks': a landmark
  CSV the user gives; 'cropped': the dataset's own cropped folders, used as they are). Both
  landmark alignments read `BuildOptions.landmarks_csv`; the names differ so that data aligned
  one way is never reused for the other. Names are `s{S}_t{T}_{alignment}`; `me_config()`
  returns the predefined one or a custom one with the same naming.
- `BuildOptions` (builder keyword `options=`; how to read the input, not what is stored):
  `landmarks_csv`, `allow_drops`, `composite_csv`, `progress`. The builders detect nothing:
  `onset_frames` lists the frames for the application's detector.

Every stored example (one per clip) has these features:
  database      str    'casme2' | 'samm' | 'smic'
  subject       str    canonical subject: CASME II 'sub01', SAMM unpadded '6', SMIC 's01'
  sample        str    canonical sample: 'EP02_01f', '006_1_2', 's01_ne_01'
  label         int64  3-class composite label from the annotation (0 negative, 1 positive,
                       2 surprise; -1 if the clip is outside the composite classes)
  label5        int64  CASME II 5-class label (0 happiness, 1 disgust, 2 repression, 3 surprise,
                       4 others; -1 for other databases and CASME II fear/sadness)
  emotion       str    the annotation's emotion text (SMIC: its folder name)
  onset_index, apex_index, offset_index  int64  absolute frame numbers after the errata
  fps           int64  200 (CASME II, SAMM) or 100 (SMIC-HS)
  frame_indices int64 [T]  absolute frame number of each stored frame
  frames        uint8 [T, S, S, 1]  grayscale aligned frames from onset to apex inclusive,
                       evenly spaced (frames[0] = onset, frames[-1] = apex); the
                       self-supervised pairs are drawn from these
  fixes         str    JSON list of {"rule", "detail"}: the errata applied to this clip
                       (rules in frldgt_jax/data/annotations.py)

Alignment is computed once per clip from the onset frame and applied to every stored frame (a
per-frame crop would jitter more than micro-expression motion, docs/frldgt.md). In 'cropped' mode the
dataset's crop is trusted: each cropped frame is resized to S x S as it is (no re-alignment; a
non-square crop changes aspect ratio).

Bad input (a row that does not parse, a listed clip missing on disk, a missing frame between
onset and apex, an unreadable image, no face found, no landmarks for a clip) fails the build with
one error listing each problem by file, row and sample, unless `allow_drops`; then the clip is
left out and listed in the build summary. The summary (counts per database, class and subject,
every fix and every drop) is written as `build_summary.json` in the dataset folder.
"""
from __future__ import annotations

import collections
import dataclasses
import importlib.resources
import inspect
import json
import os
import pathlib
from typing import Any, Iterator, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from frldgt_jax.data import align
from frldgt_jax.data import annotations as ann_lib
from frldgt_jax.data import clips as clips_lib
from frldgt_jax.data import databases

SUMMARY_FILE = "build_summary.json"
# The alignments the builders make, and retired names (align.py owns them: a config is checked
# against them where TensorFlow is not installed).
ALIGNMENTS, LANDMARK_ALIGNMENTS = align.ALIGNMENTS, align.LANDMARK_ALIGNMENTS
DEFAULT_RESOLUTION = 128
DEFAULT_FRAMES = 8
# 2.0.0: alignment 'landmarks68' (dlib) replaced 'detect' (OpenCV Haar cascades).
_VERSION = tfds.core.Version("2.0.0")


def default_composite_csv() -> pathlib.Path:
  """The 442-clip MEGC2019 composite list shipped with the package."""
  return pathlib.Path(str(importlib.resources.files("frldgt_jax.data")
                          / "megc2019_composite_3class.csv"))


# ----------------------------------------------------------------------------- settings

@dataclasses.dataclass(eq=False)
class MeConfig(tfds.core.BuilderConfig):
  """What is stored: resolution S, frames T per clip, and where the face crop comes from."""
  resolution: int = DEFAULT_RESOLUTION
  frames: int = DEFAULT_FRAMES
  alignment: str = "landmarks68"


def config_name(resolution: int, frames: int, alignment: str) -> str:
  """`s{S}_t{T}_{alignment}`."""
  return f"s{resolution}_t{frames}_{alignment}"


def _make_config(resolution: int, frames: int, alignment: str) -> MeConfig:
  if alignment not in ALIGNMENTS:
    raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
  if resolution < 8 or frames < 2:
    raise ValueError(f"need resolution >= 8 and frames >= 2, got {resolution}, {frames}")
  return MeConfig(name=config_name(resolution, frames, alignment), version=_VERSION,
                  description=f"{frames} frames onset..apex at {resolution}x{resolution}, "
                  f"alignment: {alignment}", resolution=resolution, frames=frames,
                  alignment=alignment)


_PREDEFINED = [_make_config(s, t, a) for s in (128, 64) for t in (8,) for a in ALIGNMENTS]


def me_config(resolution: int = DEFAULT_RESOLUTION, frames: int = DEFAULT_FRAMES,
              alignment: str = "landmarks68") -> MeConfig:
  """The predefined config with these settings, or a custom one named the same way."""
  name = config_name(resolution, frames, alignment)
  for config in _PREDEFINED:
    if config.name == name:
      return config
  return _make_config(resolution, frames, alignment)


@dataclasses.dataclass(frozen=True)
class BuildOptions:
  """How to read the input (builder keyword `options=`).

  landmarks_csv: CSV of onset-frame landmarks (`subject,sample,left_eye_x,...`, folder
    spellings), or several (e.g. one per database for the composite); required when the
    config's alignment is 'landmarks68' or 'landmarks' (a clip without a row is reported, or
    dropped with `allow_drops`).
  allow_drops: drop clips with problems (each listed in the summary) instead of failing.
  composite_csv: `dataset,subject,sample,label` list for `megc2019_composite` (default: the
    shipped 442-clip MEGC2019 list).
  progress: show a tqdm progress bar over clips while building.
  """
  landmarks_csv: str | Sequence[str] | None = None
  allow_drops: bool = False
  composite_csv: str | None = None
  progress: bool = False

  @property
  def landmark_files(self) -> tuple[str, ...]:
    if not self.landmarks_csv:
      return ()
    if isinstance(self.landmarks_csv, (str, os.PathLike)):
      return (os.fspath(self.landmarks_csv),)
    return tuple(os.fspath(p) for p in self.landmarks_csv)


def read_landmark_files(paths: Sequence[str]) -> dict:
  """{(subject folder, sample folder): align.Landmarks} merged from several landmark CSVs."""
  from frldgt_jax.data import align  # pylint: disable=g-import-not-at-top
  merged, origin = {}, {}
  for path in paths:
    for key, points in align.read_landmarks_csv(path).items():
      if key in merged:
        raise ValueError(f"{path}: landmarks of {key[0]}/{key[1]} are also given in "
                         f"{origin[key]}")
      merged[key], origin[key] = points, path
  return merged


# ----------------------------------------------------------------------------- summary

@dataclasses.dataclass
class BuildSummary:
  """Counts of the stored clips, every fix applied and every clip dropped (JSON-able)."""
  dataset: str
  config: dict[str, Any]
  clips: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  fixes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  drops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  ignored: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  def add_clip(self, clip: ann_lib.ClipAnnotation, label: int, fixes: Sequence[ann_lib.Fix],
               alignment_source: str = ""):
    self.clips.append({"database": clip.database, "subject": clip.subject,
                       "sample": clip.sample, "label": label, "alignment": alignment_source})
    for fix in fixes:
      self.fixes.append({"database": clip.database, "subject": clip.subject,
                         "sample": clip.sample, **fix.to_json()})

  def add_drop(self, problem: ann_lib.DataProblem):
    self.drops.append({**problem.to_json(), "reason": str(problem)})

  def counts(self) -> dict[str, Any]:
    """{'total', 'per_database', 'per_class' {db: {class: n}}, 'per_subject' {db: {subj: n}}}."""
    per_db = collections.Counter(c["database"] for c in self.clips)
    per_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_subject: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for c in self.clips:
      per_class[c["database"]][databases.label_name(c["label"])] += 1
      per_subject[c["database"]][c["subject"]] += 1
    return {"total": len(self.clips), "per_database": dict(sorted(per_db.items())),
            "per_class": {d: dict(sorted(v.items())) for d, v in sorted(per_class.items())},
            "per_subject": {d: dict(sorted(v.items(), key=lambda kv: _natural(kv[0])))
                            for d, v in sorted(per_subject.items())}}

  def to_json(self) -> dict[str, Any]:
    fix_rules = collections.Counter(f["rule"] for f in self.fixes)
    drop_kinds = collections.Counter(d["kind"] for d in self.drops)
    alignment = collections.Counter(c["alignment"] for c in self.clips)
    return {"dataset": self.dataset, "config": self.config, "counts": self.counts(),
            "alignment_sources": dict(sorted(alignment.items())),
            "fix_counts": dict(sorted(fix_rules.items())), "fixes": self.fixes,
            "drop_counts": dict(sorted(drop_kinds.items())), "drops": self.drops,
            "ignored_problems": self.ignored}


def _natural(text: str) -> tuple:
  digits = "".join(ch for ch in text if ch.isdigit())
  return (int(digits) if digits else -1, text)


def read_build_summary(dataset_dir: str | os.PathLike) -> dict[str, Any]:
  """The build summary written next to a prepared dataset (`builder.data_dir`)."""
  path = pathlib.Path(dataset_dir) / SUMMARY_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no build summary (was the dataset built by "
                            "frldgt_jax.data.builders?)")
  return json.loads(path.read_text())


def format_summary(summary: dict[str, Any]) -> str:
  """A plain-text table of a build summary (what prepare_data prints)."""
  counts = summary["counts"]
  lines = [f"dataset {summary['dataset']}  config {summary['config'].get('name')}  "
           f"clips {counts['total']}"]
  classes = ("negative", "positive", "surprise", "none")
  lines.append(f"  {'database':<9}{'clips':>7}" + "".join(f"{c:>10}" for c in classes)
               + f"{'subjects':>10}")
  for db, n in counts["per_database"].items():
    per_class = counts["per_class"].get(db, {})
    lines.append(f"  {db:<9}{n:>7}" + "".join(f"{per_class.get(c, 0):>10}" for c in classes)
                 + f"{len(counts['per_subject'].get(db, {})):>10}")
  if summary.get("alignment_sources"):
    lines.append("  alignment: " + ", ".join(f"{k or '?'}: {n}" for k, n in
                                             summary["alignment_sources"].items()))
  for db, subjects in counts["per_subject"].items():
    lines.append(f"  {db} clips per subject: "
                 + ", ".join(f"{s}:{n}" for s, n in subjects.items()))
  lines.append(f"fixes applied: {len(summary['fixes'])}"
               + "".join(f"\n  {f['database']} {f['subject']} {f['sample']}: [{f['rule']}] "
                         f"{f['detail']}" for f in summary["fixes"]))
  lines.append(f"clips dropped: {len(summary['drops'])}"
               + "".join(f"\n  [{d['kind']}] {d['reason']}" for d in summary["drops"]))
  if summary.get("ignored_problems"):
    lines.append(f"problems in rows outside the composite list (not used, not fatal): "
                 f"{len(summary['ignored_problems'])}"
                 + "".join(f"\n  [{p['kind']}] {p['reason']}"
                           for p in summary["ignored_problems"]))
  return "\n".join(lines)


# ----------------------------------------------------------------------------- planning

@dataclasses.dataclass
class PlannedClip:
  """A clip that passed every check that needs no pixel: ready to load and align."""
  clip: ann_lib.ClipAnnotation
  label: int
  span: ann_lib.ClipFrames
  fixes: list[ann_lib.Fix]
  frame_numbers: np.ndarray            # [T] absolute frame numbers to store
  frame_paths: list[pathlib.Path]      # [T] files of those frames (cropped set in 'cropped')
  onset_raw_path: pathlib.Path | None  # RAW onset frame (detection); None in 'cropped'
  landmarks: Any                       # align.Landmarks from the landmark file ('landmarks')

  @property
  def key(self) -> str:
    return "/".join(self.clip.key)


def _frames_root(paths: clips_lib.DatasetPaths, alignment: str) -> pathlib.Path:
  return paths.cropped_root if alignment == "cropped" else paths.raw_root


def plan_database(manual_dir: str | os.PathLike, database: str, *, num_frames: int,
                  alignment: str, landmarks: dict | None = None,
                  wanted: dict[tuple[str, str, str], int] | None = None,
                  ) -> tuple[list[PlannedClip], list[ann_lib.DataProblem],
                             list[ann_lib.DataProblem]]:
  """Reads one database's annotations and checks every clip's frames on disk.

  `wanted` restricts the clips to these keys (database, subject, sample) and gives each its
  list label (composite). Returns (planned clips, problems, ignored problems); the ignored ones
  concern rows outside `wanted` and never fail a build.
  """
  paths = clips_lib.locate(manual_dir, database, use_cropped=alignment == "cropped",
                           need_raw=alignment != "cropped")
  root = _frames_root(paths, alignment)
  db = databases.get(database)
  annotated, problems = db.reader(root if db.labels_from_folders else paths.annotation)
  ignored = []
  if wanted is not None:
    wanted_samples = {key[2] for key in wanted if key[0] == database}
    ignored = [p for p in problems if p.sample is not None and (
        (p.database, p.subject, p.sample) not in wanted if p.subject is not None
        else p.sample not in wanted_samples)]
    problems = [p for p in problems if p not in ignored]
    annotated = [c for c in annotated if c.key in wanted]
  planned = []
  for clip in annotated:
    try:
      planned.append(_plan_clip(clip, root, alignment == "cropped", num_frames, alignment,
                                landmarks, wanted))
    except clips_lib.ClipError as e:
      # Annotated clips are named by their annotation row, SMIC clips by their folder.
      problems.append(clip.problem(e.kind, str(e), file=e.file, row=None)
                      if clip.row is None else clip.problem(e.kind, str(e)))
    except _PlanError as e:
      problems.append(e.problem)
  return planned, problems, ignored


class _PlanError(Exception):

  def __init__(self, problem: ann_lib.DataProblem):
    super().__init__(str(problem))
    self.problem = problem


def _plan_clip(clip: ann_lib.ClipAnnotation, root: pathlib.Path, cropped: bool, num_frames: int,
               alignment: str, landmarks: dict | None, wanted: dict | None) -> PlannedClip:
  # Clips found by scanning `root` (SMIC's HS/s1/micro/<emotion>/s1_ne_01): source is the folder.
  folder = (pathlib.Path(clip.source) if databases.get(clip.database).labels_from_folders
            else root / clip.subject_dir / clip.sample_dir)
  frames = clips_lib.list_frames(folder, clip.database)
  span, fixes = ann_lib.resolve_frames(clip, frames)
  clips_lib.check_span(frames, span.onset, span.apex, clip.database, folder, clip.subject_dir,
                       cropped)
  numbers = clips_lib.stored_frame_numbers(span.onset, span.apex, num_frames)
  label = clip.label
  if wanted is not None:
    listed = wanted[clip.key]
    if clip.label < 0:
      raise _PlanError(clip.problem(
          ann_lib.OUTSIDE_CLASSES, f"listed with label {listed} but the annotation's emotion "
          f"{clip.emotion!r} is outside the composite classes"))
    if listed != clip.label:
      fixes = fixes + [ann_lib.Fix(ann_lib.RULE_LABEL_FROM_ANNOTATION, f"list label {listed}, "
                                   f"annotation {clip.emotion!r} -> label {clip.label}")]
  lm = None
  if alignment in LANDMARK_ALIGNMENTS and landmarks is not None:
    lm = landmarks.get((clip.subject_dir, clip.sample_dir)) if landmarks else None
    if lm is None:
      raise _PlanError(clip.problem(ann_lib.NO_LANDMARKS, "no row for subject "
                                    f"{clip.subject_dir!r}, sample {clip.sample_dir!r} in the "
                                    "landmark file"))
  return PlannedClip(clip=clip, label=label, span=span, fixes=fixes, frame_numbers=numbers,
                     frame_paths=[frames[int(n)] for n in numbers],
                     onset_raw_path=None if alignment == "cropped" else frames[span.onset],
                     landmarks=lm)


def plan_composite(manual_dir: str | os.PathLike, composite_csv: str | os.PathLike, *,
                   num_frames: int, alignment: str, landmarks: dict | None = None,
                   ) -> tuple[list[PlannedClip], list[ann_lib.DataProblem],
                              list[ann_lib.DataProblem]]:
  """The clips of a composite list, from all databases it names (see plan_database)."""
  entries, problems = ann_lib.read_composite_list(composite_csv)
  wanted = {e.key: e.label for e in entries}
  planned, ignored = [], []
  for database in databases.NAMES:
    if not any(e.database == database for e in entries):
      continue
    got, bad, unused = plan_database(manual_dir, database, num_frames=num_frames,
                                     alignment=alignment, landmarks=landmarks, wanted=wanted)
    planned += got
    problems += bad
    ignored += unused
  found = {p.clip.key for p in planned}
  reported = {(p.database, p.sample) for p in problems}
  for e in entries:
    if e.key not in found and (e.database, e.sample) not in reported:
      problems.append(ann_lib.DataProblem(
          ann_lib.MISSING_CLIP, f"listed clip (subject {e.subject}) is not in the "
          f"{e.database} annotation source", str(composite_csv), e.row, e.database, e.subject,
          e.sample))
  return planned, problems, ignored


# ----------------------------------------------------------------------------- pixels

def load_aligned_frames(planned: PlannedClip, resolution: int, alignment: str
                        ) -> tuple[np.ndarray, str]:
  """uint8 [T, S, S, 1]: the stored frames, aligned by one transform from the onset frame.

  Also returns where the alignment came from: 'cropped' or the landmarks' source ('csv').

  Raises ClipError (unreadable image).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  from frldgt_jax.data import align  # pylint: disable=g-import-not-at-top
  if alignment == "cropped":
    out = [cv2.resize(clips_lib.load_gray(p), (resolution, resolution),
                      interpolation=cv2.INTER_AREA) for p in planned.frame_paths]
    source = "cropped"
  else:
    onset = clips_lib.load_gray(planned.onset_raw_path)
    points = planned.landmarks
    source = getattr(points, "source", "given")
    matrix = align.similarity_from_landmarks(points, resolution)
    cache: dict[pathlib.Path, np.ndarray] = {planned.onset_raw_path: onset}
    out = []
    for path in planned.frame_paths:
      if path not in cache:
        cache[path] = clips_lib.load_gray(path)
      out.append(np.asarray(align.align(cache[path], matrix, resolution)))
  frames = np.stack(out).astype(np.uint8)
  return frames.reshape(len(out), resolution, resolution, 1), source


# ----------------------------------------------------------------------------- builders

def _fps_doc() -> str:
  """'200 (CASME II, SAMM) or 100 (SMIC-HS)': the databases' frame rates."""
  by_fps: dict[int, list[str]] = {}
  for db in databases.ALL:
    by_fps.setdefault(db.fps, []).append(db.title)
  return " or ".join(f"{fps} ({', '.join(titles)})" for fps, titles in by_fps.items())


_FEATURE_DOCS = {
    "database": " | ".join(f"'{name}'" for name in databases.NAMES),
    "subject": "canonical subject: CASME II 'sub01', SAMM unpadded '6', SMIC 's01'",
    "sample": "canonical sample: 'EP02_01f', '006_1_2', 's01_ne_01'",
    "emotion": "the annotation's emotion text (SMIC: its emotion folder)",
    "label": "3-class composite label from the annotation: 0 negative, 1 positive, "
             "2 surprise, -1 outside the composite classes",
    "label5": "CASME II 5-class label: 0 happiness, 1 disgust, 2 repression, 3 surprise, "
              "4 others; -1 elsewhere",
    "onset_index": "absolute onset frame number",
    "apex_index": "absolute apex frame number (after the errata)",
    "offset_index": "absolute offset frame number (after the errata)",
    "fps": "frame rate: " + _fps_doc(),
    "frame_indices": "absolute frame number of each stored frame",
    "frames": "grayscale aligned frames from onset to apex inclusive, evenly spaced "
              "(frames[0] onset, frames[-1] apex)",
    "fixes": "JSON list of {rule, detail}: the errata applied to this clip",
}

class _MicroExpressionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared code of the four builders; see the module docstring for features and options."""

  VERSION = _VERSION
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "2.0.0": "Alignment 'landmarks68' (dlib) replaces 'detect' (Haar)."}
  BUILDER_CONFIGS = _PREDEFINED
  DEFAULT_CONFIG_NAME = config_name(DEFAULT_RESOLUTION, DEFAULT_FRAMES, "landmarks68")

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10's own code_path touches `importlib_resources`, a package it declares only for
    # Python < 3.9 (ModuleNotFoundError on 3.11); the module file is all it needs.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, options: BuildOptions | None = None, **kwargs):
    self._options = options or BuildOptions()
    self._summary: BuildSummary | None = None
    super().__init__(**kwargs)

  @property
  def options(self) -> BuildOptions:
    return self._options

  @property
  def summary(self) -> BuildSummary | None:
    """The summary of the last build by this builder object (None before a build)."""
    return self._summary

  def _info(self) -> tfds.core.DatasetInfo:
    t, s = self.builder_config.frames, self.builder_config.resolution
    doc = _FEATURE_DOCS
    text = lambda k: tfds.features.Text(doc=doc[k])
    scalar = lambda k: tfds.features.Scalar(np.int64, doc=doc[k])
    features = tfds.features.FeaturesDict({
        "database": text("database"), "subject": text("subject"), "sample": text("sample"),
        "emotion": text("emotion"), "label": scalar("label"), "label5": scalar("label5"),
        "onset_index": scalar("onset_index"), "apex_index": scalar("apex_index"),
        "offset_index": scalar("offset_index"), "fps": scalar("fps"),
        "frame_indices": tfds.features.Tensor(shape=(t,), dtype=np.int64,
                                              doc=doc["frame_indices"]),
        "frames": tfds.features.Tensor(shape=(t, s, s, 1), dtype=np.uint8,
                                       encoding=tfds.features.Encoding.ZLIB,
                                       doc=doc["frames"]),
        "fixes": text("fixes"),
    })
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                 disable_shuffling=True)

  def _plan(self, manual_dir: pathlib.Path, landmarks: dict | None):
    raise NotImplementedError

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    landmarks = None
    if config.alignment in LANDMARK_ALIGNMENTS:
      if not self._options.landmark_files:
        raise ValueError(f"config {config.name} aligns with a landmark file: pass "
                         "BuildOptions(landmarks_csv=...) (--landmarks)")
      landmarks = read_landmark_files(self._options.landmark_files)
    planned, problems, ignored = self._plan(pathlib.Path(dl_manager.manual_dir), landmarks)
    self._summary = BuildSummary(
        dataset=self.name, config={"name": config.name, "resolution": config.resolution,
                                   "frames": config.frames, "alignment": config.alignment,
                                   "manual_dir": str(dl_manager.manual_dir),
                                   "landmarks_csv": list(self._options.landmark_files),
                                   "allow_drops": self._options.allow_drops,
                                   **self._extra_summary_config()})
    self._summary.ignored = [{**p.to_json(), "reason": str(p)} for p in ignored]
    self._handle(problems)
    return {"train": self._generate_examples(planned)}

  def _extra_summary_config(self) -> dict[str, Any]:
    return {}

  def _handle(self, problems: Sequence[ann_lib.DataProblem]) -> None:
    if not problems:
      return
    if not self._options.allow_drops:
      raise ann_lib.DataError(problems, hint="Fix the input, or allow dropping these clips "
                              "(BuildOptions(allow_drops=True), --allow_drops); every drop is "
                              "then listed in the build summary.")
    for p in problems:
      self._summary.add_drop(p)

  def _generate_examples(self, planned: Sequence[PlannedClip]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    config = self.builder_config
    items = planned
    if self._options.progress:
      import tqdm  # pylint: disable=g-import-not-at-top
      items = tqdm.tqdm(planned, desc=f"{self.name} clips", unit="clip")
    for p in items:
      try:
        frames, source = load_aligned_frames(p, config.resolution, config.alignment)
      except clips_lib.ClipError as e:
        self._handle([p.clip.problem(e.kind, str(e), file=e.file, row=None)])
        continue
      self._summary.add_clip(p.clip, p.label, p.fixes, source)
      yield p.key, {
          "database": p.clip.database, "subject": p.clip.subject, "sample": p.clip.sample,
          "emotion": p.clip.emotion, "label": p.label, "label5": p.clip.label5,
          "onset_index": p.span.onset, "apex_index": p.span.apex,
          "offset_index": p.span.offset, "fps": p.clip.fps,
          "frame_indices": p.frame_numbers.astype(np.int64), "frames": frames,
          "fixes": json.dumps([f.to_json() for f in p.fixes]),
      }

  def _download_and_prepare(self, dl_manager, download_config=None):
    super()._download_and_prepare(dl_manager, download_config)
    # self.data_dir is the temporary folder TFDS renames on success, so the summary lands in
    # the final dataset folder together with the data.
    if self._summary is not None:
      path = pathlib.Path(self.data_dir) / SUMMARY_FILE
      path.write_text(json.dumps(self._summary.to_json(), indent=1))


class _SingleDatabaseBuilder(_MicroExpressionBuilder, skip_registration=True):
  _DATABASE = ""

  def _plan(self, manual_dir, landmarks):
    return plan_database(manual_dir, self._DATABASE, num_frames=self.builder_config.frames,
                         alignment=self.builder_config.alignment, landmarks=landmarks)


def registry_builder(base: type, db, module: str, doc: str) -> type:
  """A TFDS builder class for registry entry `db` (a Database or LongVideoDatabase): class
  `db.builder_class` of `module`, registered as `db.builder`, on `base`."""
  return type(db.builder_class, (base,), {
      "__module__": module, "__qualname__": db.builder_class, "__doc__": doc,
      "name": db.builder, "_DATABASE": db.name, "MANUAL_DOWNLOAD_INSTRUCTIONS": db.instructions})


def _database_builder(db: databases.Database) -> type:
  """The TFDS builder of one database's every clip (registered as `db.builder`)."""
  return registry_builder(_SingleDatabaseBuilder, db, __name__,
                          f"{db.title} micro-expression clips (every clip of its annotation "
                          "source); features: module doc.")


# One builder per database of the registry (classes Casme2Me, SammMe, SmicMe, ...).
_DATABASE_BUILDERS = {db.name: _database_builder(db) for db in databases.ALL}


class Megc2019Composite(_MicroExpressionBuilder):
  """The MEGC2019 3-class composite (CASME II + SAMM + SMIC-HS); features: module doc.

  The clips are those of `BuildOptions.composite_csv` (default: the shipped 442-clip list);
  labels come from the annotation files (a list label that differs is reported as a fix).
  """
  name = "megc2019_composite"
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("The MEGC2019 composite reads all three databases from one "
                                  "manual directory:\n"
                                  + "\n".join(db.instructions for db in databases.ALL))

  def _composite_csv(self) -> pathlib.Path:
    return pathlib.Path(self._options.composite_csv or default_composite_csv())

  def _extra_summary_config(self):
    return {"composite_csv": str(self._composite_csv())}

  def _plan(self, manual_dir, landmarks):
    return plan_composite(manual_dir, self._composite_csv(),
                          num_frames=self.builder_config.frames,
                          alignment=self.builder_config.alignment, landmarks=landmarks)


BUILDERS = {**_DATABASE_BUILDERS, "composite": Megc2019Composite}


def dataset_dir(data_dir: str | os.PathLike, dataset: str, *,
                resolution: int = DEFAULT_RESOLUTION, frames: int = DEFAULT_FRAMES,
                alignment: str = "landmarks68") -> pathlib.Path:
  """Where `build` puts a dataset: DATA_DIR/<builder name>/<config name>/<version>."""
  if dataset not in BUILDERS:
    raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
  return (pathlib.Path(data_dir) / BUILDERS[dataset].name
          / config_name(resolution, frames, alignment) / str(_VERSION))


def build(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
          resolution: int = DEFAULT_RESOLUTION, frames: int = DEFAULT_FRAMES,
          alignment: str = "landmarks68", options: BuildOptions | None = None,
          ) -> tuple[tfds.core.DatasetBuilder, dict[str, Any]]:
  """Builds one dataset ('casme2' | 'samm' | 'smic' | 'composite'); returns (builder, summary).

  An existing dataset with the same config is reused (its stored summary is returned).
  """
  if dataset not in BUILDERS:
    raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
  builder = BUILDERS[dataset](data_dir=os.fspath(data_dir),
                              config=me_config(resolution, frames, alignment), options=options)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder, read_build_summary(builder.data_dir)


def onset_frames(dataset: str, manual_dir: str | os.PathLike, *, frames: int = DEFAULT_FRAMES,
                 composite_csv: str | os.PathLike | None = None
                 ) -> dict[tuple[str, str], pathlib.Path]:
  """{(subject folder, sample folder): raw onset frame} of the clips `build` would store, for
  the application's landmark detector (the keys are those of a landmark CSV). Clips whose
  annotation or frames are faulty are left out: the build reports them."""
  if dataset not in BUILDERS:
    raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
  if dataset == "composite":
    planned, _, _ = plan_composite(manual_dir, composite_csv or default_composite_csv(),
                                   num_frames=frames, alignment="landmarks68")
  else:
    planned, _, _ = plan_database(manual_dir, dataset, num_frames=frames, alignment="landmarks68")
  return {(p.clip.subject_dir, p.clip.sample_dir): p.onset_raw_path for p in planned}
