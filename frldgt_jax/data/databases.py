"""The micro-expression databases this project reads: one entry per database, every fact in one place.

Each `Database` holds the frame rate, the annotation file (its released name and how it is
found), the frame folders (raw and cropped), the frame-name pattern, the reader that parses the
annotation source, the build instructions, and the class mapping from the annotation's emotion
to the labels. Annotations (annotations.py), frame files (clips.py), the TFDS builders
(builders.py), the generated corpus (synthetic.py), users' frame folders (frldgt_jax/video.py) and
launch/prepare_data.py read these entries; adding a database is one entry here plus its reader
(docs/frldgt.md, "Adding a database").

Layouts and names: docs/frldgt.md, "Dataset layouts" and "Micro-expression conventions".

Labels (docs/frldgt.md, "The MEGC2019 composite protocol"): `label` is the 3-class composite
label (0 negative, 1 positive, 2 surprise; -1 outside the composite), `label5` CASME II's 5-class
label (0 happiness, 1 disgust, 2 repression, 3 surprise, 4 others; -1 elsewhere; CASME II's fear
and sadness clips are outside the standard 5-class protocol's 246 clips).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping

from frldgt_jax.data import annotations

# MEGC2019 composite classes (the index is `label`) and CASME II's 5 classes (`label5`).
CLASS_NAMES = ("negative", "positive", "surprise")
CASME2_CLASS_NAMES = ("happiness", "disgust", "repression", "surprise", "others")
# The cropped sets' frames carry their raw frame's name behind this prefix.
CROPPED_PREFIX = "reg_"


@dataclasses.dataclass(frozen=True)
class Database:
  """One micro-expression database: where its pieces are and how they are read.

  Attributes:
    name: the canonical name ('casme2'), stored in every example's `database` feature.
    title: how people write it ('CASME II').
    fps: frame rate of the recordings.
    builder: the TFDS builder's registered name ('casme2_me'); `builder_class` its class name.
    annotation_file: the annotation file's released name (what the generated corpus writes);
      None when the database has none (its labels come from folders).
    annotation_glob: how the annotation file is found under the manual directory
      (case-insensitive glob); None with annotation_file.
    raw_root, cropped_root: the folders of the raw frames and of the cropped set, found under the
      manual directory (the cropped set may be this project's convention, e.g. SAMM's).
    clips_under: the folder inside either root that holds the subject folders ('' for the root
      itself; SMIC's 'HS').
    frame_regex: a frame file's name after the cropped prefix, the frame number as group 1.
    frame_name: the name a frame is written with: a format of `number`, `subject_dir` and
      `padding` (one of frame_paddings).
    frame_paddings: the zero paddings of the number seen in the released names (the first is
      the usual one; () when the format fixes it).
    frame_example: one real frame name (for messages).
    loose_frame_names: the pattern can match other databases' names too: tried last when a
      folder's naming is guessed.
    reader: parses the annotation source into (clips, problems): called with the annotation
      file, or with the frame root (after clips_under) when there is no annotation file.
    labels: the annotation's emotion (lower case) -> (label, label5).
    instructions: what to put in the manual directory (the TFDS builder's instructions).
  """
  name: str
  title: str
  fps: int
  builder: str
  builder_class: str
  annotation_file: str | None
  annotation_glob: str | None
  raw_root: str
  cropped_root: str
  clips_under: str
  frame_regex: str
  frame_name: str
  frame_paddings: tuple[int, ...]
  frame_example: str
  loose_frame_names: bool
  reader: Callable
  labels: Mapping[str, tuple[int, int]]
  instructions: str

  @property
  def frame_pattern(self) -> re.Pattern:
    """A raw or cropped frame's file name; group 1 is the frame number."""
    return re.compile(rf"^(?:{re.escape(CROPPED_PREFIX)})?{self.frame_regex}", re.IGNORECASE)

  @property
  def labels_from_folders(self) -> bool:
    """No annotation file: the reader scans the frame folders, and a clip's source is its folder."""
    return self.annotation_glob is None

  def frame_file(self, number: int, subject_dir: str = "", padding: int | None = None,
                 cropped: bool = False) -> str:
    """The file name of frame `number` (cropped: with the cropped prefix)."""
    padding = padding if padding is not None else (self.frame_paddings or (0,))[0]
    name = self.frame_name.format(number=number, subject_dir=subject_dir, padding=padding)
    return (CROPPED_PREFIX if cropped else "") + name


# MEGC2019 composite (docs/frldgt.md): negative = repression, anger, contempt, disgust, fear,
# sadness; in CASME II only disgust and repression count as negative.
CASME2 = Database(
    name="casme2", title="CASME II", fps=200, builder="casme2_me", builder_class="Casme2Me",
    annotation_file="CASME2-coding-20140508.xlsx", annotation_glob="casme2-coding*.xlsx",
    raw_root="CASME2_RAW_selected", cropped_root="Cropped", clips_under="",
    frame_regex=r"img(\d+)\.(?:jpg|jpeg|png|bmp)$", frame_name="img{number}.jpg",
    frame_paddings=(), frame_example="img46.jpg", loose_frame_names=False,
    reader=annotations.read_casme2_xlsx,
    labels={"happiness": (1, 0), "disgust": (0, 1), "repression": (0, 2), "surprise": (2, 3),
            "others": (-1, 4), "fear": (-1, -1), "sadness": (-1, -1)},
    instructions="CASME II: put `CASME2-coding-*.xlsx` and the frame folder "
                 "`CASME2_RAW_selected/` (sub01/EP02_01f/img46.jpg) in the manual directory (or "
                 "up to 3 levels below); for alignment 'cropped', the dataset's `Cropped/` folder "
                 "(sub01/EP02_01f/reg_img46.jpg).")

# SAMM's zero padding varies between clips (4 or 5 digits): the folder is listed and the number
# after the last "_" parsed. SAMM ships no cropped set; 'SAMM_cropped' (same layout as SAMM/) is
# this project's convention for a user-made one.
SAMM = Database(
    name="samm", title="SAMM", fps=200, builder="samm_me", builder_class="SammMe",
    annotation_file="SAMM_Micro_FACS_Codes_v2.xlsx", annotation_glob="samm_micro_facs_codes*.xlsx",
    raw_root="SAMM", cropped_root="SAMM_cropped", clips_under="",
    frame_regex=r".*_(\d+)\.(?:jpg|jpeg|png|bmp)$", frame_name="{subject_dir}_{number:0{padding}d}.jpg",
    frame_paddings=(5, 4), frame_example="006_05562.jpg", loose_frame_names=True,
    reader=annotations.read_samm_xlsx,
    labels={"anger": (0, -1), "contempt": (0, -1), "disgust": (0, -1), "fear": (0, -1),
            "sadness": (0, -1), "happiness": (1, -1), "surprise": (2, -1), "other": (-1, -1),
            "others": (-1, -1)},
    instructions="SAMM: put `SAMM_Micro_FACS_Codes_v2.xlsx` and the frame folder `SAMM/` "
                 "(006/006_1_2/006_05562.jpg) in the manual directory (or up to 3 levels below); "
                 "for alignment 'cropped', a `SAMM_cropped/` folder with the same layout.")

# SMIC-HS ships no annotation file: HS/s1/micro/{negative,positive,surprise}/s1_ne_01/ gives the
# label, and the clip spans the frames on disk.
SMIC = Database(
    name="smic", title="SMIC-HS", fps=100, builder="smic_me", builder_class="SmicMe",
    annotation_file=None, annotation_glob=None,
    raw_root="SMIC", cropped_root="SMIC_all_cropped", clips_under="HS",
    frame_regex=r"image(\d+)\.(?:bmp|jpg|jpeg|png)$", frame_name="image{number:06d}.bmp",
    frame_paddings=(), frame_example="image000123.bmp", loose_frame_names=False,
    reader=annotations.scan_smic,
    labels={"negative": (0, -1), "positive": (1, -1), "surprise": (2, -1)},
    instructions="SMIC-HS: put `SMIC/HS/` (s1/micro/negative/s1_ne_01/image000001.bmp) in the "
                 "manual directory (or up to 3 levels below); for alignment 'cropped', the "
                 "dataset's `SMIC_all_cropped/HS/` (reg_image000001.bmp).")

ALL = (CASME2, SAMM, SMIC)
NAMES = tuple(db.name for db in ALL)
_BY_NAME = {db.name: db for db in ALL}


def _entry(table: Mapping, name: str, kind: str):
  """table[name]; ValueError naming the known ones otherwise."""
  try:
    return table[name]
  except KeyError:
    raise ValueError(f"unknown {kind} database {name!r}; known: {tuple(table)}") from None


def get(name: str) -> Database:
  """The entry of database `name`; ValueError naming the known ones otherwise."""
  return _entry(_BY_NAME, name, "micro-expression")


def label_name(label: int) -> str:
  """'negative' | 'positive' | 'surprise' for 0/1/2; 'none' for -1 (outside the composite)."""
  return CLASS_NAMES[label] if 0 <= label < len(CLASS_NAMES) else "none"


@dataclasses.dataclass(frozen=True)
class LongVideoDatabase:
  """One long-video (spotting) database: its names, frame rate and files as they ship.

  Its reader and errata rules are frldgt_jax/data/long_videos.py's (`read_database`), its TFDS
  builder long_builders.py's; layouts and sources: docs/spotting_data.md.

  Attributes:
    name: the canonical name ('casme2_lv'), also `prepare_data.py --dataset`'s.
    title: how people write it ('CAS(ME)^2').
    fps: frame rate of the recordings.
    builder: the TFDS builder's registered name; `builder_class` its class name.
    annotation_files: the annotation spreadsheets' paths under the manual directory.
    frame_root: the folder under the manual directory holding the frame folders.
    frame_example: one frame's path under frame_root (for messages and the doc).
    instructions: what to put in the manual directory.
  """
  name: str
  title: str
  fps: float
  builder: str
  builder_class: str
  annotation_files: tuple[str, ...]
  frame_root: str
  frame_example: str
  instructions: str


CASME2_LV = LongVideoDatabase(
    name="casme2_lv", title="CAS(ME)^2", fps=30.0, builder="casme2_lv", builder_class="Casme2Lv",
    annotation_files=("CAS(ME)^2code_final.xlsx",), frame_root="rawpic",
    frame_example="s15/15_0101disgustingteeth/img1.jpg",
    instructions="CAS(ME)^2: put `CAS(ME)^2code_final.xlsx` and the frame folder `rawpic/` "
                 "(s15/15_0101disgustingteeth/img1.jpg) in the manual directory.")
SAMM_LV = LongVideoDatabase(
    name="samm_lv", title="SAMM Long Videos", fps=200.0, builder="samm_lv",
    builder_class="SammLv", annotation_files=("SAMM_LongVideos_V2_Release.xlsx",),
    frame_root="SAMM_longvideos", frame_example="006_1/006_1_0001.jpg",
    instructions="SAMM Long Videos: put `SAMM_LongVideos_V2_Release.xlsx` and the frame folder "
                 "`SAMM_longvideos/` (006_1/006_1_0001.jpg) in the manual directory; for the "
                 "micro-expressions' emotions, SAMM's `SAMM_Micro_FACS_Codes_v2.xlsx` beside them.")
CASME3_A = LongVideoDatabase(
    name="casme3_a", title="CAS(ME)^3 Part A", fps=30.0, builder="casme3_a",
    builder_class="Casme3A",
    annotation_files=("annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
                      "annotation/cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx"),
    frame_root="part_A/data", frame_example="spNO.1/a/color/1.jpg",
    instructions="CAS(ME)^3 Part A: put `annotation/` (the ME and MaE label spreadsheets) and "
                 "the frames as `part_A/data/spNO.1/a/color/1.jpg` in the manual directory.")

LONG_VIDEO = (CASME2_LV, SAMM_LV, CASME3_A)
LONG_VIDEO_NAMES = tuple(db.name for db in LONG_VIDEO)
_LONG_BY_NAME = {db.name: db for db in LONG_VIDEO}


def get_long_video(name: str) -> LongVideoDatabase:
  """The entry of long-video database `name`; ValueError naming the known ones otherwise."""
  return _entry(_LONG_BY_NAME, name, "long-video")
