"""Micro-expression class of your own clips with a trained FRL-DGT sweep.

  python launch/predict.py --workdir W --video CLIP.mp4 --out DIR
  python launch/predict.py --workdir W --frames FOLDER --onset 3 --apex 14 --out DIR
  python launch/predict.py --workdir W --video VIDEO_DIR,other.avi --ensemble --out DIR

W is a sweep's workdir (launch/sweep.py). The model is W/final/ (train it with
--config.final_model=True: one model on every subject, with the folds' budget), or with
--ensemble the fold models (W/fold_XX/ or W/stacked/), whose class probabilities are averaged.

Each clip (a video file that ffmpeg reads, or a folder of frames named as in CASME II, SAMM or
SMIC) is aligned as the run's data was (its config.json; frldgt_jax/clip_input.py): the face's
landmarks on the onset frame come from the face detector (launch/common/faces.py) or from
--landmarks (a CSV in frldgt_jax/data/align.py's format, matched by the clip's name in the sample
column). Without --apex the apex is spotted: the frame of maximal motion from the onset, measured
as the mean intensity change in the face's action-unit areas with the eyes left out, after
removing head drift, smoothed over 3 frames (frldgt_jax/apex.py). --onset defaults to the first
frame; both are 0-based frame positions in the clip.

Writes per clip (in DIR, or DIR/<clip name>/ when several clips are given): prediction.json
(class, probabilities, onset, apex, model used, face box, alignment_used), prediction.png (the
aligned onset and apex, the displacement field over the face, the probabilities) and motion.png
(the motion curve, onset and apex marked); with several clips also DIR/predictions.csv.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import csv
import json
import pathlib
import time

import numpy as np
from absl import flags

from frldgt_jax import clip_input, run_io
from frldgt_jax import motion as motion_lib
from frldgt_jax import prediction_plots, video
from frldgt_jax.data import align as align_lib
from frldgt_jax.errors import InputError

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep's workdir (launch/sweep.py).",
                               required=True)
_VIDEO = flags.DEFINE_list("video", [], "Video files or folders of them (comma-separated).")
_FRAMES = flags.DEFINE_list("frames", [], "Frame folders (CASME II, SAMM or SMIC names).")
_ONSET = flags.DEFINE_integer("onset", None, "Onset frame, 0-based (default: the first).")
_APEX = flags.DEFINE_integer("apex", None, "Apex frame (0-based); default: spotted.")
_OUT = flags.DEFINE_string("out", None, "Output folder.", required=True)
_ENSEMBLE = flags.DEFINE_bool("ensemble", False, "Average the class probabilities of the fold "
                              "models instead of using the final model.")
_LANDMARKS = flags.DEFINE_string("landmarks", None, "Landmark CSV of the onset frames (subject, "
                                 "sample = clip name, left/right eye and mouth x, y) instead of "
                                 "the face detector.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Clips per model call on the accelerator.")


def clip_paths(videos: list[str], frames: list[str]) -> list[pathlib.Path]:
  """Every clip named by --video (files, or folders of video files) and --frames."""
  out = []
  for name in videos:
    path = pathlib.Path(name)
    if path.is_dir():
      found = sorted(p for p in path.iterdir() if video.is_video(p))
      if not found:
        raise InputError(f"{path}: no video files ({', '.join(video.VIDEO_SUFFIXES)}) in this "
                         "folder (a folder of frames goes to --frames)")
      out += found
    else:
      out.append(path)
  out += [pathlib.Path(f) for f in frames]
  if not out:
    raise InputError("give at least one clip: --video CLIP.mp4 (or a folder, or a list) or "
                     "--frames FOLDER")
  return out


def landmarks_by_clip(path: str | None) -> dict[str, np.ndarray]:
  """{clip name: [3, 2] onset landmarks} of a --landmarks CSV."""
  if not path:
    return {}
  table = align_lib.read_landmarks_csv(path)
  return {sample: marks.as_array() for (_, sample), marks in table.items()}


def main(argv):
  del argv
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  start = time.time()
  workdir, out = pathlib.Path(_WORKDIR.value), pathlib.Path(_OUT.value)
  paths = clip_paths(_VIDEO.value, _FRAMES.value)
  models, model_used = run_io.load_models(workdir, _ENSEMBLE.value)
  config = models[0].config
  size, class_names = models[0].image_size, models[0].class_names
  need_flow = motion_lib.uses_flow(models[0].motion)
  marks = landmarks_by_clip(_LANDMARKS.value)
  detector = None
  if len(marks) < len(paths):
    from launch.common import faces  # pylint: disable=g-import-not-at-top
    detector = faces.detect_landmarks
  print(f"predicting {len(paths)} clip(s) with the {model_used}; alignment as the run's "
        f"'{config.data.alignment}' data, {size} x {size}, motion input {models[0].motion}")

  prepared = []
  for path in tqdm(paths, desc="reading, aligning, spotting", unit="clip"):
    clip = video.read_clip(path)
    prepared.append(clip_input.prepare_clip(
        clip, size=size, alignment=config.data.alignment,
        match_brightness=bool(config.data.match_brightness), need_flow=need_flow,
        landmarks=marks.get(clip.name), detector=detector, onset=_ONSET.value,
        apex=_APEX.value))

  flow = np.stack([c.flow for c in prepared]) if need_flow else None
  probabilities, displacement = run_io.ensemble_outputs(
      models, np.stack([c.onset_frame for c in prepared]),
      np.stack([c.apex_frame for c in prepared]), flow, _BATCH.value,
      progress=lambda batches: tqdm(batches, desc="predicting", unit="batch"))

  written = []
  field_name = {"dgm": "DGM displacement", "dgm+tvl1": "DGM displacement",
                "tvl1": "TV-L1 flow", "none": "no motion input"}[models[0].motion]
  for i, c in enumerate(prepared):
    folder = out if len(prepared) == 1 else out / c.name
    folder.mkdir(parents=True, exist_ok=True)
    k = int(np.argmax(probabilities[i]))
    record = {
        "clip": c.source, "class": class_names[k],
        "probabilities": {n: round(float(p), 6) for n, p in zip(class_names, probabilities[i])},
        "onset": c.onset, "apex": c.apex, "apex_spotted": c.apex_spotted,
        "frames": c.num_frames, "model_used": model_used, "face_box": c.face_box,
        "landmarks_onset": c.landmarks, "alignment_used": c.alignment_used,
        "motion_input": models[0].motion, "image_size": size}
    (folder / "prediction.json").write_text(json.dumps(record, indent=1) + "\n")
    field = c.flow if models[0].motion == "tvl1" else (
        None if models[0].motion == "none" else displacement[i])
    title = f"{c.name}: {class_names[k]} ({probabilities[i, k]:.2f})"
    prediction_plots.write_prediction_png(folder / "prediction.png", c.onset_frame,
                                          c.apex_frame, field, field_name, probabilities[i],
                                          class_names, title)
    prediction_plots.write_motion_png(folder / "motion.png", c.curve, c.onset, c.apex,
                                      c.apex_spotted, c.name)
    written += [folder / "prediction.json", folder / "prediction.png", folder / "motion.png"]
    print(f"{c.name}: {class_names[k]} (p={probabilities[i, k]:.3f}), onset {c.onset}, apex "
          f"{c.apex}{' (spotted)' if c.apex_spotted else ''}")
  if len(prepared) > 1:
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["clip", "class", *class_names, "onset", "apex", "apex_spotted"])
      for i, c in enumerate(prepared):
        writer.writerow([c.source, class_names[int(np.argmax(probabilities[i]))],
                         *[f"{p:.6f}" for p in probabilities[i]], c.onset, c.apex,
                         c.apex_spotted])
    written.append(out / "predictions.csv")
  cli.print_outputs(out, [p.relative_to(out) for p in written], time.time() - start)


if __name__ == "__main__":
  cli.run(main)
