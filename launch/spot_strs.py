"""STRS of a spotting run: recognise its spotted micro-expressions, then score spot-then-recognise.

  python launch/spot_strs.py --config configs/spotting_casme2_lv.py:synthetic --run W \
      --recogniser R
  python launch/spot_strs.py --config configs/spotting_casme3a.py --run W --recogniser R \
      --ensemble --out W/strs_ensemble.json

W is a run of launch/spot_sweep.py or launch/spot_baseline.py made with the same config (its
W/predictions.json: the spotted intervals per video). The config's videos are loaded again, as
the run loaded them (frldgt_jax/spotting/corpus.py: aligned to the FRL-DGT template at
config.data.image_size); each predicted micro-expression's onset and apex frames go to the
FRL-DGT recogniser R, a sweep's workdir as launch/predict.py takes it (R/final/, or the fold
models with --ensemble), which must take frames of that size
(frldgt_jax/spotting/recognition.py). STRS (frldgt_jax/spotting/metrics.py `strs`: micro
spotting F1 x the analysis F1 over the correctly spotted micro-expressions, the analysis classes
those of the annotated micro-expressions, as the STRS reference evaluator's default) is written
to --out (default W/strs.json) with the recogniser, the classes and each video's labelled
micro-expressions; --classes negative,positive,surprise scores the analysis over those classes
alone (a recogniser of the three composite classes never says 'others'). A database without
emotion labels (SAMM-LV) has no STRS.
"""
import json
import pathlib
import time

from launch.common import cli  # first: quiet TensorFlow start-up
from absl import flags  # noqa: E402  (after cli)
from ml_collections import config_flags  # noqa: E402

from launch.trainer import cli as trainer_cli  # noqa: E402

_RUN = flags.DEFINE_string("run", None, "A spot_sweep.py or spot_baseline.py run's workdir (its "
                           "predictions.json).", required=True)
_RECOGNISER = flags.DEFINE_string("recogniser", None, "An FRL-DGT sweep's workdir (as "
                                  "launch/predict.py takes it).", required=True)
_ENSEMBLE = flags.DEFINE_bool("ensemble", False, "Recognise with the mean of the fold models' "
                              "probabilities instead of the final model.")
_OUT = flags.DEFINE_string("out", None, "Output JSON (default: RUN/strs.json).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Micro-expressions per recogniser call.")
_CLASSES = flags.DEFINE_list("classes", None, "The analysis classes (default: those of the "
                             "annotated micro-expressions, 'others' included, as the reference "
                             "evaluator's default); correct spots of another class are left out.")


def read_predictions(run: pathlib.Path) -> dict:
  """{(subject, video): [Interval]} of run/predictions.json (InputError: one line, exit 2)."""
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from frldgt_jax.spotting.intervals import Interval  # pylint: disable=g-import-not-at-top
  path = run / "predictions.json"
  if not path.is_file():
    raise InputError(f"{path}: no such file (--run takes the workdir of a launch/spot_sweep.py "
                     "or launch/spot_baseline.py run)")
  try:
    rows = json.loads(path.read_text())
    return {(str(r["subject"]), str(r["video"])): [Interval(**iv) for iv in r["intervals"]]
            for r in rows}
  except (json.JSONDecodeError, TypeError, KeyError, ValueError) as e:
    raise InputError(f"{path}: not a spotting run's predictions ({type(e).__name__}: {e})"
                     ) from None


def main(argv):
  trainer_cli.check_config(argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from frldgt_jax.spotting import corpus, metrics  # pylint: disable=g-import-not-at-top
  from frldgt_jax.spotting import recognition  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it reads at INFO
  start = time.time()
  config = trainer_cli.FLAGS.config
  run = pathlib.Path(_RUN.value)
  predictions = read_predictions(run)
  models, model_used = recognition.load_recogniser(_RECOGNISER.value, _ENSEMBLE.value)
  for name in models[0].class_names:
    recognition.megc_label(name)
  crop = int(config.data.image_size)
  recognition.check_size(models, (crop, crop), "the config's videos aligned at "
                         "config.data.image_size")
  videos = {(v.subject, v.name): v for v in corpus.load_videos(config)}
  unknown = sorted(set(predictions) - set(videos))
  if unknown:
    raise InputError(f"{run}: predictions for videos the config does not have ({unknown[0]} "
                     f"and {len(unknown) - 1} more): was the run made with this config and "
                     "data root?")
  micro = sum(iv.kind == "micro" for ivs in predictions.values() for iv in ivs)
  print(f"{config.data.dataset}: {len(videos)} videos; {run}: {micro} spotted "
        f"micro-expressions; recogniser: {model_used}")
  labelled, rows = {}, []
  for key in tqdm(sorted(predictions), desc="recognising", unit="video"):
    v = videos[key]
    labelled[key], classes = recognition.label_intervals(
        v.frames, v.frame_numbers, predictions[key], models, f"{key[0]}/{key[1]}", _BATCH.value)
    spotted = [iv for iv in labelled[key] if iv.kind == "micro"]
    rows.append({"subject": key[0], "video": key[1], "micro": [
        {"onset": iv.onset, "apex": iv.apex, "offset": iv.offset, **c}
        for iv, c in zip(spotted, classes)]})
  truths = {key: list(v.intervals) for key, v in videos.items()}
  annotated = sorted({metrics.class_name(iv) for ivs in truths.values() for iv in ivs
                      if iv.kind == "micro"})
  if not annotated or annotated == [metrics.OTHERS]:
    raise InputError(f"{config.data.dataset}: the annotated micro-expressions carry no emotion "
                     "class (SAMM-LV has none): STRS does not apply")
  classes = _CLASSES.value or annotated
  for name in classes:
    recognition.megc_label(name)
  score = metrics.strs(truths, labelled, kinds=("micro",), classes=classes)
  out = pathlib.Path(_OUT.value) if _OUT.value else run / "strs.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(
      {"dataset": config.data.dataset, "run": str(run), "recogniser": model_used,
       "recogniser_workdir": str(_RECOGNISER.value), "classes": classes, **score.as_dict(),
       "videos": rows}, indent=1) + "\n")
  s = score.as_dict()
  print(f"STRS {s['STRS']:.3f} = spotting F1 {s['F1-score spotting']:.3f} (TP {s['TP spotting']}, "
        f"FP {s['FP spotting']}, FN {s['FN spotting']}) x analysis F1 "
        f"{s['F1-score analysis']:.3f} (UF1 {s['UF1 analysis']:.3f}, UAR {s['UAR analysis']:.3f}; "
        f"classes {', '.join(classes)})")
  cli.print_outputs(out.parent, [out], time.time() - start)


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "The spotting config the run was made with, "
                                  "e.g. configs/spotting_casme2_lv.py:synthetic.",
                                  lock_config=True)
  flags.mark_flags_as_required(["config"])
  cli.run(main)
