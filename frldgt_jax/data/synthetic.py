"""A generated micro-expression corpus in the on-disk layouts of CASME II, SAMM and SMIC-HS.

The licensed databases cannot ship with the project; this corpus stands in for them in tests
and smoke runs. It is written exactly as the real downloads are laid out
(docs/frldgt.md, "Dataset layouts"; the names, folders and frame rates are the databases'
entries in databases.py), so the real readers and TFDS builders read it:

  OUT/CASME2-coding-20140508.xlsx          columns by position; apex "/" where unannotated
  OUT/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg       640x480 colour, 200 fps
  OUT/Cropped/sub01/EP02_01f/reg_img46.jpg               registered face crops
  OUT/SAMM_Micro_FACS_Codes_v2.xlsx        13 free-text rows, then the header row
  OUT/SAMM/006/006_1_2/006_05562.jpg       grayscale, 200 fps, 4- or 5-digit numbers
  OUT/SAMM_cropped/006/006_1_2/reg_006_05562.jpg  (SAMM ships no crops; the project's name
                                           for a user-made set, frldgt_jax/data/clips.py)
  OUT/SMIC/HS/s1/micro/negative/s1_ne_01/image076951.bmp  640x480 colour, 100 fps
  OUT/SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image076951.bmp
  OUT/landmarks_{casme2,samm,smic}.csv     true eye/mouth positions in each raw onset frame
  OUT/composite_3class.csv                 the composite list of the generated clips
  OUT/manifest.json                        every clip with its truth, and counts

Departures from the real data, on purpose: SAMM frames are 640x480 (the real ones are 2040x1088)
to keep the corpus small; clips are short (SMIC 9-11 frames, the others 15-23 plus a few context
frames) because the model only reads onset..apex.

What a clip contains: a procedurally drawn face (`faces.py`) with a per-subject identity, placed
with a per-clip head pose (roll up to 8 degrees, position, scale), whose class-specific action
units ramp up from onset to apex and back to neutral at offset (raised cosine):
  negative: brow lowerer AU4 + lip-corner depressor AU15
  positive: cheek raiser AU6 + lip-corner puller AU12
  surprise: brow raiser AU1+2 + jaw drop AU26
with a peak displacement of 1-3 pixels of a 128-pixel aligned crop per side. Outside the
composite (CASME II others/fear/sadness, SAMM Other): AU14, AU17, AU1+2 with AU20, AU1 with AU15.
Distractors (nuisances), each with its own switch and magnitude in CorpusConfig (NUISANCES;
defaults in brackets, raw pixels of a CASME II frame): rigid head drift, translation [0.625 px]
and in-plane rotation [0.15 deg] per axis, as a slow wave from the first frame; illumination
flicker [gain amplitude up to 0.012]; sensor noise [sigma up to 2.5 grey levels]; JPEG
compression [quality 92]; blinks [30% of clips, never at the onset]. The AU amplitude is a
magnitude too [up to 7.5 raw px, 3 px of a 128-px crop]. `distractors=False` switches every
nuisance off. Annotation faults of the real files are reproduced: a CASME II apex
cell "/", a SAMM offset cell below the onset (a dropped digit) and a SAMM apex outside
[onset, offset]; the true apex of those clips is the mid-point (onset + offset) // 2, so a reader
that follows the rules of docs/frldgt.md recovers the truth.

Everything is deterministic for a seed: each clip draws from its own
`np.random.default_rng([seed, database, subject, clip])`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import shutil
import time
import types
from typing import Callable, Sequence

import cv2
import numpy as np

from frldgt_jax.data import align as align_lib
from frldgt_jax.data import databases, faces

# The databases (of databases.py) this generator draws: each has its own names, frame spans and
# annotation writer below.
DATABASES = ("casme2", "samm", "smic")
CLASS_NAMES = databases.CLASS_NAMES
# Raw frame size (width, height). CASME II and SMIC-HS are 640x480 like the real ones; SAMM's
# real 2040x1088 is replaced by 640x480 to keep the corpus small.
FRAME_SIZE = {"casme2": (640, 480), "samm": (640, 480), "smic": (640, 480)}
# The nuisances of CorpusConfig, each with its magnitude field (and its default there).
NUISANCES = {"head_translation": "head_translation_px", "head_rotation": "head_rotation_deg",
             "illumination": "illumination_gain", "sensor_noise": "sensor_noise_sigma",
             "jpeg": "jpeg_quality", "blinks": "blink_rate"}
# CASME II's mean face scale (FACE_SCALE): the raw-pixel magnitudes are stated at this scale.
REFERENCE_SCALE = 320.0
# Face scale in raw pixels per template unit (the aligned crop's side): CASME II faces are
# about 280 px wide in the real frames, SMIC-HS about 190 px; SAMM is scaled down with its frame.
FACE_SCALE = {"casme2": (300.0, 340.0), "samm": (250.0, 290.0), "smic": (220.0, 260.0)}
# MEGC2019 composite clips per database and class (negative, positive, surprise), counted from
# frldgt_jax/data/megc2019_composite_3class.csv; the generated corpus keeps these proportions.
COMPOSITE_COUNTS = {"casme2": (88, 32, 25), "samm": (92, 26, 15), "smic": (70, 51, 43)}
# The composite's subjects, in its own spelling and order; more are numbered on from the last.
COMPOSITE_SUBJECTS = {
    "casme2": (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25,
               26),
    "samm": (6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 28, 30, 31,
             32, 33, 34, 35, 36, 37),
    "smic": (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20),
}
SAMM_PREAMBLE_ROWS = 13
SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes")
CASME2_HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion")
_TOP_LEVEL = tuple(name for d in DATABASES for name in (
    databases.get(d).annotation_file, databases.get(d).raw_root, databases.get(d).cropped_root,
    f"landmarks_{d}.csv") if name) + ("composite_3class.csv", "manifest.json")

# Action-unit patterns per emotion: (pattern names for faces.au_components, FACS text).
_CLASS_AUS = {0: (("AU4", "AU15"), "4+15"), 1: (("AU6", "AU12"), "6+12"),
              2: (("AU1+2", "AU26"), "1+2+26")}
_OUTSIDE_AUS = {"others": [(("AU14",), "14"), (("AU17",), "17")], "fear": [(("AU1+2", "AU20"),
                "1+2+20")], "sadness": [(("AU1", "AU15"), "1+15")]}
# SAMM objective classes (Davison et al. 2018): I happiness AUs, II surprise, III AU4 (anger),
# V AU1/AU15 (sadness), VI fear, VII others.
_SAMM_OBJECTIVE = {"4+15": 3, "6+12": 1, "1+2+26": 2, "14": 7, "17": 7, "1+2+20": 6, "1+15": 5}
# Negative emotion texts and their shares in the real annotation files.
_CASME2_NEGATIVE = (("disgust", 63), ("repression", 27))
_SAMM_NEGATIVE = (("Anger", 57), ("Contempt", 12), ("Disgust", 9), ("Fear", 8), ("Sadness", 6))


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """What to generate. Defaults: 4 subjects per database x 6 composite clips (72 clips in the
  composite's class proportions, about 41/18/13) plus 6 clips outside the composite."""
  subjects: int = 4                  # per database
  clips_per_subject: int = 6         # composite clips per subject
  seed: int = 0
  databases: tuple[str, ...] = DATABASES
  extra_clips: bool = True           # CASME II others/fear/sadness, SAMM Other (builders filter)
  faults: bool = True                # the real files' annotation faults (module docstring)
  cropped: bool = True               # Cropped/, SAMM_cropped/, SMIC_all_cropped/
  # Nuisances (distractors): one switch and one magnitude each (NUISANCES); `distractors` False
  # switches all of them off. Raw pixels are those of a CASME II 640 x 480 frame with the face at
  # REFERENCE_SCALE; the other databases' smaller faces get the same motion relative to their size.
  distractors: bool = True
  head_translation: bool = True
  head_translation_px: float = 0.625  # drift wave amplitude per axis, raw px (0.25 px at 128)
  head_rotation: bool = True
  head_rotation_deg: float = 0.15    # in-plane drift wave amplitude, degrees
  illumination: bool = True
  illumination_gain: float = 0.012   # flicker: upper end of the 100 Hz gain amplitude
  sensor_noise: bool = True
  sensor_noise_sigma: float = 2.5    # upper end of the Gaussian noise sigma, grey levels
  jpeg: bool = True
  jpeg_quality: int = 92             # the raw and cropped frames (off: quality 100)
  blinks: bool = True
  blink_rate: float = 0.3            # share of clips with a blink (never at the onset)
  au_amplitude_px: float = 7.5       # upper end of the AU peak displacement, raw px (3 px at 128)

  def __post_init__(self):
    if self.subjects < 1 or self.clips_per_subject < 1:
      raise ValueError(f"subjects and clips_per_subject must be >= 1, got {self.subjects}, "
                       f"{self.clips_per_subject}")
    for name in ("head_translation_px", "head_rotation_deg", "illumination_gain",
                 "sensor_noise_sigma", "au_amplitude_px"):
      if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
    if not 0 <= self.blink_rate <= 1:
      raise ValueError(f"blink_rate must lie in [0, 1], got {self.blink_rate}")
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
    unknown = [d for d in self.databases if d not in DATABASES]
    if unknown or not self.databases:
      raise ValueError(f"databases must be a non-empty subset of {DATABASES}, got "
                       f"{self.databases}")


  def nuisance_on(self, name: str) -> bool:
    """Whether nuisance `name` (one of NUISANCES) is applied."""
    return self.distractors and getattr(self, name)

  @property
  def written_jpeg_quality(self) -> int:
    return self.jpeg_quality if self.nuisance_on("jpeg") else 100


@dataclasses.dataclass
class ClipPlan:
  """One clip: names, label, frame numbers, what the annotation file says, and the truth."""
  database: str
  subject_dir: str
  sample_dir: str
  subject: str
  sample: str
  emotion: str
  label: int
  label5: int
  patterns: tuple[str, ...]
  action_units: str
  amplitudes: dict[str, tuple[float, float]]
  first: int
  onset: int
  apex: int
  offset: int
  last: int
  cells: dict[str, object] | None      # what the annotation file holds (None for SMIC)
  faults: list[dict[str, object]]
  rng_key: tuple[int, ...]
  extra: dict[str, object] = dataclasses.field(default_factory=dict)

  @property
  def in_composite(self) -> bool:
    return self.label >= 0


# ----------------------------------------------------------------------------- planning

def _allocate(total: int, weights: Sequence[float]) -> list[int]:
  """Largest-remainder split of `total` in proportion to `weights` (each class >= 1 if possible)."""
  w = np.asarray(weights, np.float64) / np.sum(weights)
  raw = total * w
  counts = np.floor(raw).astype(int)
  for i in np.argsort(-(raw - counts), kind="stable")[:total - counts.sum()]:
    counts[i] += 1
  if total >= len(w):
    for i in range(len(w)):
      while counts[i] == 0:
        counts[int(np.argmax(counts))] -= 1
        counts[i] += 1
  return counts.tolist()


def _subject_numbers(database: str, n: int) -> list[int]:
  known = list(COMPOSITE_SUBJECTS[database])
  return known[:n] + list(range(known[-1] + 1, known[-1] + 1 + max(0, n - len(known))))


def _weighted_choice(rng, options):
  names, weights = zip(*options)
  return names[rng.choice(len(names), p=np.asarray(weights, float) / np.sum(weights))]


def plan_corpus(config: CorpusConfig) -> list[ClipPlan]:
  """All clips of the corpus (no pixels yet), deterministic for `config.seed`."""
  plans = []
  for db_index, database in enumerate(DATABASES):
    if database not in config.databases:
      continue
    n_clips = config.subjects * config.clips_per_subject
    counts = _allocate(n_clips, COMPOSITE_COUNTS[database])
    labels = np.repeat(np.arange(3), counts)
    np.random.default_rng([config.seed, db_index]).shuffle(labels)
    for s_index, number in enumerate(_subject_numbers(database, config.subjects)):
      subject_labels = labels[s_index * config.clips_per_subject:
                              (s_index + 1) * config.clips_per_subject].tolist()
      plans += _plan_subject(config, db_index, database, s_index, number, subject_labels)
  return plans


def _plan_subject(config, db_index, database, s_index, number, labels) -> list[ClipPlan]:
  extras = []
  if config.extra_clips:
    if database == "casme2":
      extras = [("others", "others", "fear", "sadness")[s_index % 4]]
    elif database == "samm" and s_index % 2 == 0:
      extras = ["Other"]
  faulty = config.faults and s_index % 3 == 0
  names_used: set[str] = set()
  per_class_count = [0, 0, 0]
  plans = []
  entries = [(label, None) for label in labels] + [(-1, e) for e in extras]
  for c_index, (label, outside_emotion) in enumerate(entries):
    key = (config.seed, db_index, s_index, c_index)
    rng = np.random.default_rng(key)
    # Emotion text and AU pattern.
    if label >= 0:
      patterns, au_text = _CLASS_AUS[label]
      if database == "casme2":
        emotion = (_weighted_choice(rng, _CASME2_NEGATIVE) if label == 0
                   else ("", "happiness", "surprise")[label])
      elif database == "samm":
        emotion = _weighted_choice(rng, _SAMM_NEGATIVE) if label == 0 else (
            None, "Happiness", "Surprise")[label]
      else:
        emotion = CLASS_NAMES[label]
    else:
      emotion = outside_emotion
      options = _OUTSIDE_AUS["others" if emotion in ("others", "Other") else emotion]
      patterns, au_text = options[rng.integers(len(options))]
    label5 = databases.get(database).labels.get(emotion.lower(), (-1, -1))[1]
    # Drawn in 1-3 px of a 128-px crop, scaled so the upper end is au_amplitude_px raw pixels
    # of a CASME II face at REFERENCE_SCALE (faces follow their size in the other databases).
    k = config.au_amplitude_px * faces.AU_PIXELS / (3.0 * REFERENCE_SCALE)
    amplitudes = {p: (float(rng.uniform(1.0, 3.0) * k), float(rng.uniform(1.0, 3.0) * k))
                  for p in patterns}
    # Names.
    if database == "casme2":
      subject_dir = subject = f"sub{number:02d}"
      while True:
        name = f"EP{rng.integers(1, 20):02d}_{rng.integers(1, 12):02d}" + (
            "f" if rng.random() < 0.4 else "")
        if name not in names_used:
          break
      sample_dir = sample = name
    elif database == "samm":
      subject_dir, subject = f"{number:03d}", str(number)
      while True:
        name = f"{number:03d}_{rng.integers(1, 8)}_{rng.integers(1, 12)}"
        if name not in names_used:
          break
      sample_dir = sample = name
    else:
      subject_dir, subject = f"s{number}", f"s{number:02d}"
      short = ("ne", "po", "sur")[label]
      per_class_count[label] += 1
      sample_dir = f"s{number}_{short}_{per_class_count[label]:02d}"
      sample = f"{subject}_{short}_{per_class_count[label]:02d}"
    names_used.add(sample_dir)
    # Frames.
    faults: list[dict[str, object]] = []
    extra: dict[str, object] = {}
    if database == "smic":
      n = int(rng.choice([9, 11]))
      first = onset = int(rng.integers(1000, 150000))
      last = offset = onset + n - 1
      apex = (onset + offset) // 2
      cells = None
    else:
      rise, fall = int(rng.integers(8, 13)), int(rng.integers(6, 11))
      if database == "casme2":
        onset = int(rng.integers(1, 250))
        pre, post = (int(rng.integers(1, 3)) if rng.random() < 0.25 else 0), 0
      else:
        # Zero padding alternates 5/4 digits between clips; half of the 5-digit clips start
        # below frame 10000, so their names carry a leading zero (006_05562.jpg).
        extra["padding"] = 5 if c_index % 2 == 0 else 4
        low = extra["padding"] == 4 or c_index % 4 == 0
        onset = int(rng.integers(200, 9500) if low else rng.integers(10000, 30000))
        pre, post = int(rng.integers(1, 5)), int(rng.integers(0, 4))
      apex, offset = onset + rise, onset + rise + fall
      cells = {"onset": onset, "apex": apex, "offset": offset}
      fault = c_index if faulty else -1
      if database == "casme2" and fault == 1:
        apex = (onset + offset) // 2
        cells = {"onset": onset, "apex": "/", "offset": offset}
        faults.append({"column": "ApexFrame", "written": "/", "truth": apex})
      elif database == "samm" and fault == 1:
        post = 0  # the folder ends at the true offset
        written = int(str(offset)[:-1])
        cells = {"onset": onset, "apex": apex, "offset": written}
        faults.append({"column": "Offset Frame", "written": written, "truth": offset,
                       "note": "offset below onset (a dropped digit); the true offset is the "
                               "last frame in the folder"})
      elif database == "samm" and fault == 2:
        apex = (onset + offset) // 2
        written = apex + 1000
        cells = {"onset": onset, "apex": written, "offset": offset}
        faults.append({"column": "Apex Frame", "written": written, "truth": apex,
                       "note": "apex outside [onset, offset]; the true apex is the mid-point"})
      first, last = onset - pre, offset + post
    plans.append(ClipPlan(database, subject_dir, sample_dir, subject, sample, emotion, label,
                          label5, tuple(patterns), au_text, amplitudes, first, onset, apex,
                          offset, last, cells, faults, key, extra))
  return plans


# ----------------------------------------------------------------------------- rendering

def _intensity(t: int, onset: int, apex: int, offset: int) -> float:
  """Raised-cosine ramp: 0 at onset, 1 at apex, 0 again at offset."""
  if t <= onset or t >= offset:
    return 0.0
  if t <= apex:
    return 0.5 - 0.5 * math.cos(math.pi * (t - onset) / max(1, apex - onset))
  return 0.5 + 0.5 * math.cos(math.pi * (t - apex) / max(1, offset - apex))


def _pose_matrix(scale: float, roll_deg: float, centre: Sequence[float]) -> np.ndarray:
  """[2, 3] map from normalised template units to raw pixels (face centre (0.5, 0.5) -> centre)."""
  th = math.radians(roll_deg)
  rot = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
  shift = np.asarray(centre, np.float64) - rot @ np.array([0.5, 0.5])
  return np.concatenate([rot, shift[:, None]], axis=1)


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a o b for [2, 3] affine matrices."""
  return a @ np.vstack([b, [0.0, 0.0, 1.0]])


def _canvas_to_units_matrix() -> np.ndarray:
  k = 1.0 / faces.PIXELS_PER_UNIT
  return np.array([[k, 0, 0.5 * k + faces.CANVAS_X[0]], [0, k, 0.5 * k + faces.CANVAS_Y[0]]])


def _background(rng, size, colour: bool) -> np.ndarray:
  w, h = size
  base = rng.uniform(0.3, 0.7)
  tint = np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.9, 1.1)]) if colour else np.ones(3)
  ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
  blotch = cv2.resize(rng.standard_normal((6, 8)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)[:, :, None]
  bg = base * (1 + 0.08 * ys + 0.04 * blotch) * tint.astype(np.float32)
  return np.clip(bg, 0, 1).astype(np.float32)


def place_face(canvas: np.ndarray, units_to_raw: np.ndarray, background: np.ndarray
               ) -> np.ndarray:
  """A BGRA face canvas placed by `units_to_raw` over `background` (uint8 BGR or gray)."""
  matrix = _compose(units_to_raw, _canvas_to_units_matrix())
  size = (background.shape[1], background.shape[0])
  raw = cv2.warpAffine(canvas, matrix, size, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  weight = raw[:, :, 3].astype(np.float32) * np.float32(1 / 255)
  face = cv2.cvtColor(raw, cv2.COLOR_BGRA2BGR if background.ndim == 3 else cv2.COLOR_BGRA2GRAY)
  return cv2.blendLinear(face, background, weight, 1 - weight)


class Subject:
  """A subject's identity, drawing, and its uint8 BGRA canvases per eyelid closure."""

  def __init__(self, identity: faces.Identity):
    self.identity = identity
    self.drawing = faces.draw_face(identity)
    self._canvases: dict[int, np.ndarray] = {}

  def canvas(self, closure: float) -> np.ndarray:
    """uint8 [H, W, 4] BGRA canvas with the eyes closed by `closure` (in 1/32 steps)."""
    key = int(round(min(1.0, max(0.0, closure)) * 32))
    if key not in self._canvases:
      d = faces.add_eyelids(self.drawing, self.identity, key / 32)
      rgba = np.dstack([d.image, d.alpha]) * 255.0 + 0.5
      self._canvases[key] = np.clip(rgba, 0, 255).astype(np.uint8)
    return self._canvases[key]


class _Renderer:
  """Renders the frames of one clip into the raw frame (and the registered crop)."""

  def __init__(self, plan: ClipPlan, subject: Subject, config: CorpusConfig, noise_bank):
    self.plan, self.subject, self.config = plan, subject, config
    self.noise_bank = noise_bank
    rng = np.random.default_rng(plan.rng_key + (1,))
    database = plan.database
    self.size = FRAME_SIZE[database]
    self.colour = database != "samm"
    w, h = self.size
    scale = rng.uniform(*FACE_SCALE[database])
    roll = rng.uniform(-8.0, 8.0)
    th = math.radians(roll)
    half = scale * 0.56 * (abs(math.cos(th)) + abs(math.sin(th)))  # crop + margin, rotated
    room_x, room_y = max(0.0, min(60.0, w / 2 - half)), max(0.0, min(40.0, h / 2 - half))
    centre = (w / 2 + rng.uniform(-room_x, room_x), h / 2 + rng.uniform(-room_y, room_y))
    self.pose = {"scale_px_per_unit": float(scale), "roll_deg": float(roll),
                 "centre": [float(centre[0]), float(centre[1])]}
    self.units_to_raw = _pose_matrix(scale, roll, centre)
    background = _background(rng, self.size, self.colour) * 255.0 + 0.5
    if not self.colour:
      background = cv2.cvtColor(background, cv2.COLOR_BGR2GRAY)
    self.background = background.astype(np.uint8)
    self.components = []
    for pattern in plan.patterns:
      self.components += faces.au_components(subject.identity, pattern, plan.amplitudes[pattern])
    self.field_box = faces.field_box(self.components)
    n = plan.last - plan.first + 1
    fps = databases.get(database).fps
    d = {}
    on = config.nuisance_on
    self.drift = np.zeros((n, 3))
    self.closure = np.zeros(n)
    self.gain = np.ones(n)
    self.noise_sigma = 0.0
    if any(on(name) for name in NUISANCES):
      # Every nuisance's numbers are drawn whichever are on, so switching one off leaves the
      # others as they were. Rigid drift: a slow wave per axis, zero at the first frame (so at
      # most twice its amplitude between two frames). The amplitudes are set in CASME II raw
      # pixels at REFERENCE_SCALE and follow the face's size in the other databases.
      translation = config.head_translation_px / (0.25 * REFERENCE_SCALE / faces.AU_PIXELS)
      drift_px = rng.uniform(0.0, 0.25) * scale / faces.AU_PIXELS * translation
      drift_deg = rng.uniform(0.0, 0.15) * config.head_rotation_deg / 0.15
      freq, phase = rng.uniform(0.3, 1.5) / n, rng.uniform(0, 2 * math.pi, size=3)
      t = np.arange(n)
      wave = np.sin(2 * math.pi * freq * t[:, None] + phase) - np.sin(phase)
      if on("head_translation"):
        d["drift_px_aligned"] = float(drift_px * faces.AU_PIXELS / scale)
        d["drift_px_raw"] = float(drift_px)
        self.drift[:, :2] = drift_px * wave[:, :2]
      if on("head_rotation"):
        d["drift_deg"] = float(drift_deg)
        self.drift[:, 2] = drift_deg * wave[:, 2]
      # Blink: a share blink_rate of the clips, peak after onset, closure 0 at and before it.
      if rng.random() < config.blink_rate:
        half_width = rng.uniform(3, 8) * fps / 200
        centre_t = rng.uniform(plan.onset - plan.first + half_width, n + half_width / 2)
        peak = rng.uniform(0.4, 1.0)
        if on("blinks"):
          x = np.clip(np.abs(t - centre_t) / half_width, 0, 1)
          self.closure = peak * (0.5 + 0.5 * np.cos(math.pi * x))
          d["blink"] = {"peak_frame": float(plan.first + centre_t), "closure": float(peak)}
      # Flicker: mains (100 Hz) and a slow beat, plus per-frame jitter, all scaled by
      # illumination_gain (the mains amplitude's upper end).
      k = config.illumination_gain / 0.012
      a1, a2 = rng.uniform(0.003, 0.012) * k, rng.uniform(0.0, 0.01) * k
      f2 = rng.uniform(2, 20)
      p1, p2 = rng.uniform(0, 2 * math.pi, size=2)
      gain = (1 + a1 * np.sin(2 * math.pi * 100 * t / fps + p1)
              + a2 * np.sin(2 * math.pi * f2 * t / fps + p2)
              + rng.normal(0, 0.002, size=n) * k)
      if on("illumination"):
        self.gain = gain
        d["flicker"] = [float(a1), float(a2)]
      noise_sigma = float(rng.uniform(1.0, 2.5)) * config.sensor_noise_sigma / 2.5
      if on("sensor_noise"):
        self.noise_sigma = noise_sigma
        d["noise_sigma"] = self.noise_sigma
      self.noise_offsets = rng.integers(0, 32, size=(n, 2))
    self.distractors = d
    onset_matrix = self._frame_matrix(plan.onset - plan.first)
    lm = subject.identity.landmarks
    self.landmarks = lm @ onset_matrix[:, :2].T + onset_matrix[:, 2]
    # Registered crop (the datasets' Cropped sets): rotation removed, raw scale, from onset.
    crop_w, crop_h = int(round(0.92 * scale)), int(round(0.90 * scale))
    target = (np.asarray(align_lib.TEMPLATE) - np.array([0.04, 0.10])) * scale - 0.5
    self.crop_matrix = align_lib.fit_similarity(self.landmarks, target)
    self.crop_size = (crop_w, crop_h)

  def _frame_matrix(self, i: int) -> np.ndarray:
    """Normalised units -> raw pixels at frame i (pose plus drift about the face centre)."""
    dx, dy, ddeg = self.drift[i]
    cx, cy = self.units_to_raw @ np.array([0.5, 0.5, 1.0])
    jitter = cv2.getRotationMatrix2D((float(cx), float(cy)), -float(ddeg), 1.0)
    jitter[:, 2] += (dx, dy)
    return _compose(jitter, self.units_to_raw)

  def frame(self, i: int) -> np.ndarray:
    """Raw frame i (0 = first frame in the folder) as uint8 BGR [H, W, 3] or gray [H, W]."""
    plan = self.plan
    canvas = self.subject.canvas(self.closure[i])
    scale = _intensity(plan.first + i, plan.onset, plan.apex, plan.offset)
    if scale > 0:
      field = faces.displacement_field(self.components, scale, self.field_box)
      canvas = faces.warp_forward(canvas, field, self.field_box)
    image = place_face(canvas, self._frame_matrix(i), self.background)
    if self.noise_sigma > 0:
      ox, oy = self.noise_offsets[i]
      h, w = image.shape[:2]
      noise = self.noise_bank[oy:oy + h, ox:ox + w]
      return cv2.addWeighted(image, float(self.gain[i]), noise, self.noise_sigma, 0.0,
                             dtype=cv2.CV_8U)
    return cv2.addWeighted(image, float(self.gain[i]), image, 0.0, 0.0)

  def cropped(self, frame: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(frame, self.crop_matrix, self.crop_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# ----------------------------------------------------------------------------- the true motion

@dataclasses.dataclass(frozen=True)
class TrueMotion:
  """The onset -> apex displacement the generator drew, in a clip's stored (aligned) frame.

  Both fields are float32 [S, S, 2], (dx, dy) in stored pixels, in the DGM's convention
  (frldgt_jax.warp): the apex pixel p shows the onset at p + field(p).
    total: what the stored frames hold: the action units' displacement plus the head motion
      that alignment (one transform per clip, from the onset) leaves between onset and apex.
    au:    the action units' displacement alone (the head held at its onset pose).
  Blinks change how the eyes look, not where anything is: neither field holds them.
  """
  total: np.ndarray
  au: np.ndarray


def _stored_grid(size: int) -> np.ndarray:
  """Pixel centres (x, y) of a size x size image, float64 [S, S, 2]."""
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
  return np.stack([xs, ys], axis=-1)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """[2, 3] affine map of points [..., 2]."""
  return points @ matrix[:, :2].T + matrix[:, 2]


def _stored_to_raw(renderer: "_Renderer", size: int, alignment: str,
                   landmarks: np.ndarray) -> np.ndarray:
  """The [2, 3] map from a stored pixel to the raw frame, as the TFDS builder aligned the clip."""
  if alignment == "landmarks":
    return cv2.invertAffineTransform(align_lib.similarity_from_landmarks(landmarks, size))
  if alignment == "cropped":
    # The builder resizes the registered crop to S x S (pixel centres: (x + 0.5) w / S - 0.5).
    w, h = renderer.crop_size
    resize = np.array([[w / size, 0.0, 0.5 * w / size - 0.5], [0.0, h / size, 0.5 * h / size - 0.5]])
    return _compose(cv2.invertAffineTransform(renderer.crop_matrix), resize)
  raise ValueError(f"the true motion is known for the alignments 'landmarks' (the corpus's "
                   f"landmark CSV) and 'cropped'; got {alignment!r} (a detector's landmarks "
                   f"are not the ones the corpus drew)")


def _neutral_canvas_points(renderer: "_Renderer", field: np.ndarray,
                           points: np.ndarray, iterations: int = 3) -> np.ndarray:
  """Where the content at canvas `points` [S, S, 2] of the apex canvas was on the neutral one.

  The inverse of faces.warp_forward's map q -> q + field(q), by the same fixed-point iteration
  q <- x - field(q) the renderer uses (field bilinear inside its box, zero outside).
  """
  x0, y0 = renderer.field_box[:2]
  def field_at(q):
    return cv2.remap(field, (q[..., 0] - x0).astype(np.float32),
                     (q[..., 1] - y0).astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float64)
  q = points - field_at(points)
  for _ in range(iterations):
    q = points - field_at(q)
  return q


def clip_true_motion(renderer: "_Renderer", size: int, alignment: str = "landmarks",
                     landmarks: np.ndarray | None = None) -> TrueMotion:
  """The TrueMotion of the clip `renderer` draws, stored at `size` x `size` by `alignment`.

  `landmarks`: the onset landmarks the builder aligned on (default: the drawn ones; the corpus's
  CSV holds them rounded to 1e-3 pixel).
  """
  plan = renderer.plan
  landmarks = renderer.landmarks if landmarks is None else np.asarray(landmarks, np.float64)
  to_raw = _stored_to_raw(renderer, size, alignment, landmarks)
  to_stored = cv2.invertAffineTransform(to_raw)
  grid = _stored_grid(size)
  raw = _apply(to_raw, grid)
  canvas_to_raw = {i: _compose(renderer._frame_matrix(i), _canvas_to_units_matrix())
                   for i in (plan.onset - plan.first, plan.apex - plan.first)}
  onset_pose, apex_pose = canvas_to_raw[plan.onset - plan.first], canvas_to_raw[
      plan.apex - plan.first]
  intensity = _intensity(plan.apex, plan.onset, plan.apex, plan.offset)
  field = faces.displacement_field(renderer.components, intensity, renderer.field_box)
  def onset_position(apex_canvas_to_raw):
    canvas = _apply(cv2.invertAffineTransform(apex_canvas_to_raw), raw)
    neutral = _neutral_canvas_points(renderer, field, canvas)
    return _apply(to_stored, _apply(onset_pose, neutral))
  total = onset_position(apex_pose) - grid
  au = onset_position(onset_pose) - grid
  return TrueMotion(total.astype(np.float32), au.astype(np.float32))


def true_motion(corpus_dir: str | os.PathLike, size: int, alignment: str = "landmarks",
                keys: Sequence[tuple[str, str]] | None = None) -> dict[tuple[str, str], TrueMotion]:
  """The TrueMotion of a generated corpus's clips, keyed (database, sample) as the TFDS records.

  The corpus is re-planned from its manifest's config (the frames are not read); `keys` selects
  clips (default: every clip). Alignment 'landmarks' uses the corpus's landmark CSV, as the
  builder does.
  """
  manifest = read_manifest(corpus_dir)
  fields = dict(manifest["config"])
  fields["databases"] = tuple(fields["databases"])
  config = CorpusConfig(**fields)
  wanted = None if keys is None else set(map(tuple, keys))
  identities: dict[tuple[str, str], object] = {}
  landmark_files: dict[str, dict] = {}
  out = {}
  for plan in plan_corpus(config):
    key = (plan.database, plan.sample)
    if wanted is not None and key not in wanted:
      continue
    subject = (plan.database, plan.subject_dir)
    if subject not in identities:
      # The identity alone: the drawing (the slow part of Subject) is not needed.
      identity = faces.random_identity(np.random.default_rng(plan.rng_key[:3] + (10**6,)))
      identities[subject] = types.SimpleNamespace(identity=identity)
    renderer = _Renderer(plan, identities[subject], config, None)
    landmarks = None
    if alignment == "landmarks":
      if plan.database not in landmark_files:
        info = manifest["databases"][plan.database]
        landmark_files[plan.database] = align_lib.read_landmarks_csv(
            pathlib.Path(corpus_dir) / info["landmarks"])
      landmarks = landmark_files[plan.database][(plan.subject_dir, plan.sample_dir)].as_array()
    out[key] = clip_true_motion(renderer, size, alignment, landmarks)
  if wanted is not None and wanted - set(out):
    raise KeyError(f"clips not in the corpus {corpus_dir}: {sorted(wanted - set(out))[:5]}")
  return out


# ----------------------------------------------------------------------------- writing

def _frame_name(plan: ClipPlan, number: int) -> str:
  return databases.get(plan.database).frame_file(number, plan.subject_dir,
                                                  plan.extra.get("padding"))


def _clips_root(database: str, cropped: bool) -> str:
  """The folder holding a database's subject folders, relative to the corpus root."""
  db = databases.get(database)
  return "/".join(filter(None, (db.cropped_root if cropped else db.raw_root, db.clips_under)))


def clip_dirs(plan: ClipPlan) -> tuple[str, str]:
  """(raw folder, cropped folder) of a clip, relative to the corpus root."""
  tail = f"{plan.subject_dir}/{plan.sample_dir}"
  if databases.get(plan.database).labels_from_folders:  # SMIC: s1/micro/negative/s1_ne_01
    tail = f"{plan.subject_dir}/micro/{CLASS_NAMES[plan.label]}/{plan.sample_dir}"
  return (f"{_clips_root(plan.database, False)}/{tail}",
          f"{_clips_root(plan.database, True)}/{tail}")


def _write_image(path: pathlib.Path, image: np.ndarray, quality: int) -> None:
  params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
  ok, data = cv2.imencode(path.suffix, image, params)
  if not ok:
    raise OSError(f"OpenCV could not encode {path}")
  data.tofile(path)


def _write_casme2_xlsx(path: pathlib.Path, plans: Sequence[ClipPlan]) -> None:
  import openpyxl  # pylint: disable=g-import-not-at-top
  book = openpyxl.Workbook()
  sheet = book.active
  sheet.title = "Sheet1"
  sheet.append(list(CASME2_HEADER))
  for p in plans:
    sheet.append([int(p.subject_dir[3:]), p.sample_dir, None, p.cells["onset"], p.cells["apex"],
                  p.cells["offset"], None, p.action_units, p.emotion])
  book.save(path)


def _write_samm_xlsx(path: pathlib.Path, plans: Sequence[ClipPlan]) -> None:
  import openpyxl  # pylint: disable=g-import-not-at-top
  book = openpyxl.Workbook()
  sheet = book.active
  sheet.title = "MICRO_ONLY"
  preamble = [
      "SAMM - Spontaneous Actions and Micro-Movements (synthetic stand-in)",
      "Generated by frldgt_jax.data.synthetic; faces are drawn, not recorded.",
      "FACS coding of micro-movements, version 2 layout.",
      "Subject: participant number (folder name, zero padded to 3 digits).",
      "Filename: subject_inducement_clip, the clip folder name.",
      "Inducement Code: the stimulus video that induced the movement.",
      "Onset, Apex and Offset Frame: absolute frame numbers (the number in the image names).",
      "Duration: Offset Frame - Onset Frame + 1.",
      "Micro: 'Micro - 1/2' for movements under half a second.",
      "Action Units: FACS codes joined by '+'.",
      "Estimated Emotion: the emotion the coders estimated.",
      "Objective Classes: I-VII of Davison et al. (2018), as 1-7.",
      "Notes: coder notes.",
  ]
  assert len(preamble) == SAMM_PREAMBLE_ROWS
  for line in preamble:
    sheet.append([line])
  sheet.append(list(SAMM_HEADER))
  for p in plans:
    inducement = int(p.sample_dir.split("_")[1])
    duration = p.offset - p.onset + 1
    notes = "; ".join(f"{f['column']} typed as {f['written']}" for f in p.faults) or None
    sheet.append([p.subject_dir, p.sample_dir, inducement, p.cells["onset"], p.cells["apex"],
                  p.cells["offset"], duration, "Micro - 1/2", p.action_units, p.emotion,
                  _SAMM_OBJECTIVE[p.action_units], None if notes is None else "check " + notes])
  # Subject cells are text ('006'), as in the folder names.
  for row in sheet.iter_rows(min_row=SAMM_PREAMBLE_ROWS + 2, max_col=1):
    row[0].number_format = "@"
  book.save(path)


def _clip_entry(plan: ClipPlan, renderer: _Renderer, n_frames: int) -> dict:
  raw_dir, cropped_dir = clip_dirs(plan)
  return {
      "database": plan.database,
      "subject_native": plan.subject_dir,
      "sample_native": plan.sample_dir,
      "subject": plan.subject,
      "sample": plan.sample,
      "label": plan.label,
      "label_name": CLASS_NAMES[plan.label] if plan.label >= 0 else "none",
      "label5": plan.label5,
      "emotion": plan.emotion,
      "in_composite": plan.in_composite,
      "action_units": plan.action_units,
      "au_amplitudes_px128": {k: list(v) for k, v in plan.amplitudes.items()},
      "onset_index": plan.onset,
      "apex_index": plan.apex,
      "offset_index": plan.offset,
      "fps": databases.get(plan.database).fps,
      "n_frames": n_frames,
      "first_frame": plan.first,
      "last_frame": plan.last,
      "raw_dir": raw_dir,
      "cropped_dir": cropped_dir,
      "frame_name_example": _frame_name(plan, plan.onset),
      "annotation_cells": plan.cells,
      "apex_annotated": plan.database != "smic" and not isinstance(
          (plan.cells or {}).get("apex"), str),
      "faults": plan.faults,
      "landmarks_onset": np.round(renderer.landmarks, 3).tolist(),
      "pose": renderer.pose,
      "distractors": renderer.distractors,
  }


def _counts(clips: Sequence[dict]) -> dict:
  def tally(entries):
    out = {"clips": len(entries), "composite": sum(e["in_composite"] for e in entries)}
    for name in CLASS_NAMES:
      out[name] = sum(e["label_name"] == name for e in entries)
    out["outside"] = out["clips"] - out["composite"]
    return out
  per_subject = {}
  for e in clips:
    per_subject.setdefault(f"{e['database']}/{e['subject']}", []).append(e)
  return {
      **tally(clips),
      "per_database": {d: tally([e for e in clips if e["database"] == d])
                       for d in DATABASES if any(e["database"] == d for e in clips)},
      "per_subject": {k: tally(v) for k, v in per_subject.items()},
  }


def _prepare_out(out: pathlib.Path, overwrite: bool) -> None:
  if out.exists() and any(out.iterdir()):
    ours = [out / name for name in _TOP_LEVEL if (out / name).exists()]
    others = [p.name for p in out.iterdir() if p not in ours]
    if not overwrite:
      raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace a "
                            f"generated corpus there")
    if others:
      raise FileExistsError(f"{out} holds files that are not a generated corpus ({others[:5]}); "
                            f"refusing to overwrite")
    for path in ours:
      shutil.rmtree(path) if path.is_dir() else path.unlink()
  out.mkdir(parents=True, exist_ok=True)


def generate_corpus(out_dir: str | os.PathLike, config: CorpusConfig = CorpusConfig(),
                    overwrite: bool = False,
                    progress: Callable[[int, int, ClipPlan], None] | None = None) -> dict:
  """Writes the corpus under `out_dir` (module docstring) and returns its manifest.

  Args:
    out_dir: corpus root; must be empty or absent (or hold an earlier corpus and `overwrite`).
    config: what to generate.
    overwrite: replace an earlier generated corpus in `out_dir`.
    progress: called as progress(done, total, plan) after each clip.
  """
  out = pathlib.Path(out_dir)
  _prepare_out(out, overwrite)
  start = time.time()
  plans = plan_corpus(config)
  subjects: dict[tuple[str, str], Subject] = {}
  noise_banks = {}
  clips, landmarks = [], {d: {} for d in DATABASES}
  for done, plan in enumerate(plans, start=1):
    key = (plan.database, plan.subject_dir)
    if key not in subjects:
      identity = faces.random_identity(np.random.default_rng(plan.rng_key[:3] + (10**6,)))
      subjects[key] = Subject(identity)
    if plan.database not in noise_banks:
      w, h = FRAME_SIZE[plan.database]
      bank_rng = np.random.default_rng((config.seed, DATABASES.index(plan.database), 10**6))
      channels = 3 if plan.database != "samm" else 1
      noise_banks[plan.database] = bank_rng.standard_normal((h + 32, w + 32, channels),
                                                            np.float32).squeeze()
    renderer = _Renderer(plan, subjects[key], config, noise_banks[plan.database])
    raw_dir, cropped_dir = clip_dirs(plan)
    (out / raw_dir).mkdir(parents=True, exist_ok=True)
    if config.cropped:
      (out / cropped_dir).mkdir(parents=True, exist_ok=True)
    for i, number in enumerate(range(plan.first, plan.last + 1)):
      frame = renderer.frame(i)
      name = _frame_name(plan, number)
      _write_image(out / raw_dir / name, frame, config.written_jpeg_quality)
      if config.cropped:
        _write_image(out / cropped_dir / ("reg_" + name), renderer.cropped(frame),
                     config.written_jpeg_quality)
    entry = _clip_entry(plan, renderer, plan.last - plan.first + 1)
    if not config.cropped:
      entry["cropped_dir"] = None
    clips.append(entry)
    landmarks[plan.database][(plan.subject_dir, plan.sample_dir)] = renderer.landmarks
    if progress:
      progress(done, len(plans), plan)

  written = {}
  for database in DATABASES:
    db_plans = [p for p in plans if p.database == database]
    if not db_plans:
      continue
    db = databases.get(database)
    info = {"fps": db.fps, "frame_size": list(FRAME_SIZE[database]),
            "colour": database != "samm", "landmarks": f"landmarks_{database}.csv",
            "annotation": db.annotation_file, "raw_root": _clips_root(database, False),
            "cropped_root": _clips_root(database, True) if config.cropped else None}
    if database == "casme2":
      _write_casme2_xlsx(out / db.annotation_file, db_plans)
    elif database == "samm":
      _write_samm_xlsx(out / db.annotation_file, db_plans)
    align_lib.write_landmarks_csv(out / info["landmarks"], landmarks[database])
    written[database] = info

  with open(out / "composite_3class.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["dataset", "subject", "sample", "label"])
    for e in clips:
      if e["in_composite"]:
        writer.writerow([e["database"], e["subject"], e["sample"], e["label"]])

  manifest = {
      "generator": "frldgt_jax.data.synthetic",
      "config": {**dataclasses.asdict(config), "databases": list(config.databases)},
      "class_names": list(CLASS_NAMES),
      "casme2_classes": list(databases.CASME2_CLASS_NAMES),
      "databases": written,
      "composite_list": "composite_3class.csv",
      "counts": _counts(clips),
      "seconds": round(time.time() - start, 2),
      "clips": clips,
  }
  with open(out / "manifest.json", "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def read_manifest(corpus_dir: str | os.PathLike) -> dict:
  """The manifest.json of a generated corpus."""
  path = pathlib.Path(corpus_dir) / "manifest.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no manifest (is {corpus_dir} a generated corpus?)")
  with open(path, encoding="utf-8") as f:
    return json.load(f)
