r"""Transfer attributes from a reference to a source with a trained SAT3D run, in 3D.

  python launch/transfer.py --workdir workdirs/sat3d_ffhq --source 12 --reference 34 \
      --attributes hairstyle=1.2,beard=0.8 [--psi 0.7] --out out/transfer
  python launch/transfer.py --mask mask.npz --source photos.npz --source_index 2 \
      --reference 7 --attributes smile --yaw 0.3 --pitch 0.1 --shapes --out out/t2

The mask: --workdir (a training run: its config.json and newest or --step checkpoint) or --mask
(a mask file, sat3d_jax/mask_file.py, as the studio writes it; --generator when its generator
is elsewhere here). Only the generator is loaded, no CLIP.
--attributes: NAME or NAME=STRENGTH, comma-separated; a name without a strength gets --delta.
--source / --reference: an integer seed (z = numpy RandomState(seed).randn(z_dim), mapped with
truncation --psi, default the run's, and the frontal camera), a latent file (.npz with 'ws' [N,
num_ws, w_dim], optional 'c' [N, 25] and 'generator'; sat3d_jax/latent_file.py) or a style file
(the result_styles.npz this command and the studio write; sat3d_jax/style_file.py), row
--source_index / --reference_index. A latent file must come from the run's generator: invert
photos with `launch/invert.py --generator <that path>`; a file whose ws rows do not fit
(num_ws, w_dim) is refused, naming both. A latent file's camera 'c' (the view its photo was
taken from) adds a grid column rendered from that camera. A latent file's 'generator'
(pivotal-tuned params of the same architecture) renders that input, and the result too when it
is the source's.

Writes to --out:
  grid.png            rows source / reference / result; columns the input cameras (if any), then
                      a yaw sweep of --views cameras from +--yaw_range to -yaw_range, or the one
                      camera --yaw / --pitch (radians from frontal)
  turntable.mp4       the result on the turntable of EG3D's gen_videos.py (--frames, 0 = none)
  result_styles.npz   a style file with rows 'source', 'reference', 'result' (a source again)
  result_shape.ply    with --shapes: the result's 3D shape (sat3d_jax/shapes.py)
Each face's tri-planes are computed once for all of its views.
"""
from __future__ import annotations

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import pathlib

import numpy as np
from absl import app, flags

from sat3d_jax import media
from sat3d_jax.errors import InputError

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained SAT3D run directory (or --mask).")
_MASK = flags.DEFINE_string("mask", None, "A mask file (mask.npz) instead of --workdir.")
_GENERATOR = flags.DEFINE_string("generator", None,
                                 "With --mask: the generator, if not where the file says.")
_SOURCE = flags.DEFINE_string("source", None,
                              "Source: an integer seed, a latent .npz or a style .npz.",
                              required=True)
_REFERENCE = flags.DEFINE_string("reference", None,
                                 "Reference: an integer seed, a latent .npz or a style .npz.",
                                 required=True)
_SOURCE_INDEX = flags.DEFINE_integer("source_index", 0, "Row of a source file.", lower_bound=0)
_REFERENCE_INDEX = flags.DEFINE_integer("reference_index", 0, "Row of a reference file.",
                                        lower_bound=0)
_ATTRIBUTES = flags.DEFINE_list(
    "attributes", None, "Target attributes, NAME or NAME=STRENGTH, e.g. hairstyle=1.2,beard.",
    required=True)
_DELTA = flags.DEFINE_float("delta", 1.0, "Strength of attributes named without one.")
_PSI = flags.DEFINE_float("psi", None, "Truncation psi of seeds (default: the run's).")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_VIEWS = flags.DEFINE_integer("views", 5, "Grid columns of the yaw sweep.", lower_bound=1)
_YAW_RANGE = flags.DEFINE_float("yaw_range", 0.4, "Yaw sweep +- radians.")
_YAW = flags.DEFINE_float("yaw", None, "One view instead of the sweep: yaw (radians).")
_PITCH = flags.DEFINE_float("pitch", None, "One view instead of the sweep: pitch (radians).")
_FRAMES = flags.DEFINE_integer("frames", 60, "Turntable frames (0 = no video).", lower_bound=0)
_FPS = flags.DEFINE_integer("fps", 30, "Frames per second of the turntable.", lower_bound=1)
_SHAPES = flags.DEFINE_bool("shapes", False, "Also write the result's 3D shape (.ply).")
_SHAPE_RES = flags.DEFINE_integer("shape_resolution", 256,
                                  "Density grid points per axis of --shapes.", lower_bound=8)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_BATCH = flags.DEFINE_integer("batch", 8, "Images rendered per call.", lower_bound=1)


def parse_strengths(items, default: float) -> dict[str, float]:
  """['hairstyle=1.2', 'beard'] -> {'hairstyle': 1.2, 'beard': default}; InputError for a
  strength that is not a number."""
  strengths = {}
  for item in items:
    name, _, value = item.partition("=")
    name = name.strip()
    if not name:
      continue
    try:
      strengths[name] = float(value) if value.strip() else float(default)
    except ValueError:
      raise InputError(f"--attributes: strength {value!r} of {name!r} is not a number"
                       ) from None
  return strengths


