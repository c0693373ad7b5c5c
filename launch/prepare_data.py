"""Prepare a micro-expression dataset (TFDS, manual download) and print its build summary.

  python launch/prepare_data.py --dataset {casme2,samm,smic,composite} --manual_dir DIR \\
      --data_dir OUT [--summary_json FILE] [--allow_drops] \\
      [--landmarks CSV[,CSV...] | --use_cropped] \\
      [--resolution 128] [--frames 8] [--composite_csv LIST]

DIR holds the licensed data as downloaded (layouts: frldgt_jax/data/builders.py and
shared/design/frldgt.md); the composite reads all three databases from the same DIR. The
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

from frldgt_jax.errors import InputError

_DATASET = flags.DEFINE_enum("dataset", None, ["casme2", "samm", "smic", "composite"],
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
                               " to align with instead of the face detector.")
_USE_CROPPED = flags.DEFINE_bool("use_cropped", False,
                                 "Use the dataset's own cropped folders (resized as they are).")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "Side S of the stored square frames.",
                                   lower_bound=8)
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames T stored per clip, onset..apex.",
                               lower_bound=2)
_COMPOSITE_CSV = flags.DEFINE_string("composite_csv", None,
                                     "Composite list (dataset,subject,sample,label); default: "
                                     "the shipped 442-clip MEGC2019 list.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _LANDMARKS.value and _USE_CROPPED.value:
    raise app.UsageError("--landmarks and --use_cropped are alternatives: give one")
  if _COMPOSITE_CSV.value and _DATASET.value != "composite":
    raise app.UsageError("--composite_csv only applies to --dataset composite")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from frldgt_jax.data import builders  # pylint: disable=g-import-not-at-top
  from launch.common import faces  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every file it writes at INFO
  tfds.disable_progress_bar()  # our own bar counts clips
  alignment = "landmarks" if _LANDMARKS.value else "cropped" if _USE_CROPPED.value else "detect"
  target = builders.dataset_dir(_DATA_DIR.value, _DATASET.value, resolution=_RESOLUTION.value,
                                frames=_FRAMES.value, alignment=alignment)
  existed = (target / "dataset_info.json").is_file()
  print(f"preparing {_DATASET.value} from {_MANUAL_DIR.value}: {_FRAMES.value} frames at "
        f"{_RESOLUTION.value}x{_RESOLUTION.value}, alignment {alignment}", flush=True)
  if existed:
    print(f"{target} is already prepared: not rebuilding (delete it to rebuild)", flush=True)
  options = builders.BuildOptions(landmarks_csv=tuple(_LANDMARKS.value or ()),
                                  detector=faces.detect_landmarks,
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
  if _SUMMARY_JSON.value:
    path = pathlib.Path(_SUMMARY_JSON.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    print(f"summary written to {path}")
  print(f"dataset: {builder.data_dir}")
  print(f"summary: {pathlib.Path(builder.data_dir) / builders.SUMMARY_FILE}")


if __name__ == "__main__":
  cli.run(main, tensorflow=True)
