"""Prepare a micro-expression dataset (TFDS, manual download) and print its build summary.

  python launch/prepare_data.py --dataset {casme2,samm,smic,composite} --manual_dir DIR \\
      --data_dir OUT [--summary_json FILE] [--allow_drops] \\
      [--landmarks CSV[,CSV...] [--detect] | --use_cropped] [--face_models DIR] \\
      [--resolution 128] [--frames 8] [--composite_csv LIST]
  python launch/prepare_data.py --dataset {casme2_lv,samm_lv,casme3_a} --manual_dir DIR \\
      --data_dir OUT [--resolution 96] [--every 1] [--face_models DIR] [--summary_json FILE]

Long videos (spotting; frldgt_jax/data/long_builders.py, docs/spotting_data.md): one example per
annotated video, aligned track by track from per-frame landmarks: DIR/landmarks_long.csv when
there (the generated corpus writes it), dlib's on every frame otherwise. The errata rules'
fixes are listed in the summary.

Alignment (one similarity transform per clip, from its onset frame's eyes and mouth):
  default        'landmarks68': dlib's 68 landmarks of every clip's onset frame (extra [faces]),
                 written to DATA_DIR/<dataset>_landmarks68.csv, which the builder then reads;
                 a clip whose onset frame has no face stops the build, naming the clip, unless
                 --landmarks gives its row (with --detect) or --allow_drops drops it;
  --landmarks    'landmarks': the points of the CSV(s) only; with --detect, 'landmarks68' with
                 the CSV's rows used where given and dlib's elsewhere;
  --use_cropped  'cropped': the dataset's own crops, resized.

DIR holds the licensed data as downloaded (layouts: frldgt_jax/data/builders.py and
docs/frldgt.md); the composite reads all three databases from the same DIR. The
summary (clips per database, class and subject; every fix applied and every clip dropped, with
its reason) is printed, written next to the dataset as build_summary.json and, with
--summary_json, to FILE. Bad input stops the build with every problem named by file, row and
sample, unless --allow_drops (then each dropped clip is listed in the summary).
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import json
import pathlib

from absl import app, flags, logging

from frldgt_jax.data import databases
from frldgt_jax.errors import InputError

_DATASET = flags.DEFINE_enum("dataset", None, [*databases.NAMES, "composite",
                                              *databases.LONG_VIDEO_NAMES],
                             "Which dataset to prepare.", required=True)
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding the downloaded data.",
                                  required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.",
                                required=True)
_SUMMARY_JSON = flags.DEFINE_string("summary_json", None, "Also write the summary here.")
_ALLOW_DROPS = flags.DEFINE_bool("allow_drops", False,
                                 "Drop clips with bad input (each listed) instead of failing.")
_LANDMARKS = flags.DEFINE_list("landmarks", None,
                               "Landmark CSV(s), comma-separated (subject,sample,left_eye_x,...)"
                               " to align with instead of dlib (or, with --detect, besides it).")
_DETECT = flags.DEFINE_bool("detect", False,
                            "With --landmarks: detect with dlib the clips the CSV(s) lack.")
_FACE_MODELS = flags.DEFINE_string("face_models", None,
                                   "Folder of dlib's model files (default: the "
                                   "face-recognition-models package).")
_USE_CROPPED = flags.DEFINE_bool("use_cropped", False,
                                 "Use the dataset's own cropped folders (resized as they are).")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "Side S of the stored square frames.",
                                   lower_bound=8)
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames T stored per clip, onset..apex.",
                               lower_bound=2)
_EVERY = flags.DEFINE_integer("every", 1, "Long videos: keep every k-th frame.", lower_bound=1)
_COMPOSITE_CSV = flags.DEFINE_string("composite_csv", None,
                                     "Composite list (dataset,subject,sample,label); default: "
                                     "the shipped 442-clip MEGC2019 list.")


def detect_onset_landmarks(builders, given_files: tuple[str, ...]) -> pathlib.Path:
  """dlib's eyes and mouth on the onset frame of every clip the given CSVs lack, written as a
  landmark CSV in --data_dir; raises InputError naming the clips without a face (unless
  --allow_drops: the build then drops them for want of landmarks)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from frldgt_jax.data import align  # pylint: disable=g-import-not-at-top
  from frldgt_jax.data import clips as clips_lib  # pylint: disable=g-import-not-at-top
  from launch.common import faces  # pylint: disable=g-import-not-at-top
  if _FACE_MODELS.value:
    faces.set_model_dir(_FACE_MODELS.value)
  given = builders.read_landmark_files(given_files) if given_files else {}
  onsets = builders.onset_frames(_DATASET.value, _MANUAL_DIR.value, frames=_FRAMES.value,
                                 composite_csv=_COMPOSITE_CSV.value)
  todo = {key: path for key, path in onsets.items() if key not in given}
  print(f"detecting dlib's 68 landmarks on {len(todo)} onset frame(s) ({len(onsets) - len(todo)}"
        f" given by --landmarks)", flush=True)
  found, missing = {}, []
  for (subject, sample), path in tqdm(todo.items(), desc="onset landmarks", unit="clip"):
    try:
      found[(subject, sample)] = align.Landmarks.from_array(
          faces.detect_landmarks(clips_lib.load_gray(path), str(path)).points)
    except faces.FaceNotFoundError:
      missing.append(f"{subject}/{sample} ({path})")
  print(f"  dlib found a face on {len(found)} of {len(todo)} onset frame(s)", flush=True)
  if missing and not _ALLOW_DROPS.value:
    raise InputError(f"no face found on the onset frame of {len(missing)} clip(s): "
                     f"{'; '.join(missing)}. Give their eyes and mouth in a landmark CSV "
                     "(--landmarks CSV --detect), or --allow_drops to drop them")
  for clip in missing:
    print(f"  no face: {clip} (dropped)")
  path = pathlib.Path(_DATA_DIR.value) / f"{_DATASET.value}_landmarks68.csv"
  path.parent.mkdir(parents=True, exist_ok=True)
  align.write_landmarks_csv(path, found)
  return path


