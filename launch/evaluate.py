r"""Evaluate a trained SAT3D run against the 2D editing baselines on held-out pairs.

  python launch/evaluate.py --workdir workdirs/sat3d_ffhq --pairs 100 --out out/eval.json
  python launch/evaluate.py --workdir W --pairs 20 --views 3 --attributes hairstyle,smile \
      --judge_clip weights/clip-vit-large-patch14 --out out/eval.json

Per target attribute and method (SAT3D; style mixing of the coarse / middle / fine w layers; a
full swap of the style channels most correlated with the attribute; the unedited source) it
measures the transfer score, the preservation score, the identity (dlib's face-descriptor
distance of edit and source, with the share under 0.6, dlib's same-person threshold, and the
count of images without a face; faces only: cats and cars say "not applicable"; needs the extra
[faces]), the CLIP identity (`identity_clip`) and the multi-view spread, judged by the run's CLIP
with held-out phrasings of the descriptor groups (and by --judge_clip, a second CLIP, if
given). sat3d_jax/evaluation.py defines the protocol and every metric exactly. Writes FILE.json
and the same results as a Markdown table in FILE.md.
"""
from __future__ import annotations

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import json
import math
import pathlib

from absl import app, flags

from sat3d_jax import evaluation

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained SAT3D run directory.", required=True)
_PAIRS = flags.DEFINE_integer("pairs", None, "Number of held-out pairs.", required=True,
                              lower_bound=1)
_OUT = flags.DEFINE_string("out", None,
                           "Results .json file (the Markdown table goes next to it, .md).",
                           required=True)
_VIEWS = flags.DEFINE_integer("views", 3, "Views per image (a yaw sweep).", lower_bound=1)
_YAW_RANGE = flags.DEFINE_float("yaw_range", evaluation.DEFAULT_YAW_RANGE,
                                "Yaw sweep +- radians.")
_DELTA = flags.DEFINE_float("delta", 1.0, "SAT3D editing intensity.")
_ATTRIBUTES = flags.DEFINE_list("attributes", None,
                                "Target attributes, comma-separated (default: all the run "
                                "measures).")
_DISTANCE = flags.DEFINE_enum("distance", "l1", ["l1", "sym_kl"],
                              "Attribute distance of the scores.")
_JUDGE_CLIP = flags.DEFINE_string("judge_clip", None,
                                  "A second local Hugging Face CLIP directory to judge with.")
_CORRELATION_SAMPLES = flags.DEFINE_integer(
    "correlation_samples", 256, "Samples for the channel-swap baseline's correlations.",
    lower_bound=2)
_SWAP_CHANNELS = flags.DEFINE_integer(
    "swap_channels", 0, "Channels the swap baseline copies per attribute (0 = as many as "
    "SAT3D's mask spends on it).", lower_bound=0)
_SEED_BASE = flags.DEFINE_integer("seed_base", evaluation.EVAL_SEED_BASE,
                                  "First seed of the evaluation pairs.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_BATCH = flags.DEFINE_integer("batch", 8, "Images rendered per call.", lower_bound=1)
_FACE_IDENTITY = flags.DEFINE_bool("face_identity", True,
                                   "Measure identity with dlib's face descriptor (face runs; "
                                   "extra [faces]).")
_FACE_MODELS = flags.DEFINE_string("face_models", None,
                                   "Folder of dlib's model files (default: the "
                                   "face-recognition-models package).")
FACE_DOMAINS = ("ffhq",)


def face_identity(domain: str):
  """(evaluation.FaceIdentity or None, note): dlib's descriptor for a face domain."""
  if domain not in FACE_DOMAINS:
    return None, f"not applicable: domain {domain!r} is not faces"
  if not _FACE_IDENTITY.value:
    return None, "not measured (--noface_identity)"
  from launch.common import faces  # pylint: disable=g-import-not-at-top
  if _FACE_MODELS.value:
    faces.set_model_dir(_FACE_MODELS.value)
  faces.ensure_models("hog", "predictor68", "descriptor")  # missing: one line, before any work

  def describe(image):
    return faces.face_descriptor(image, "rendered image")
  return evaluation.FaceIdentity("dlib_face_recognition_resnet_model_v1", describe,
                                 faces.SAME_PERSON_DISTANCE), ""


def _finite_or_none(x):
  """JSON has no NaN: an undefined ratio (e.g. no source/reference gap at all) becomes null."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _finite_or_none(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_finite_or_none(v) for v in x]
  return x


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  workdir, out = pathlib.Path(_WORKDIR.value), pathlib.Path(_OUT.value)
  if out.suffix != ".json":
    raise app.UsageError(f"--out must name a .json file, got {out}")
  names = [a for a in _ATTRIBUTES.value or () if a] or None

  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # its notice that Flax classes end in v5
  from sat3d_jax import run_io, transfer  # pylint: disable=g-import-not-at-top

  # Cheap checks first: a misspelt attribute is reported before any model loads.
  run_io.load_config(workdir)
  recorded = run_io.recorded_attributes(workdir)
  if names and recorded:
    transfer.targets_from_names(names, recorded)
  print(f"loading the run in {workdir}")
  run = run_io.load_run(workdir, _STEP.value)
  if names:
    run.targets(names)
  judges = [evaluation.heldout_judge(run.model.qmm)]
  if _JUDGE_CLIP.value:
    print(f"loading the second judge CLIP {_JUDGE_CLIP.value}")
    judges.append(evaluation.clip_judge(_JUDGE_CLIP.value, run.model.qmm))
  print(f"  step {run.step}; {len(run.attributes)} attributes measured; judges: "
        f"{', '.join(j.name for j in judges)}")
  identity, note = face_identity(str(run.config.get("domain", "")))
  print(f"  identity: {identity.name if identity else note}")
  print(f"estimating channel correlations on {_CORRELATION_SAMPLES.value} samples, then "
        f"evaluating {_PAIRS.value} pairs x {_VIEWS.value} views")
  report = evaluation.evaluate(
      run, judges, _PAIRS.value, num_views=_VIEWS.value, yaw_range=_YAW_RANGE.value,
      delta=_DELTA.value, attributes=names, distance=_DISTANCE.value,
      correlation_samples=_CORRELATION_SAMPLES.value, swap_count=_SWAP_CHANNELS.value,
      seed_base=_SEED_BASE.value, batch=_BATCH.value, face_identity=identity,
      identity_note=note)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(_finite_or_none(report), indent=2) + "\n")
  markdown = evaluation.markdown_report(report)
  md_path = out.with_suffix(".md")
  md_path.write_text(markdown)
  print()
  print(markdown)
  print(f"wrote {out.resolve()} and {md_path.resolve()}")


if __name__ == "__main__":
  cli.run(main)
