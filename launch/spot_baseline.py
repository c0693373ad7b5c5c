"""The MDMD baseline (MEGC 2020) on a spotting config's videos, scored as launch/spot_sweep.py is.

  python launch/spot_baseline.py --config configs/spotting_casme2_lv.py:synthetic --workdir W
  python launch/spot_baseline.py --config configs/spotting_samm_lv.py --workdir W   # SAMM-LV

The same videos as the config's LOSO sweep (frldgt_jax/spotting/corpus.py: the same alignment,
crop size and frame stride), spotted face track by face track by MDMD
(frldgt_jax/spotting/mdmd.py, parameters for the videos' frame rate: `params_for_fps`, which gives
CAS(ME)^2's at 30 fps and SAMM's at 200 fps). MDMD learns nothing, so there are no folds to
train: its per-subject scores sit beside the sweep's per-fold ones. Writes W/predictions.json and
W/results.json in spot_sweep.py's format, plus the seconds MDMD took and the frames it read.
"""
import dataclasses
import json
import time

from launch.common import cli  # first: quiet TensorFlow start-up
from absl import flags  # noqa: E402  (after cli)

from launch.trainer import cli as trainer_cli  # noqa: E402

_MIN_TRACK_S = flags.DEFINE_float("min_track_seconds", 0.5, "Shorter face tracks are not "
                                  "spotted (as launch/spot_sweep.py).")


def main(argv):
  trainer_cli.start(argv)
  from frldgt_jax.spotting import corpus, mdmd, metrics  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  config = trainer_cli.FLAGS.config
  workdir = trainer_cli.resolve_workdir()
  videos = corpus.load_videos(config)
  frames = sum(len(v.frames) for v in videos)
  print(f"{config.data.dataset}: {len(videos)} videos, {frames} frames at "
        f"{config.data.fps:g} fps; MDMD (no training)")
  min_frames = max(2, int(round(_MIN_TRACK_S.value * float(config.data.fps))))
  start = time.perf_counter()
  with tqdm(total=frames, desc="MDMD", unit="frame") as bar:
    def spot(v, a, b):
      found = mdmd.spot(v.frames[a:b], mdmd.params_for_fps(v.fps),
                        frame_numbers=v.frame_numbers[a:b])
      bar.update(b - a)
      return found
    predictions = corpus.spot_by_track(videos, spot, min_frames)
  seconds = time.perf_counter() - start
  truths = {(v.subject, v.name): list(v.intervals) for v in videos}
  report = metrics.loso_report(truths, predictions)
  workdir.mkdir(parents=True, exist_ok=True)
  rows = [{"subject": s, "video": name, "intervals": [dataclasses.asdict(iv) for iv in ivs]}
          for (s, name), ivs in predictions.items()]
  (workdir / "predictions.json").write_text(json.dumps(rows, indent=1) + "\n")
  (workdir / "results.json").write_text(json.dumps(
      {"dataset": config.data.dataset, "method": "mdmd", "frames": frames,
       "seconds": round(seconds, 1), **report}, indent=1) + "\n")
  print("\n".join(metrics.summary_lines(report["pooled"])))
  print(f"MDMD: {seconds:.0f} s for {frames} frames "
        f"({seconds / frames * float(config.data.fps) * 60:.0f} s per minute of video)")
  print(f"results.json: {workdir / 'results.json'}")


if __name__ == "__main__":
  trainer_cli.define_flags("Spotting config file, e.g. configs/spotting_casme2_lv.py:synthetic.")
  cli.run(main, tensorflow="optional")
