r"""Transfer attributes from a reference to a source with a trained SAT3D run, in 3D.

  python launch/transfer.py --workdir workdirs/sat3d_ffhq --source 12 --reference 34 \
      --attributes hairstyle,beard [--delta 1.0] --out out/transfer
  python launch/transfer.py --workdir W --source photos.npz --source_index 2 \
      --reference 7 --attributes smile --out out/t2

--source / --reference: an integer seed (z = numpy RandomState(seed).randn(z_dim), mapped with the
run's truncation and the frontal camera) or a latent file (.npz with 'ws' [N, num_ws, w_dim],
optional 'c' [N, 25] and 'generator'; sat3d_jax/latent_file.py), row --source_index /
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

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import pathlib

import numpy as np
from absl import app, flags

from sat3d_jax import media
from sat3d_jax.errors import InputError

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained SAT3D run directory.", required=True)
_SOURCE = flags.DEFINE_string("source", None, "Source: an integer seed or a latent .npz.",
                              required=True)
_REFERENCE = flags.DEFINE_string("reference", None,
                                 "Reference: an integer seed or a latent .npz.", required=True)
_SOURCE_INDEX = flags.DEFINE_integer("source_index", 0, "Row of a source latent file.",
                                     lower_bound=0)
_REFERENCE_INDEX = flags.DEFINE_integer("reference_index", 0,
                                        "Row of a reference latent file.", lower_bound=0)
_ATTRIBUTES = flags.DEFINE_list("attributes", None,
                                "Target attributes, comma-separated, e.g. hairstyle,beard.",
                                required=True)
_DELTA = flags.DEFINE_float("delta", 1.0, "Editing intensity.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_VIEWS = flags.DEFINE_integer("views", 5, "Grid columns of the yaw sweep.", lower_bound=1)
_YAW_RANGE = flags.DEFINE_float("yaw_range", 0.4, "Yaw sweep +- radians.")
_FRAMES = flags.DEFINE_integer("frames", 60, "Turntable frames (0 = no video).", lower_bound=0)
_FPS = flags.DEFINE_integer("fps", 30, "Frames per second of the turntable.", lower_bound=1)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
_BATCH = flags.DEFINE_integer("batch", 8, "Images rendered per call.", lower_bound=1)


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

  from sat3d_jax import evaluation, latent_file  # pylint: disable=g-import-not-at-top
  from sat3d_jax.model import build_generator  # pylint: disable=g-import-not-at-top

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
  latents = latent_file.read_latent_file(str(path))
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
    tuned_path = pathlib.Path(tuned)  # absolute and existing: checked by read_latent_file
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
  """[frames, 25] cameras of EG3D's gen_videos.py turntable (sat3d_jax.media.turntable_views)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return np.asarray(model.cameras(jnp.asarray(media.turntable_views(frames), jnp.float32)))


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  names = [a for a in _ATTRIBUTES.value if a]
  if not names:
    raise app.UsageError("--attributes is empty")
  workdir, out = pathlib.Path(_WORKDIR.value), pathlib.Path(_OUT.value)
  views, frames = _VIEWS.value, _FRAMES.value
  for role, text in (("source", _SOURCE.value), ("reference", _REFERENCE.value)):
    kind, value = parse_input(text)
    if kind == "file" and not value.is_file():
      raise InputError(f"--{role} {text!r} is neither an integer seed nor an existing latent "
                       "file")

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  transformers.logging.set_verbosity_error()  # its notice that Flax classes end in v5
  from sat3d_jax import evaluation, run_io, transfer  # pylint: disable=g-import-not-at-top

  # Cheap checks first: a misspelt attribute is reported before any model loads.
  run_io.load_config(workdir)
  recorded = run_io.recorded_attributes(workdir)
  try:
    if recorded:
      transfer.targets_from_names(names, recorded)
    print(f"loading the run in {workdir}")
    run = run_io.load_run(workdir, _STEP.value)
    targets = run.targets(names)
  except InputError:
    raise
  except ValueError as e:  # e.g. an attribute the run does not know
    raise InputError(str(e)) from e
  model, cfg = run.model, run.config
  gen = model.generator
  print(f"  step {run.step}; generator {cfg.generator} ({gen.img_resolution} px, "
        f"{model.num_channels} style channels, {model.num_editable} editable); "
        f"attributes: {', '.join(run.attributes)}")
  src = resolve_input("source", _SOURCE.value, _SOURCE_INDEX.value, model, cfg)
  ref = resolve_input("reference", _REFERENCE.value, _REFERENCE_INDEX.value, model, cfg)
  for role, x in (("source", src), ("reference", ref)):
    print(f"  {role}: {x['label']}" + (f"; rendered with its pivotal-tuned generator "
                                      f"{x['generator']}" if x["generator"] else ""))

  to_flat = jax.jit(model.flat_styles)
  s_src = np.asarray(to_flat(src["params"], jnp.asarray(src["ws"])))
  s_ref = np.asarray(to_flat(ref["params"], jnp.asarray(ref["ws"])))
  s_edit = np.asarray(run.edit(jnp.asarray(s_src), jnp.asarray(s_ref), targets, _DELTA.value))
  mass = run.probabilities()[[run.attributes.index(a) for a in names]].sum(0)
  print(f"  transferring {', '.join(names)} with delta {_DELTA.value}: mask mass "
        f"{float(np.sum(mass)):.1f} of {model.num_editable} editable channels")

  sweep = evaluation.yaw_sweep(views, _YAW_RANGE.value)
  cams = [np.asarray(model.cameras(jnp.asarray(sweep)))]
  extra = [(role, x["c"]) for role, x in (("source", src), ("reference", ref))
           if x["c"] is not None]
  if extra:
    cams.insert(0, np.stack([c for _, c in extra]).astype(np.float32))
    print("  grid columns " + ", ".join(f"{i}: the {role}'s camera"
                                        for i, (role, _) in enumerate(extra))
          + f", then a yaw sweep of {views}")
  cams = np.concatenate(cams)
  renderer = evaluation.StyleRenderer(gen, _BATCH.value)
  # The result is the source person edited: it is rendered with the source's generator.
  rows = [renderer.render(src["params"], s_src, cams)[0],
          renderer.render(ref["params"], s_ref, cams)[0],
          renderer.render(src["params"], s_edit, cams)[0]]
  if src["generator"]:
    print("  the result is rendered with the source's pivotal-tuned generator")
  grid = media.image_grid([media.to_uint8(r) for r in rows])

  out.mkdir(parents=True, exist_ok=True)
  written = [out / "grid.png"]
  media.write_png(written[0], grid)
  np.savez(out / "result_styles.npz", source=s_src[0], reference=s_ref[0],
           result=s_edit[0], layers=np.asarray([n for n, _ in gen.style_layers]),
           dims=np.asarray([d for _, d in gen.style_layers]), attributes=np.asarray(names),
           delta=np.float32(_DELTA.value))
  written.append(out / "result_styles.npz")
  if frames:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    video_cams = turntable_cameras(model, frames)
    with tqdm(total=frames, desc="turntable", unit="frame") as bar:
      video = renderer.render_rows(src["params"], np.repeat(s_edit, frames, 0),
                                   video_cams, on_batch=lambda b: bar.update(len(b)))
    media.write_mp4(out / "turntable.mp4", media.to_uint8(video), _FPS.value)
    written.append(out / "turntable.mp4")
  cli.print_outputs(out, written, notes={
      written[0]: f"{grid.shape[1]}x{grid.shape[0]}: rows source / reference / result, "
                  f"{len(cams)} views"})


if __name__ == "__main__":
  cli.run(main)
