"""A generated long-video corpus in the layouts of CAS(ME)^2, SAMM Long Videos and CAS(ME)^3 Part A.

Stands in for the licensed databases in tests and smoke runs; long_videos.py reads it as it reads
the real downloads (docs/spotting_data.md). `generate_long_corpus(OUT)` writes one manual
directory per database:

  OUT/casme2_lv/CAS(ME)^2code_final.xlsx, rawpic/s15/15_0101disgustingteeth/img1.jpg  (30 fps)
  OUT/samm_lv/SAMM_LongVideos_V2_Release.xlsx, SAMM_longvideos/006_1/006_1_0001.jpg  (200 fps)
  OUT/casme3_a/annotation/cas(me)3_part_A_{ME,MaE}_label_*.xlsx,
               part_A/data/spNO.1/a/color/1.jpg                                     (30 fps)
  OUT/<database>/landmarks_long.csv   true eye/mouth positions of every frame (no detector needed)
  OUT/truth.json                      every planted interval, per database and video

Each video: a drawn face (faces.py, through synthetic.py's Subject and place_face) in 320 x 240
grayscale frames, JPEG quality 90, with nuisances: a slow head drift (up to 2 px), one sudden
head move (a tenth of the face's width, between two frames: a new face track), blinks every 2-4 s,
speech-like mouth motion (jaw drop AU26 of up to 1.5 px of a 128-px crop, at 3-5 Hz, for 1-2 s
stretches) and illumination flicker. Planted expressions, one at a time, 0.6-1.5 s apart:
micro-expressions of 0.2-0.5 s (onset to offset, both counted) with a peak of 2.5 px, and
macro-expressions of 0.6-2 s with a peak of 5 px (128-px crop), raised-cosine onset -> apex ->
offset; class AUs as the clip corpus (negative AU4+15, positive AU6+12, surprise AU1+2+26;
'others' AU14). SAMM-LV's sheet has no emotion column, so its truth labels are -1.

Errata planted (the readers' rules fix them, so the reader's intervals equal the truth): a
CAS(ME)^2 row given twice (duplicate_row), a SAMM-LV macro row with onset 0 (onset_missing) and a
CAS(ME)^3 row of a video with no frame folder (missing_video).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import shutil

import cv2
import numpy as np

from frldgt_jax.data import faces, long_videos, synthetic
from frldgt_jax.errors import InputError
from frldgt_jax.spotting.intervals import Interval

FRAME_SIZE = (320, 240)
JPEG_QUALITY = 90
MICRO_SECONDS = (0.2, 0.5)
MACRO_SECONDS = (0.6, 2.0)
MICRO_PEAK, MACRO_PEAK = 2.5, 5.0
# Emotion text written per database for classes 0, 1, 2 and 'others'.
EMOTIONS = {"casme2_lv": ("negative", "positive", "surprise", "others"),
            "samm_lv": ("", "", "", ""),
            "casme3_a": ("disgust", "happy", "surprise", "others")}
_AUS = {0: ("AU4", "AU15"), 1: ("AU6", "AU12"), 2: ("AU1+2", "AU26"), -1: ("AU14",)}
_AU_TEXT = {0: "4+15", 1: "6+12", 2: "1+2+26", -1: "14"}
_CASME2_VIDEOS = (("disgust1", "0101", "disgustingteeth"), ("happy1", "0401", "girlcrashing"))
SAMM_PREAMBLE = 9


@dataclasses.dataclass(frozen=True)
class LongCorpusConfig:
  """How much to generate: subjects and videos per database, and each video's length."""
  subjects: int = 4
  videos_per_subject: int = 1
  seconds: tuple[tuple[str, float], ...] = (("casme2_lv", 20.0), ("samm_lv", 5.0),
                                           ("casme3_a", 20.0))
  seed: int = 0