def load_editor(workdir, mask, generator, step):
  """The Editor of --workdir or --mask (sat3d_jax/editor.py)."""
  from sat3d_jax import eg3d  # pylint: disable=g-import-not-at-top
  from sat3d_jax.editor import Editor  # pylint: disable=g-import-not-at-top
  if mask:
    gen = eg3d.generator_from_spec(generator) if generator else None
    return Editor.from_mask_file(mask, gen)
  return Editor.from_workdir(workdir, step)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if bool(_WORKDIR.value) == bool(_MASK.value):
    raise app.UsageError("give exactly one of --workdir and --mask")
  strengths = parse_strengths(_ATTRIBUTES.value, _DELTA.value)
  if not strengths:
    raise app.UsageError("--attributes is empty")
  out = pathlib.Path(_OUT.value)
  frames = _FRAMES.value
  from sat3d_jax import shapes  # pylint: disable=g-import-not-at-top
  if _SHAPES.value and not shapes.available():
    cli.fail(shapes.MISSING)
  for role, text in (("source", _SOURCE.value), ("reference", _REFERENCE.value)):
    try:
      int(text)
    except ValueError:
      if not pathlib.Path(text).is_file():
        raise InputError(f"--{role} {text!r} is neither an integer seed nor an existing latent "
                         "file or style file") from None

  from sat3d_jax import evaluation, run_io  # pylint: disable=g-import-not-at-top
  from sat3d_jax import style_file, transfer  # pylint: disable=g-import-not-at-top

  # Cheap checks first: a misspelt attribute is reported before any model loads.
  if _WORKDIR.value:
    run_io.load_config(_WORKDIR.value)
    recorded = run_io.recorded_attributes(_WORKDIR.value)
    if recorded:
      transfer.targets_from_names(list(strengths), recorded)
  print(f"loading {_WORKDIR.value or _MASK.value}")
  editor = load_editor(_WORKDIR.value, _MASK.value, _GENERATOR.value, _STEP.value)
  editor.strength_row(strengths)
  gen, mask = editor.generator, editor.mask
  print(f"  mask of step {mask.step}; generator {mask.generator} ({gen.img_resolution} px, "
        f"{gen.num_style_channels} style channels, {mask.mask_logits.shape[1]} editable, "
        f"{editor.fingerprint}); attributes: {', '.join(editor.attributes)}")
  src = editor.face(_SOURCE.value, _SOURCE_INDEX.value, _PSI.value, "--source")
  ref = editor.face(_REFERENCE.value, _REFERENCE_INDEX.value, _PSI.value, "--reference")
  for role, x in (("source", src), ("reference", ref)):
    print(f"  {role}: {x.label}" + (f"; rendered with its pivotal-tuned generator "
                                   f"{x.tuned_generator}" if x.tuned_generator else ""))
  result = editor.edit(src, ref, strengths)
  probabilities = editor.probabilities()
  mass = sum(probabilities[editor.attributes.index(a)] * abs(v) for a, v in strengths.items())
  print(f"  transferring {', '.join(f'{a} (strength {v:g})' for a, v in strengths.items())}: "
        f"mask mass {float(np.sum(mass)):.1f} of {mask.mask_logits.shape[1]} editable channels")

  if _YAW.value is not None or _PITCH.value is not None:
    views = np.array([[_YAW.value or 0.0, _PITCH.value or 0.0]], np.float32)
    described = f"the view yaw {views[0, 0]:g}, pitch {views[0, 1]:g}"
  else:
    views = evaluation.yaw_sweep(_VIEWS.value, _YAW_RANGE.value)
    described = f"a yaw sweep of {_VIEWS.value}"
  cams = [editor.cameras(views)]
  extra = [(role, x.camera) for role, x in (("source", src), ("reference", ref))
           if x.camera is not None]
  if extra:
    cams.insert(0, np.stack([c for _, c in extra]).astype(np.float32))
    print("  grid columns " + ", ".join(f"{i}: the {role}'s camera"
                                        for i, (role, _) in enumerate(extra))
          + f", then {described}")
  cams = np.concatenate(cams)
  # The result is the source person edited: it is rendered with the source's generator.
  prepared = editor.prepare([src, ref, result])
  rows = editor.render_prepared(prepared, cams, _BATCH.value)
  if src.tuned_generator:
    print("  the result is rendered with the source's pivotal-tuned generator")
  grid = media.image_grid([media.to_uint8(r) for r in rows])

  out.mkdir(parents=True, exist_ok=True)
  written = [out / "grid.png", out / "result_styles.npz"]
  media.write_png(written[0], grid)
  style_file.write_style_file(written[1], np.concatenate([src.styles, ref.styles,
                                                          result.styles]),
                              gen.style_layers, editor.face_fingerprint(src),
                              ["source", "reference", "result"], src.tuned_generator)
  if frames:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    video_cams = editor.cameras(media.turntable_views(frames))
    with tqdm(total=frames, desc="turntable", unit="frame") as bar:  # planes computed above
      video = editor.render_views(prepared, 2, video_cams, _BATCH.value, on_batch=bar.update)
    media.write_mp4(out / "turntable.mp4", media.to_uint8(video), _FPS.value)
    written.append(out / "turntable.mp4")
  notes = {written[0]: f"{grid.shape[1]}x{grid.shape[0]}: rows source / reference / result, "
                       f"{len(cams)} views"}
  if _SHAPES.value:
    planes = editor.planes(result.params, result.styles)
    print(f"  shape: density on a {_SHAPE_RES.value}^3 grid, marching cubes")
    mesh = shapes.face_mesh(gen, result.params, planes, _SHAPE_RES.value)
    shapes.write_ply(out / "result_shape.ply", mesh)
    written.append(out / "result_shape.ply")
    notes[written[-1]] = (f"{len(mesh.vertices)} vertices, {len(mesh.faces)} triangles, "
                          f"density level {mesh.level:g}")
  cli.print_outputs(out, written, notes=notes)


if __name__ == "__main__":
  cli.run(main)
