r"""Evaluate a trained SAT3D run against the 2D editing baselines on held-out pairs.

  python launch/evaluate.py --workdir workdirs/sat3d_ffhq --pairs 100 --out out/eval.json
  python launch/evaluate.py --workdir W --pairs 20 --views 3 --attributes hairstyle,smile \
      --judge_clip weights/clip-vit-large-patch14 --out out/eval.json

Per target attribute and method (SAT3D; style mixing of the coarse / middle / fine w layers; a
full swap of the style channels most correlated with the attribute; the unedited source) it
measures the transfer score, the preservation score, the identity similarity and the multi-view
spread, judged by the run's CLIP with held-out phrasings of the descriptor groups (and by
--judge_clip, a second CLIP, if given). sat3d_jax/evaluation.py defines the protocol and every
metric exactly. Writes FILE.json and the same results as a Markdown table in FILE.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _finite_or_none(x):
  """JSON has no NaN: an undefined ratio (e.g. no source/reference gap at all) becomes null."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _finite_or_none(v) for k, v in x.items()}
  if isinstance(x, list):
    return [_finite_or_none(v) for v in x]
  return x


def main(argv: Optional[Sequence[str]] = None) -> int:
  from sat3d_jax import evaluation  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
  p.add_argument("--workdir", required=True, type=pathlib.Path, help="trained SAT3D run")
  p.add_argument("--pairs", required=True, type=int, help="number of held-out pairs")
  p.add_argument("--out", required=True, type=pathlib.Path,
                 help="results JSON (the Markdown table goes next to it, .md)")
  p.add_argument("--views", type=int, default=3, help="views per image (yaw sweep)")
  p.add_argument("--yaw_range", type=float, default=evaluation.DEFAULT_YAW_RANGE,
                 help="yaw sweep +- radians")
  p.add_argument("--delta", type=float, default=1.0, help="SAT3D editing intensity")
  p.add_argument("--attributes", default="",
                 help="comma-separated target attributes (default: all the run measures)")
  p.add_argument("--distance", choices=("l1", "sym_kl"), default="l1",
                 help="attribute distance of the scores")
  p.add_argument("--judge_clip", default=None,
                 help="a second local Hugging Face CLIP directory to judge with")
  p.add_argument("--correlation_samples", type=int, default=256,
                 help="samples for the channel-swap baseline's correlations")
  p.add_argument("--swap_channels", type=int, default=0,
                 help="channels the swap baseline copies per attribute (0 = as many as "
                      "SAT3D's mask spends on it)")
  p.add_argument("--seed_base", type=int, default=evaluation.EVAL_SEED_BASE,
                 help="first seed of the evaluation pairs")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--batch", type=int, default=8, help="images rendered per call")
  args = p.parse_args(argv)
  if args.pairs < 1 or args.views < 1 or args.batch < 1 or args.correlation_samples < 2 \
      or args.swap_channels < 0:
    p.error("--pairs, --views, --batch must be >= 1, --correlation_samples >= 2 and "
            "--swap_channels >= 0")
  if args.out.suffix != ".json":
    p.error(f"--out must name a .json file, got {args.out}")
  names = [a.strip() for a in args.attributes.split(",") if a.strip()] or None

  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # its notice that Flax classes end in v5
  from sat3d_jax import run_io, transfer  # pylint: disable=g-import-not-at-top

  try:  # cheap checks first: a misspelt attribute is reported before any model loads
    run_io.load_config(args.workdir)
    recorded = run_io.recorded_attributes(args.workdir)
    if names and recorded:
      transfer.targets_from_names(names, recorded)
    print(f"loading the run in {args.workdir}")
    run = run_io.load_run(args.workdir, args.step)
    if names:
      run.targets(names)
    judges = [evaluation.heldout_judge(run.model.qmm)]
    if args.judge_clip:
      print(f"loading the second judge CLIP {args.judge_clip}")
      judges.append(evaluation.clip_judge(args.judge_clip, run.model.qmm))
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"  step {run.step}; {len(run.attributes)} attributes measured; judges: "
        f"{', '.join(j.name for j in judges)}")
  print(f"estimating channel correlations on {args.correlation_samples} samples, then "
        f"evaluating {args.pairs} pairs x {args.views} views")
  report = evaluation.evaluate(
      run, judges, args.pairs, num_views=args.views, yaw_range=args.yaw_range,
      delta=args.delta, attributes=names, distance=args.distance,
      correlation_samples=args.correlation_samples, swap_count=args.swap_channels,
      seed_base=args.seed_base, batch=args.batch)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(_finite_or_none(report), indent=2) + "\n")
  markdown = evaluation.markdown_report(report)
  md_path = args.out.with_suffix(".md")
  md_path.write_text(markdown)
  print()
  print(markdown)
  print(f"wrote {args.out.resolve()} and {md_path.resolve()}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