def _plan_intervals(rng, n: int, fps: float) -> list[Interval]:
  out, t = [], int(0.5 * fps)
  kinds = ("micro", "macro")
  while True:
    kind = kinds[len(out) % 2]
    lo, hi = MICRO_SECONDS if kind == "micro" else MACRO_SECONDS
    length = max(3, int(rng.uniform(lo, hi) * fps))
    if t + length >= n - int(0.3 * fps):
      return out
    label = int(rng.choice([0, 1, 2, -1], p=[0.3, 0.3, 0.25, 0.15]))
    apex = t + int(rng.uniform(0.35, 0.65) * (length - 1))
    out.append(Interval(t, t + length - 1, kind, apex, label))
    t += length + int(rng.uniform(0.6, 1.5) * fps)



class _Video:
  """One long video's plan and its frames (0-based here; files number from 1)."""

  def __init__(self, rng, subject: synthetic.Subject, n: int, fps: float):
    self.subject, self.n, self.fps = subject, n, fps
    self.intervals = _plan_intervals(rng, n, fps)
    w, h = FRAME_SIZE
    self.scale = rng.uniform(140.0, 160.0)
    self.roll = rng.uniform(-6.0, 6.0)
    t = np.arange(n, dtype=np.float64)
    freq, phase = rng.uniform(0.05, 0.2), rng.uniform(0, 2 * math.pi, 2)
    self.centre = np.stack([w / 2 + 2.0 * np.sin(2 * math.pi * freq * t / fps + phase[0]),
                            h / 2 + 2.0 * np.sin(2 * math.pi * freq * t / fps + phase[1])], 1)
    jump_at = int(rng.uniform(0.4, 0.6) * n)
    self.centre[:, 0] += 0.1 * self.scale * (t >= jump_at)
    self.closure = np.zeros(n)
    blink = rng.uniform(0.5, 2.0) * fps
    while blink < n - 1:
      half = rng.uniform(0.07, 0.15) * fps
      self.closure = np.maximum(self.closure, np.clip(1 - np.abs(t - blink) / half, 0, 1))
      blink += rng.uniform(2.0, 4.0) * fps
    self.speech = np.zeros(n)
    start = rng.uniform(0.2, 0.6) * n
    length, rate = rng.uniform(1.0, 2.0) * fps, rng.uniform(3.0, 5.0)
    inside = (t >= start) & (t < start + length)
    self.speech[inside] = np.abs(np.sin(math.pi * rate * (t[inside] - start) / fps))
    self.gain = 1 + 0.01 * np.sin(2 * math.pi * rng.uniform(0.5, 3.0) * t / fps
                                  + rng.uniform(0, 6.3))
    self.background = (synthetic._background(rng, FRAME_SIZE, False)[:, :, 0] * 255
                       + 0.5).astype(np.uint8)
    idt = subject.identity
    self.speech_components = faces.au_components(idt, "AU26", (1.5,))
    self.components = []
    for iv in self.intervals:
      peak = MICRO_PEAK if iv.kind == "micro" else MACRO_PEAK
      comps = [c for au in _AUS[iv.label] for c in faces.au_components(idt, au, (peak, peak))]
      self.components.append(comps)

  def matrix(self, i: int) -> np.ndarray:
    return synthetic._pose_matrix(self.scale, self.roll, self.centre[i])

  def landmarks(self, i: int) -> np.ndarray:
    m = self.matrix(i)
    return self.subject.identity.landmarks @ m[:, :2].T + m[:, 2]

  def frame(self, i: int) -> np.ndarray:
    canvas = self.subject.canvas(self.closure[i])
    moves = [(self.speech_components, self.speech[i])]
    for iv, comps in zip(self.intervals, self.components):
      moves.append((comps, synthetic._intensity(i, iv.onset - 1, iv.apex, iv.offset + 1)))
    for comps, amount in moves:
      if amount > 0:
        box = faces.field_box(comps)
        canvas = faces.warp_forward(canvas, faces.displacement_field(comps, amount, box), box)
    image = synthetic.place_face(canvas, self.matrix(i), self.background)
    return cv2.addWeighted(image, float(self.gain[i]), image, 0.0, 0.0)


