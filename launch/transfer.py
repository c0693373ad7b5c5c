r"""Transfer attributes from a reference to a source with a trained SAT3D run, in 3D.

  python launch/transfer.py --workdir workdirs/sat3d_ffhq --source 12 --reference 34 \
      --attributes hairstyle,beard [--delta 1.0] --out out/transfer
  python launch/transfer.py --workdir W --source photos.npz --source_index 2 \
      --reference 7 --attributes smile --out out/t2

--source / --reference: an integer seed (z = numpy RandomState(seed).randn(z_dim), mapped with the
run's truncation and the frontal camera) or a latent file (.npz with 'ws' [N, num_ws, w_dim],
optional 'c' [N, 25] and 'generator'; sat3d_jax/pairs.py), row --source_index /
--reference_index. A latent file must come from the run's generator (its config.generator):
invert photos with `launch/invert.py --generator <that path>`; a file whose ws rows do not fit
(num_ws, w_dim) is refused, naming both. A latent file's camera 'c' (the view its photo was
taken from) adds a grid column rendered from that camera. A latent file's 'generator'
(pivotal-tuned params of the same architecture) renders that input, and the result too when it
is the source's.

Writes to --out:
  grid.png            rows source / reference / result; columns the input cameras (if any), then
                      a yaw sweep of --views cameras from +--yaw_range to -yaw_range
  turntable.mp4       the result on the turntable of EG3D's gen_videos.py (--frames, 0 = none)
  result_styles.npz   flat StyleSpace vectors 'source', 'reference', 'result' [C], 'layers',
                      'dims' (the official layer order), 'attributes', 'delta'
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from launch.generate import (VIDEO_PITCH_OFFSET, VIDEO_PITCH_RANGE,  # noqa: E402
                             VIDEO_YAW_RANGE, _write_mp4, to_uint8)


class InputError(ValueError):
  """A --source / --reference that cannot be used (message names the file and the problem)."""


def parse_input(text: str) -> tuple[str, object]:
  """('seed', int) for an integer, else ('file', path)."""
  try:
    return "seed", int(text)
  except ValueError:
    return "file", pathlib.Path(text)


def resolve_input(role: str, text: str, index: int, model, config) -> dict:
  """{'ws' [1, num_ws, w_dim], 'c' [25] or None, 'params', 'generator' (path or None),
  'label'} for a seed or a latent-file row."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sat3d_jax import evaluation, pairs  # pylint: disable=g-import-not-at-top
  from sat3d_jax.task import build_generator  # pylint: disable=g-import-not-at-top

  gen = model.generator
  kind, value = parse_input(text)
  if kind == "seed":
    z = evaluation.latents_for_seeds([value], gen.z_dim)
    ws = np.asarray(jax.jit(model.ws_from_z)(gen.params, jnp.asarray(z)))
    return {"ws": ws, "c": None, "params": gen.params, "generator": None,
            "label": f"seed {value}"}
  path = value
  if not path.is_file():
    raise InputError(f"--{role} {text!r} is neither an integer seed nor an existing latent file")
  try:
    latents = pairs.read_latent_file(str(path))
  except ValueError as e:
    raise InputError(str(e)) from None
  ws_all = latents["ws"]
  if not 0 <= index < ws_all.shape[0]:
    raise InputError(f"{path}: --{role}_index {index} out of range (the file has "
                     f"{ws_all.shape[0]} rows)")
  if ws_all.shape[1:] != (gen.num_ws, gen.w_dim):
    raise InputError(
        f"{path}: its 'ws' rows are (num_ws, w_dim) = {tuple(ws_all.shape[1:])}, but the run's "
        f"generator {config.generator} needs {(gen.num_ws, gen.w_dim)}: the latent was written "
        "for another generator. Invert with the run's generator (launch/invert.py --generator "
        "...), or train on the generator the latent came from (--config.generator=...).")
  params, tuned = gen.params, latents.get("generator")
  if tuned:
    tuned_path = pathlib.Path(tuned)
    if not tuned_path.is_absolute() and not tuned_path.exists():
      tuned_path = path.parent / tuned_path  # relative to the latent file
    if not tuned_path.exists():
      raise InputError(f"{path}: its pivotal-tuned generator {tuned!r} does not exist")
    tuned_config = config.copy_and_resolve_references()
    tuned_config.generator = str(tuned_path)  # same modconv / dtype / ray_chunk as the run
    try:
      tuned_gen = build_generator(tuned_config)
    except (OSError, ValueError) as e:
      raise InputError(f"{path}: cannot load its pivotal-tuned generator {tuned!r}: {e}") from None
    if list(tuned_gen.style_layers) != list(gen.style_layers) or \
        tuned_gen.num_ws != gen.num_ws or tuned_gen.img_resolution != gen.img_resolution:
      raise InputError(f"{path}: its generator {tuned_path} has another architecture than the "
                       "run's generator")
    params, tuned = tuned_gen.params, str(tuned_path)
  c = latents["c"][index] if "c" in latents else None
  return {"ws": ws_all[index:index + 1], "c": c, "params": params, "generator": tuned,
          "label": f"{path} row {index}"}