def _write_summary(summary: dict) -> None:
  if _SUMMARY_JSON.value:
    path = pathlib.Path(_SUMMARY_JSON.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    print(f"summary written to {path}")


def prepare_long() -> None:
  """--dataset casme2_lv | samm_lv | casme3_a (module docstring)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from frldgt_jax.data import align, long_builders, long_videos  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  resolution = _RESOLUTION.value if _RESOLUTION.present else long_builders.DEFAULT_RESOLUTION
  detector = None
  if not (pathlib.Path(_MANUAL_DIR.value) / long_videos.LANDMARKS_FILE).is_file():
    from launch.common import faces  # pylint: disable=g-import-not-at-top
    if _FACE_MODELS.value:
      faces.set_model_dir(_FACE_MODELS.value)

    def detector(image):
      return align.Landmarks.from_array(faces.detect_landmarks(image).points, source="dlib")
  print(f"preparing {_DATASET.value} from {_MANUAL_DIR.value}: {resolution}x{resolution}, "
        f"every {_EVERY.value} frame(s)", flush=True)
  try:
    builder, summary = long_builders.build(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value,
                                           resolution=resolution, every=_EVERY.value,
                                           detector=detector)
  except (ValueError, FileNotFoundError, AssertionError) as e:
    raise InputError(f"{e}\nno dataset was written (TFDS removes the partial build)") from e
  print(f"{summary['videos']} video(s), {summary['intervals']} interval(s), "
        f"{len(summary['fixes'])} errata fixed:")
  for fix in summary["fixes"]:
    print(f"  [{fix['kind']}] {fix['reason']}")
  _write_summary(summary)
  print(f"dataset: {builder.data_dir}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DATASET.value in databases.LONG_VIDEO_NAMES:
    prepare_long()
    return
  if _LANDMARKS.value and _USE_CROPPED.value:
    raise app.UsageError("--landmarks and --use_cropped are alternatives: give one")
  if _COMPOSITE_CSV.value and _DATASET.value != "composite":
    raise app.UsageError("--composite_csv only applies to --dataset composite")
  if _DETECT.value and not _LANDMARKS.value:
    raise app.UsageError("--detect completes --landmarks (without --landmarks dlib detects "
                         "every clip)")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every file it writes at INFO
  tfds.disable_progress_bar()  # our own bar counts clips
  alignment = ("cropped" if _USE_CROPPED.value else
               "landmarks" if _LANDMARKS.value and not _DETECT.value else "landmarks68")
  target = builders.dataset_dir(_DATA_DIR.value, _DATASET.value, resolution=_RESOLUTION.value,
                                frames=_FRAMES.value, alignment=alignment)
  existed = (target / "dataset_info.json").is_file()
  print(f"preparing {_DATASET.value} from {_MANUAL_DIR.value}: {_FRAMES.value} frames at "
        f"{_RESOLUTION.value}x{_RESOLUTION.value}, alignment {alignment}", flush=True)
  if existed:
    print(f"{target} is already prepared: not rebuilding (delete it to rebuild)", flush=True)
  landmark_files = tuple(_LANDMARKS.value or ())
  written = None
  if alignment == "landmarks68" and not existed:
    written = detect_onset_landmarks(builders, landmark_files)
  if written is not None:
    landmark_files += (str(written),)
  options = builders.BuildOptions(landmarks_csv=landmark_files,
                                  allow_drops=_ALLOW_DROPS.value,
                                  composite_csv=_COMPOSITE_CSV.value, progress=True)
  try:
    builder, summary = builders.build(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value,
                                      resolution=_RESOLUTION.value, frames=_FRAMES.value,
                                      alignment=alignment, options=options)
  except (ValueError, FileNotFoundError, AssertionError) as e:
    # ValueError: annotations.DataError (every bad input, by file, row and sample) and a
    # malformed landmark file; AssertionError is TFDS's "manual directory does not exist or is
    # empty" (with the download instructions).
    raise InputError(f"{e}\nno dataset was written (TFDS removes the partial build)") from e
  print(builders.format_summary(summary))
  _write_summary(summary)
  if written is not None:
    print(f"landmarks: {written}")
  print(f"dataset: {builder.data_dir}")
  print(f"summary: {pathlib.Path(builder.data_dir) / builders.SUMMARY_FILE}")


if __name__ == "__main__":
  cli.run(main, tensorflow="required")