def _write_frames(video: _Video, folder: pathlib.Path, name, landmark_rows, subject, key):
  folder.mkdir(parents=True)
  for i in range(video.n):
    ok, data = cv2.imencode(".jpg", video.frame(i), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
      raise OSError(f"OpenCV could not encode frame {i} of {folder}")
    data.tofile(folder / name(i + 1))
    landmark_rows.append([subject, key, i + 1] + [f"{v:.3f}" for v in
                                                   video.landmarks(i).reshape(-1)])


def _shifted(iv: Interval, emotion: str) -> Interval:
  """The interval in the files' frame numbers (from 1), with its written emotion."""
  return Interval(iv.onset + 1, iv.offset + 1, iv.kind, iv.apex + 1,
                  long_videos.emotion_label(emotion), emotion)


def _sheet(book, title, rows, first=False):
  sheet = book.active if first else book.create_sheet()
  sheet.title = title
  for row in rows:
    sheet.append(list(row))
  return sheet


def generate_long_corpus(out_dir: str | os.PathLike,
                         config: LongCorpusConfig = LongCorpusConfig(),
                         overwrite: bool = False, progress=None) -> dict:
  """Writes the corpus (module docstring) and returns the truth written to truth.json.

  Args:
    out_dir: output folder (created; must be empty or absent unless `overwrite`).
    config: sizes and seed.
    overwrite: replace an existing out_dir.
    progress: optional callable(n) told of every finished video (e.g. a tqdm's update).
  """
  import openpyxl  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(out_dir)
  if out.exists() and any(out.iterdir()):
    if not overwrite:
      raise InputError(f"{out} is not empty (pass overwrite to replace it)")
    shutil.rmtree(out)
  out.mkdir(parents=True, exist_ok=True)
  seconds = dict(config.seconds)
  truth: dict[str, list] = {}
  for d_index, database in enumerate(long_videos.NAMES):
    fps = long_videos.FPS[database]
    n = int(round(seconds[database] * fps))
    root = out / database
    rows, landmark_rows, videos_truth = [], [], []
    for s in range(config.subjects):
      rng = np.random.default_rng([config.seed, d_index, s])
      subject = synthetic.Subject(faces.random_identity(rng))
      for v in range(config.videos_per_subject):
        video = _Video(np.random.default_rng([config.seed, d_index, s, v]), subject, n, fps)
        words = EMOTIONS[database]
        if database == "casme2_lv":
          number, (_, code, text) = 15 + s, _CASME2_VIDEOS[v % len(_CASME2_VIDEOS)]
          subj, key = f"s{number}", f"{number}_{code}"
          _write_frames(video, root / long_videos.CASME2_FRAMES / subj / f"{key}{text}",
                        lambda k: f"img{k}.jpg", landmark_rows, subj, key)
        elif database == "samm_lv":
          subj = f"{6 + s:03d}"
          key = f"{subj}_{v + 1}"
          _write_frames(video, root / long_videos.SAMM_FRAMES / key,
                        lambda k, key=key: f"{key}_{k:04d}.jpg", landmark_rows, subj, key)
        else:
          subj, letter = f"spNO.{1 + s}", "abcdefghijklm"[v]
          key = f"{subj}_{letter}"
          _write_frames(video, root / long_videos.CASME3_FRAMES / subj / letter / "color",
                        lambda k: f"{k}.jpg", landmark_rows, subj, key)
        intervals = [_shifted(iv, words[iv.label]) for iv in video.intervals]
        videos_truth.append({"subject": subj, "video": key,
                             "intervals": [dataclasses.asdict(iv) for iv in intervals]})
        rows += [(s, v, subj, key, iv, _AU_TEXT[plan.label])
                 for iv, plan in zip(intervals, video.intervals)]
        if progress:
          progress(1)
    first = (videos_truth[0]["subject"], videos_truth[0]["video"])
    _write_sheets(openpyxl, database, root, rows, first, config)
    with open(root / long_videos.LANDMARKS_FILE, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(long_videos.LANDMARK_COLUMNS)
      writer.writerows(landmark_rows)
    truth[database] = videos_truth
  with open(out / "truth.json", "w", encoding="utf-8") as f:
    json.dump(truth, f, indent=1)
  return truth


def _write_sheets(openpyxl, database: str, root: pathlib.Path, rows, first, config) -> None:
  """The database's spreadsheets: `rows` the planted intervals, `first` the first video's
  (subject, video), which the planted errata name."""
  book = openpyxl.Workbook()
  if database == "casme2_lv":
    codes = [(s + 1, f"{_CASME2_VIDEOS[v % 2][0]}_{j + 1}", iv.onset, iv.apex, iv.offset, aus,
              iv.emotion, f"{iv.kind}-expression", iv.emotion)
             for j, (s, v, _, _, iv, aus) in enumerate(rows)]
    codes.append(codes[0] if codes else (1, "disgust1_1", 5, 6, 7, "4", "negative",
                                         "micro-expression", ""))  # erratum: a row twice
    _sheet(book, "Sheet1", codes, first=True)
    _sheet(book, "naming rule1", [(15 + s, f"s{15 + s}", s + 1) for s in range(config.subjects)])
    _sheet(book, "naming rule2", [(code, name) for name, code, _ in _CASME2_VIDEOS])
    for row in book.worksheets[2].iter_rows(max_col=1):
      row[0].number_format = "@"
    book.save(root / long_videos.CASME2_FILE)
  elif database == "samm_lv":
    preamble = [("SAMM Long Videos (generated stand-in; faces are drawn, not recorded)",)]
    preamble += [(f"note {k}",) for k in range(1, SAMM_PREAMBLE)]
    header = ("Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration",
              "Type", "Action Units", "Notes")
    body = [(subj, f"{key}_{j + 1}", 1, iv.onset, iv.apex, iv.offset, iv.length,
             "Micro - 1/2" if iv.kind == "micro" else "Macro", aus, None)
            for j, (_, _, subj, key, iv, aus) in enumerate(rows)]
    subj, key = first
    body.append((subj, f"{key}_99", 1, 0, 0, 50, 51, "Macro", "12", "onset not coded"))
    _sheet(book, "FACS_Movement_Only", preamble + [header] + body, first=True)
    book.save(root / long_videos.SAMM_FILE)
  else:
    (root / "annotation").mkdir()
    micro = [(subj, key.split("_")[1], iv.onset, iv.apex, iv.offset, None, None, iv.emotion, aus)
             for _, _, subj, key, iv, aus in rows if iv.kind == "micro"]
    micro.append((first[0], "m", 10, 12, 15, None, None, "happy", "12"))  # no such video
    _sheet(book, "label", [("Subject", "Filename", "Onset", "Apex", "Offset", None, None,
                            "emotion", "AU")] + micro, first=True)
    book.save(root / long_videos.CASME3_MICRO_FILE)
    book = openpyxl.Workbook()
    macro = [(subj, key.split("_")[1], iv.onset, iv.apex, iv.offset, iv.emotion)
             for _, _, subj, key, iv, _ in rows if iv.kind == "macro"]
    _sheet(book, "Sheet1", [("sub", "seq", "onset", "apex", "offset", "emotion")] + macro,
           first=True)
    book.save(root / long_videos.CASME3_MACRO_FILE)


def read_truth(corpus_dir: str | os.PathLike) -> dict[str, dict[tuple[str, str],
                                                             tuple[Interval, ...]]]:
  """{database: {(subject, video): intervals}} from a corpus's truth.json."""
  with open(pathlib.Path(corpus_dir) / "truth.json", encoding="utf-8") as f:
    raw = json.load(f)
  return {db: {(v["subject"], v["video"]): tuple(Interval(**iv) for iv in v["intervals"])
               for v in videos} for db, videos in raw.items()}