def turntable_cameras(model, frames: int) -> np.ndarray:
  """[frames, 25] cameras of EG3D's gen_videos.py turntable (as launch/generate.py)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  t = 2 * math.pi * np.arange(frames) / max(frames, 1)
  views = np.stack([VIDEO_YAW_RANGE * np.sin(t),
                    VIDEO_PITCH_OFFSET + VIDEO_PITCH_RANGE * np.cos(t)], -1)
  return np.asarray(model.cameras(jnp.asarray(views, jnp.float32)))


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
  p.add_argument("--workdir", required=True, type=pathlib.Path, help="trained SAT3D run")
  p.add_argument("--source", required=True, help="seed or latent .npz")
  p.add_argument("--reference", required=True, help="seed or latent .npz")
  p.add_argument("--source_index", type=int, default=0, help="row of a source latent file")
  p.add_argument("--reference_index", type=int, default=0,
                 help="row of a reference latent file")
  p.add_argument("--attributes", required=True,
                 help="comma-separated target attributes, e.g. hairstyle,beard")
  p.add_argument("--delta", type=float, default=1.0, help="editing intensity")
  p.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
  p.add_argument("--views", type=int, default=5, help="grid columns of the yaw sweep")
  p.add_argument("--yaw_range", type=float, default=0.4, help="yaw sweep +- radians")
  p.add_argument("--frames", type=int, default=60, help="turntable frames (0 = no video)")
  p.add_argument("--fps", type=int, default=30)
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--batch", type=int, default=8, help="images rendered per call")
  args = p.parse_args(argv)
  if args.views < 1 or args.frames < 0 or args.batch < 1:
    p.error("--views and --batch must be >= 1, --frames >= 0")
  names = [a.strip() for a in args.attributes.split(",") if a.strip()]
  if not names:
    p.error("--attributes is empty")

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # its notice that Flax classes end in v5
  from sat3d_jax import evaluation, run_io, transfer  # pylint: disable=g-import-not-at-top

  for role, text in (("source", args.source), ("reference", args.reference)):
    kind, value = parse_input(text)
    if kind == "file" and not value.is_file():
      print(f"error: --{role} {text!r} is neither an integer seed nor an existing latent file",
            file=sys.stderr)
      return 2
  try:  # cheap checks first: a misspelt attribute is reported before any model loads
    run_io.load_config(args.workdir)
    recorded = run_io.recorded_attributes(args.workdir)
    if recorded:
      transfer.targets_from_names(names, recorded)
    print(f"loading the run in {args.workdir}")
    run = run_io.load_run(args.workdir, args.step)
    targets = run.targets(names)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  model, cfg = run.model, run.config
  gen = model.generator
  print(f"  step {run.step}; generator {cfg.generator} ({gen.img_resolution} px, "
        f"{model.num_channels} style channels, {model.num_editable} editable); "
        f"attributes: {', '.join(run.attributes)}")
  try:
    src = resolve_input("source", args.source, args.source_index, model, cfg)
    ref = resolve_input("reference", args.reference, args.reference_index, model, cfg)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for role, x in (("source", src), ("reference", ref)):
    print(f"  {role}: {x['label']}" + (f"; rendered with its pivotal-tuned generator "
                                      f"{x['generator']}" if x["generator"] else ""))

  to_flat = jax.jit(model.flat_styles)
  s_src = np.asarray(to_flat(src["params"], jnp.asarray(src["ws"])))
  s_ref = np.asarray(to_flat(ref["params"], jnp.asarray(ref["ws"])))
  s_edit = np.asarray(run.edit(jnp.asarray(s_src), jnp.asarray(s_ref), targets, args.delta))
  mass = run.probabilities()[[run.attributes.index(a) for a in names]].sum(0)
  print(f"  transferring {', '.join(names)} with delta {args.delta}: mask mass "
        f"{float(np.sum(mass)):.1f} of {model.num_editable} editable channels")

  sweep = evaluation.yaw_sweep(args.views, args.yaw_range)
  cams = [np.asarray(model.cameras(jnp.asarray(sweep)))]
  extra = [(role, x["c"]) for role, x in (("source", src), ("reference", ref))
           if x["c"] is not None]
  if extra:
    cams.insert(0, np.stack([c for _, c in extra]).astype(np.float32))
    print("  grid columns " + ", ".join(f"{i}: the {role}'s camera"
                                        for i, (role, _) in enumerate(extra))
          + f", then a yaw sweep of {args.views}")
  cams = np.concatenate(cams)
  renderer = evaluation.StyleRenderer(gen, args.batch)
  # The result is the source person edited: it is rendered with the source's generator.
  rows = [renderer.render(src["params"], s_src, cams)[0],
          renderer.render(ref["params"], s_ref, cams)[0],
          renderer.render(src["params"], s_edit, cams)[0]]
  if src["generator"]:
    print("  the result is rendered with the source's pivotal-tuned generator")
  grid = np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)

  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  args.out.mkdir(parents=True, exist_ok=True)
  written = [args.out / "grid.png"]
  iio.imwrite(written[0], grid)
  np.savez(args.out / "result_styles.npz", source=s_src[0], reference=s_ref[0],
           result=s_edit[0], layers=np.asarray([n for n, _ in gen.style_layers]),
           dims=np.asarray([d for _, d in gen.style_layers]), attributes=np.asarray(names),
           delta=np.float32(args.delta))
  written.append(args.out / "result_styles.npz")
  if args.frames:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    video_cams = turntable_cameras(model, args.frames)
    with tqdm(total=args.frames, desc="turntable", unit="frame") as bar:
      frames = renderer.render_rows(src["params"], np.repeat(s_edit, args.frames, 0),
                                    video_cams, on_batch=lambda b: bar.update(len(b)))
    _write_mp4(args.out / "turntable.mp4", to_uint8(frames), args.fps)
    written.append(args.out / "turntable.mp4")
  print(f"wrote {len(written)} files to {args.out.resolve()}:")
  print(f"  {written[0]}  ({grid.shape[1]}x{grid.shape[0]}: rows source / reference / result, "
        f"{len(cams)} views)")
  for f in written[1:]:
    print(f"  {f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
