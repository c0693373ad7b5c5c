"""Leave-one-subject-out spotting: train every fold, spot its held-out subject, score (MEGC).

  python launch/spot_sweep.py --config configs/spotting_casme2_lv.py:synthetic --workdir W
  python launch/spot_sweep.py --config configs/spotting_casme2_lv.py --workdir W   # CAS(ME)^2
  python launch/spot_sweep.py --config configs/spotting_casme2_lv.py:synthetic --workdir W \
      --config.seed=1

All folds train in one driver run (launch/tasks/spotting.py: the fold is the driver's model
axis) in W/stacked/, each with config.total_steps steps; nothing is selected on the held-out
subject: each fold's final parameters spot that subject's videos, face track by face track
(frldgt_jax/spotting/spotter.py), and the spotted intervals of all folds are scored together
with the MEGC metric (frldgt_jax/spotting/metrics.py: IoU >= 0.5, F1 per type and overall).
Running the same command again resumes the training from its newest checkpoint.

Writes in W: predictions.json (per held-out video: its fold and the spotted intervals, frames as
the annotation numbers them) and results.json (the pooled scores and each fold's, as
metrics.SpottingResult.as_dict gives them).

launch/sweep.py is FRL-DGT's sweep (clip logits, UF1/UAR, its own resume bookkeeping per fold);
spotting trains all folds as one driver run and scores intervals, so it has this command.
"""
import dataclasses
import json

from launch.common import cli  # first: quiet TensorFlow start-up
from absl import flags  # noqa: E402  (after cli)

from launch.trainer import cli as trainer_cli  # noqa: E402

_MIN_TRACK_S = flags.DEFINE_float("min_track_seconds", 0.5, "Shorter face tracks are not "
                                  "spotted.")


def main(argv):
  trainer_cli.start(argv)
  from frldgt_jax.spotting import corpus, metrics, spotter  # pylint: disable=g-import-not-at-top
  from launch.tasks import spotting as task_lib  # pylint: disable=g-import-not-at-top
  from launch.trainer import ConfigError, train_and_evaluate  # pylint: disable=g-import-not-at-top
  config = trainer_cli.FLAGS.config
  if config.final_model:
    raise ConfigError("config.final_model=True trains one model on every video: train it with "
                      "launch/train.py; this command runs the LOSO folds")
  workdir = trainer_cli.resolve_workdir()
  data = corpus.prepare(config, corpus.load_videos(config))
  print(f"{config.data.dataset}: {len(data.videos)} videos of {len(data.subjects)} subjects, "
        f"{len(data.labels)} frames at {config.data.fps:g} fps; {len(data.subjects)} folds")
  task = task_lib.make_task(config, data=data)
  result = train_and_evaluate(config, workdir / "stacked", task=task)
  if result.stopped_by_signal is not None:
    raise SystemExit(128 + result.stopped_by_signal)
  min_frames = max(2, int(round(_MIN_TRACK_S.value * float(config.data.fps))))
  truths, predictions, rows = {}, {}, []
  for slot in task.slots:
    if slot.dummy:
      continue
    fold_spotter = spotter.load_spotter(workdir / "stacked", fold=slot.fold)
    held = [data.videos[i] for i in data.fold_videos(slot.fold)[1]]
    spotted = corpus.spot_by_track(
        held, lambda v, a, b, sp=fold_spotter: sp.spot(v.frames[a:b], v.frame_numbers[a:b],
                                                       v.fps).intervals, min_frames)
    truths.update({(v.subject, v.name): list(v.intervals) for v in held})
    predictions.update(spotted)
    rows += [{"fold": slot.fold, "subject": s, "video": name,
              "intervals": [dataclasses.asdict(iv) for iv in ivs]}
             for (s, name), ivs in spotted.items()]
  report = metrics.loso_report(truths, predictions)
  (workdir / "predictions.json").write_text(json.dumps(rows, indent=1) + "\n")
  (workdir / "results.json").write_text(json.dumps(
      {"dataset": config.data.dataset, "seed": int(config.seed), "steps": int(result.step),
       **report}, indent=1) + "\n")
  print("\n".join(metrics.summary_lines(report["pooled"])))
  print(f"predictions.json: {workdir / 'predictions.json'}")
  print(f"results.json: {workdir / 'results.json'}")


if __name__ == "__main__":
  trainer_cli.define_flags("Spotting config file, e.g. configs/spotting_casme2_lv.py:synthetic.")
  cli.run(main, tensorflow="optional")
