r"""Writes a generated micro-expression corpus in the CASME II / SAMM / SMIC-HS layouts.

  python launch/make_synthetic.py --out out/me_corpus
  python launch/make_synthetic.py --out out/me_corpus --subjects 2 --clips_per_subject 4 --seed 3
  python launch/make_synthetic.py --out out/me_hard --nohead_rotation --noillumination \
      --nosensor_noise --nojpeg --noblinks --head_translation_px 2.5   # drift alone, stronger
  python launch/make_synthetic.py --long --out out/long_corpus   # long videos (spotting)

Defaults: 4 subjects per database x 6 composite clips (72 clips, about 41 negative /
18 positive / 13 surprise like the MEGC2019 composite's 250/109/83) plus 6 clips outside the
composite. What is written and why: frldgt_jax/data/synthetic.py. With --long: the long-video
corpus in the CAS(ME)^2 / SAMM Long Videos / CAS(ME)^3 Part A layouts instead
(frldgt_jax/data/synthetic_long.py, docs/spotting_data.md); --subjects, --seed and --overwrite
apply to it too.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import os

from absl import app, flags

from frldgt_jax.data import synthetic, synthetic_long

_OUT = flags.DEFINE_string("out", None, "Corpus root directory (created; must be empty).")
_SUBJECTS = flags.DEFINE_integer("subjects", 4, "Subjects per database.")
_CLIPS = flags.DEFINE_integer("clips_per_subject", 6, "Composite clips per subject.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (the corpus is deterministic for it).")
_DATABASES = flags.DEFINE_list("databases", list(synthetic.DATABASES),
                               "Databases to write: casme2, samm, smic.")
_EXTRA = flags.DEFINE_bool("extra_clips", True,
                           "Also write clips outside the composite (CASME II others/fear/sadness, "
                           "SAMM Other) that the builders must filter out.")
_FAULTS = flags.DEFINE_bool("faults", True, "Reproduce the real files' annotation faults.")
_DISTRACTORS = flags.DEFINE_bool("distractors", True,
                                 "Master switch of the nuisances below (off: none of them).")
_DEFAULTS = synthetic.CorpusConfig()
# One switch and one magnitude per nuisance (frldgt_jax/data/synthetic.py, CorpusConfig); raw
# pixels are those of a CASME II 640 x 480 frame (the other databases' faces scale with their size).
_NUISANCE_HELP = {
    "head_translation": ("rigid head drift (translation)", "drift wave amplitude per axis, raw px"),
    "head_rotation": ("in-plane head rotation drift", "drift wave amplitude, degrees"),
    "illumination": ("illumination flicker", "upper end of the 100 Hz gain amplitude"),
    "sensor_noise": ("Gaussian sensor noise", "upper end of the noise sigma, grey levels"),
    "jpeg": ("JPEG compression of .jpg frames (off: quality 100)", "JPEG quality 1..100"),
    "blinks": ("blinks (never at the onset)", "share of clips with a blink, 0..1"),
}
_SWITCHES, _MAGNITUDES = {}, {}
for _name, (_what, _unit) in _NUISANCE_HELP.items():
  _field = synthetic.NUISANCES[_name]
  _SWITCHES[_name] = flags.DEFINE_bool(_name, getattr(_DEFAULTS, _name), f"Apply {_what}.")
  _define = flags.DEFINE_integer if _field == "jpeg_quality" else flags.DEFINE_float
  _MAGNITUDES[_field] = _define(_field, getattr(_DEFAULTS, _field),
                                f"{_what}: {_unit}.")
_AU = flags.DEFINE_float("au_amplitude_px", _DEFAULTS.au_amplitude_px,
                         "Upper end of the action units' peak displacement, raw px of a CASME II "
                         "face (the default is 3 px of a 128-px aligned crop).")
_CROPPED = flags.DEFINE_bool("cropped", True, "Also write the registered face-crop sets.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a corpus generated earlier in --out.")
_LONG = flags.DEFINE_bool("long", False, "Write the long-video (spotting) corpus instead.")
_VIDEOS = flags.DEFINE_integer("videos_per_subject", 1, "--long: videos per subject.")
_LONG_SECONDS = flags.DEFINE_float("long_seconds", 20.0,
                                   "--long: length of a CAS(ME)^2 / CAS(ME)^3 video (30 fps).")
_SAMM_SECONDS = flags.DEFINE_float("samm_seconds", 5.0,
                                   "--long: length of a SAMM Long Videos video (200 fps).")
flags.mark_flag_as_required("out")


def _main_long():
  import tqdm  # pylint: disable=g-import-not-at-top
  config = synthetic_long.LongCorpusConfig(
      subjects=_SUBJECTS.value, videos_per_subject=_VIDEOS.value, seed=_SEED.value,
      seconds=(("casme2_lv", _LONG_SECONDS.value), ("samm_lv", _SAMM_SECONDS.value),
               ("casme3_a", _LONG_SECONDS.value)))
  total = 3 * config.subjects * config.videos_per_subject
  print(f"Generating the long-video corpus in {_OUT.value}: {config.subjects} subject(s) x "
        f"{config.videos_per_subject} video(s) per database, seed {config.seed}")
  with tqdm.tqdm(total=total, unit="video") as bar:
    synthetic_long.generate_long_corpus(_OUT.value, config, overwrite=_OVERWRITE.value,
                                        progress=bar.update)
  print(f"Corpus: {os.path.abspath(_OUT.value)}")
  print(f"  truth: {os.path.join(os.path.abspath(_OUT.value), 'truth.json')}")


def main(argv):
  del argv
  import cv2  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  cv2.setNumThreads(1)  # small images: threads cost more than they give on shared machines
  if _LONG.value:
    _main_long()
    return
  try:
    config = synthetic.CorpusConfig(
        subjects=_SUBJECTS.value, clips_per_subject=_CLIPS.value, seed=_SEED.value,
        databases=tuple(_DATABASES.value), extra_clips=_EXTRA.value, faults=_FAULTS.value,
        distractors=_DISTRACTORS.value, cropped=_CROPPED.value,
        au_amplitude_px=_AU.value, **{k: f.value for k, f in _SWITCHES.items()},
        **{k: f.value for k, f in _MAGNITUDES.items()})
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(f"Generating a synthetic micro-expression corpus in {_OUT.value}: "
        f"{config.subjects} subject(s) x {config.clips_per_subject} composite clip(s) per "
        f"database ({', '.join(config.databases)}), seed {config.seed}")
  bar = tqdm.tqdm(total=len(synthetic.plan_corpus(config)), unit="clip")

  def progress(done, total, plan):
    del total
    bar.set_postfix_str(f"{plan.database}/{plan.subject_dir}/{plan.sample_dir}")
    bar.n = done
    bar.refresh()

  try:
    manifest = synthetic.generate_corpus(_OUT.value, config, overwrite=_OVERWRITE.value,
                                         progress=progress)
  except FileExistsError as e:
    bar.close()
    raise app.UsageError(str(e)) from e
  bar.close()
  counts = manifest["counts"]
  print(f"{counts['clips']} clips ({counts['composite']} in the composite: "
        f"{counts['negative']} negative, {counts['positive']} positive, "
        f"{counts['surprise']} surprise; {counts['outside']} outside) in "
        f"{manifest['seconds']:.1f} s")
  for database, c in counts["per_database"].items():
    print(f"  {database}: {c['clips']} clips, {c['composite']} composite "
          f"({c['negative']}/{c['positive']}/{c['surprise']})")
  print(f"Corpus: {os.path.abspath(_OUT.value)}")
  print(f"  manifest: {os.path.join(os.path.abspath(_OUT.value), 'manifest.json')}")
  print(f"  composite list: {os.path.join(os.path.abspath(_OUT.value), 'composite_3class.csv')}")


if __name__ == "__main__":
  cli.run(main)
