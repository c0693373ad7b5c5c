"""Spot micro- and macro-expressions in a long video, then recognise each micro-expression.

  python launch/spot.py --spotter W1 --recogniser W2 --video LONG.mp4 --out DIR
  python launch/spot.py --spotter W1 --recogniser W2 --frames FRAME_FOLDER --out DIR
  python launch/spot.py --spotter tests/fixtures/spotter_tiny --video LONG.mp4 --out DIR

W1 is a trained spotter (python launch/train.py --config configs/spotting_casme2_lv.py
--config.final_model=True, or the committed tiny one; frldgt_jax/spotting/spotter.py). W2 is an
FRL-DGT sweep's workdir, as launch/predict.py takes it (W2/final/, or the fold models with
--ensemble); without --recogniser the intervals are spotted and not classified.

1. The face: eyes and mouth per frame from the face detector (launch/common/faces.py, dlib; the
   [faces] extra) on every --detect_every-th frame, linearly interpolated between two detections
   (a frame between a detection and a miss has no face), or from --landmarks: a CSV in
   frldgt_jax/data/align.py's format whose `sample` column is the frame number (frames without a
   row have no face; a file of one row holds for every frame).
2. Tracks (frldgt_jax/data/tracks.py): aligned once per stable track of the face, re-aligned
   when the head moves past a threshold; frames without a face are reported (frames and
   seconds) and left out.
3. Spotting, per track (a re-alignment is a jump, not an expression): motion features, the
   spotting net and interval decoding (docs/spotting.md).
4. Recognition: each spotted micro-expression's onset and apex frames go to the recogniser,
   aligned as its training data was (frldgt_jax/clip_input.py).

Writes in DIR: intervals.csv and intervals.json (one row per interval: kind, onset, apex, offset
as frame numbers and seconds, the class and its probabilities for micro-expressions), timeline.png
(the motion signal, the intervals coloured by kind and labelled with their class, the spotter's
probabilities, the frames without a face); intervals.json also lists the face's tracks and the
frames without a face.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import csv
import json
import pathlib
import time

import numpy as np
from absl import flags

from frldgt_jax import clip_input, video
from frldgt_jax.data import align as align_lib
from frldgt_jax.data import clips as clips_lib
from frldgt_jax.data import long_videos
from frldgt_jax.data import tracks as tracks_lib
from frldgt_jax.errors import InputError
from frldgt_jax.spotting import recognition
from frldgt_jax.spotting import spotter as spotter_lib
from frldgt_jax.spotting import timeline

_SPOTTER = flags.DEFINE_string("spotter", None, "A trained spotter's workdir.", required=True)
_RECOGNISER = flags.DEFINE_string("recogniser", None, "An FRL-DGT sweep's workdir (as "
                                  "launch/predict.py takes it); default: spot only.")
_ENSEMBLE = flags.DEFINE_bool("ensemble", False, "Recognise with the mean of the fold models' "
                              "probabilities instead of the final model.")
_VIDEO = flags.DEFINE_string("video", None, "A video file ffmpeg reads.")
_FRAMES = flags.DEFINE_string("frames", None, "A folder of frames, each name ending in its "
                              "frame number (as the long-video databases ship).")
_FPS = flags.DEFINE_float("fps", None, "Frame rate of --frames (default: the spotter's).")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_LANDMARKS = flags.DEFINE_string("landmarks", None, "Landmark CSV per frame (sample = frame "
                                 "number) instead of the face detector.")
_DETECT_EVERY = flags.DEFINE_integer("detect_every", 5, "Run the face detector on every n-th "
                                     "frame (interpolated between).")
_DRIFT = flags.DEFINE_float("drift", tracks_lib.DEFAULT_DRIFT, "Eye drift (crop sides) past "
                            "which the face is re-aligned (a new track).")
_MIN_TRACK_S = flags.DEFINE_float("min_track_seconds", 0.5, "Shorter tracks are not spotted.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Micro-expressions per recogniser call.")


def read_input() -> video.Clip:
  """The video or frame folder the flags name (InputError: one line, exit 2)."""
  if bool(_VIDEO.value) == bool(_FRAMES.value):
    raise InputError("give exactly one of --video LONG.mp4 and --frames FOLDER")
  if _VIDEO.value:
    return video.read_video(_VIDEO.value)
  folder = pathlib.Path(_FRAMES.value)
  if not folder.is_dir():
    raise InputError(f"{folder}: no such frame folder")
  files = long_videos.frame_files(folder)
  if len(files) < 2:
    raise InputError(f"{folder}: fewer than 2 frames whose names end in their number "
                     "(img1.jpg, 006_1_0001.jpg, 1.jpg, ...)")
  numbers = sorted(files)
  frames = [clips_lib.load_gray(files[n]) for n in numbers]
  if len({f.shape for f in frames}) != 1:
    raise InputError(f"{folder}: the frames differ in size")
  return video.Clip(folder.name, str(folder), np.stack(frames), np.asarray(numbers, np.int64),
                    None)


def csv_landmarks(path: str, numbers: np.ndarray) -> list:
  """Per frame [3, 2] points or None from a --landmarks CSV (module docstring)."""
  table = align_lib.read_landmarks_csv(path)
  if len(table) == 1:
    points = next(iter(table.values())).as_array()
    return [points] * len(numbers)
  by_number = {}
  for (_, sample), marks in table.items():
    try:
      by_number[int(sample)] = marks.as_array()
    except ValueError:
      raise InputError(f"{path}: sample {sample!r} is not a frame number (a long video's "
                       "landmark CSV names each row's frame number in its sample column)"
                       ) from None
  return [by_number.get(int(n)) for n in numbers]


def detected_landmarks(frames: np.ndarray, every: int, progress) -> list:
  """Per frame [3, 2] points or None: the detector on every `every`-th frame (and the last),
  linearly interpolated between two detections."""
  from launch.common import faces  # pylint: disable=g-import-not-at-top
  faces.ensure_models("predictor68")
  if every < 1:
    raise InputError(f"--detect_every must be at least 1, got {every}")
  probes = sorted(set(range(0, len(frames), every)) | {len(frames) - 1})
  found = {}
  for i in progress(probes):
    try:
      found[i] = faces.detect_landmarks(frames[i], f"frame {i}").points
    except faces.FaceNotFoundError:
      found[i] = None
  out = [None] * len(frames)
  for a, b in zip(probes, probes[1:] + [probes[-1]]):
    if found[a] is None:
      continue
    out[a] = found[a]
    if found[b] is not None:
      for i in range(a + 1, b):
        w = (i - a) / (b - a)
        out[i] = (1 - w) * found[a] + w * found[b]
  return out


def recognise(clip: video.Clip, micro: list, landmarks: list, models, progress) -> list[dict]:
  """Class and probabilities of each spotted micro-expression (positions into the clip)."""
  config = models[0].config
  prepared = []
  for onset, apex, offset in micro:
    part = video.Clip(f"{clip.name}@{onset}", clip.source, clip.frames[onset:offset + 1],
                      clip.frame_numbers[onset:offset + 1], clip.fps)
    prepared.append(clip_input.prepare_clip(
        part, size=models[0].image_size, alignment=config.data.alignment,
        match_brightness=bool(config.data.match_brightness), need_flow=False,
        landmarks=landmarks[onset], onset=0,
        apex=recognition.apex_position(onset, apex, offset) - onset))
  if not prepared:
    return []
  return recognition.classify(models, np.stack([c.onset_frame for c in prepared]),
                              np.stack([c.apex_frame for c in prepared]), _BATCH.value, progress)


def main(argv):
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it reads at INFO
  start = time.time()
  out = pathlib.Path(_OUT.value)
  clip = read_input()
  spotter = spotter_lib.load_spotter(_SPOTTER.value)
  models, model_used = [], "none (spotting only)"
  if _RECOGNISER.value:
    models, model_used = recognition.load_recogniser(_RECOGNISER.value, _ENSEMBLE.value)
  fps = float(clip.fps or _FPS.value or spotter.fps)
  n, numbers = len(clip.frames), clip.frame_numbers
  print(f"{clip.source}: {n} frames at {fps:g} fps ({n / fps:.1f} s); spotter {spotter.workdir} "
        f"(trained at {spotter.fps:g} fps), recogniser: {model_used}")

  def bar(desc, unit):
    return lambda items: tqdm(items, desc=desc, unit=unit)
  if _LANDMARKS.value:
    landmarks = csv_landmarks(_LANDMARKS.value, numbers)
  else:
    landmarks = detected_landmarks(clip.frames, _DETECT_EVERY.value, bar("finding the face",
                                                                          "frame"))
  tracks, gaps = tracks_lib.split_tracks(landmarks, spotter.image_size, _DRIFT.value)
  for line in tracks_lib.gap_messages(gaps, fps, numbers):
    print(line)
  if not tracks:
    print("no face anywhere in the video: nothing to spot")

  intervals, segments = [], []
  min_length = max(2, int(round(_MIN_TRACK_S.value * fps)))
  for track in tqdm(tracks, desc="aligning and spotting", unit="track"):
    if track.length < min_length:
      print(f"track of frames {numbers[track.start]}-{numbers[track.stop - 1]} is shorter than "
            f"{_MIN_TRACK_S.value:g} s: not spotted")
      continue
    span = range(track.start, track.stop)
    aligned = np.stack([align_lib.align(clip.frames[i], track.matrix, spotter.image_size)
                        for i in span])
    result = spotter.spot(aligned, np.asarray(span), fps)
    intervals += result.intervals
    segments.append({"seconds": (track.start + result.positions) / fps, "signal": result.signal,
                     "micro": result.probabilities[:, 1], "macro": result.probabilities[:, 2]})

  micro = [(iv.onset, iv.apex, iv.offset) for iv in intervals if iv.kind == "micro"]
  labels = recognise(clip, micro, landmarks, models, bar("recognising", "batch")) if models else []
  classes = iter(labels)
  rows = []
  for iv in intervals:
    row = {"kind": iv.kind}
    for key in ("onset", "apex", "offset"):
      pos = getattr(iv, key)
      row[f"{key}_frame"] = int(numbers[pos])
      row[f"{key}_s"] = round(pos / fps, 4)
    row.update(next(classes) if iv.kind == "micro" and labels else {"class": ""})
    rows.append(row)

  out.mkdir(parents=True, exist_ok=True)
  record = {"video": clip.source, "frames": n, "fps": fps, "spotter": str(spotter.workdir),
            "recogniser": model_used, "intervals": rows,
            "faceless": [{"first_frame": int(numbers[g.start]), "last_frame":
                          int(numbers[g.stop - 1]), "first_s": round(g.start / fps, 4),
                          "last_s": round((g.stop - 1) / fps, 4)} for g in gaps],
            "tracks": [{"first_frame": int(numbers[t.start]), "last_frame":
                        int(numbers[t.stop - 1])} for t in tracks]}
  (out / "intervals.json").write_text(json.dumps(record, indent=1) + "\n")
  columns = ["kind", "onset_frame", "apex_frame", "offset_frame", "onset_s", "apex_s",
             "offset_s", "class"]
  names = list(models[0].class_names) if models else []
  with open(out / "intervals.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(columns + [f"p_{c}" for c in names])
    for row in rows:
      p = row.get("probabilities", {})
      writer.writerow([row[c] for c in columns] + [p.get(c, "") for c in names])
  timeline.write_timeline_png(
      out / "timeline.png", fps, segments,
      intervals, [r["class"] for r in rows],
      [(g.start / fps, g.stop / fps) for g in gaps], f"{clip.name}: {len(micro)} micro, "
      f"{len(intervals) - len(micro)} macro")
  for row in rows:
    print(f"{row['kind']} {row['onset_frame']}-{row['offset_frame']} (apex {row['apex_frame']}; "
          f"{row['onset_s']:.2f}-{row['offset_s']:.2f} s) {row['class']}".rstrip())
  cli.print_outputs(out, [pathlib.Path(p) for p in ("intervals.csv", "intervals.json",
                                                    "timeline.png")], time.time() - start)


if __name__ == "__main__":
  cli.run(main)
