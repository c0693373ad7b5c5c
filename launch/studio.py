r"""SAT3D Studio: attribute transfer in 3D, in the browser (Gradio).

  python launch/studio.py --workdir workdirs/sat3d_ffhq_tiny      # the tiny main job's run
  python launch/studio.py --mask mask.npz [--generator weights/eg3d/ffhq512-128]
  python launch/studio.py --generator preset:ffhq512              # generation / orbit viewer
  python launch/studio.py --workdir RUN --encoder ENCODER_WORKDIR  # photos by the encoder

Opens http://127.0.0.1:7860 (--host / --port to change; --share asks Gradio for a public link,
off by default). Pick a source and a reference (a seed, a latent or style .npz, or a photo,
inverted in the app), tick attributes and set each one's strength, move yaw and pitch: a camera
move re-renders the cached tri-planes (renderer and super-resolution only), a new edit
recomputes styles and planes; the time of each render is shown beside it. Downloads: the grid
(PNG), the orbit (MP4, launch/transfer.py's turntable), the faces as a style file, the mask as a
mask file (both accepted back by the studio and launch/transfer.py), the mask per layer as a
plot, and the result's 3D shape (marching cubes; shown in the page, downloaded as .ply).
Every program a click runs is compiled at start-up (the log says how long that took).
Needs the [studio] extra (pip install -e ".[studio]").
"""
from __future__ import annotations

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import os
import pathlib

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained SAT3D run's workdir.")
_MASK = flags.DEFINE_string("mask", None, "A mask file (mask.npz) instead of --workdir.")
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Alone: a generation / orbit viewer of this generator. With --mask: "
    "the mask's generator if it is not where the file says.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step of --workdir (default: newest).")
_HOST = flags.DEFINE_string("host", "127.0.0.1",
                            "Address to listen on (0.0.0.0 exposes the studio to the network).")
_PORT = flags.DEFINE_integer("port", 7860, "Port to listen on.", lower_bound=1,
                             upper_bound=65535)
_SHARE = flags.DEFINE_bool("share", False, "Ask Gradio for a public share link.")
_OUT = flags.DEFINE_string("out", None,
                           "Folder for the sessions' downloads (default: a new temporary one).")
_FRAMES = flags.DEFINE_integer("frames", 60, "Frames of the orbit MP4 (0 = none).",
                               lower_bound=0)
_FPS = flags.DEFINE_integer("fps", 30, "Frames per second of the orbit MP4.", lower_bound=1)
_SHAPE_RES = flags.DEFINE_integer("shape_resolution", 128,
                                  "Density grid points per axis of the 3D shape.",
                                  lower_bound=16)
_MAX_UPLOAD_MB = flags.DEFINE_float("max_upload_mb", 20.0, "Largest upload accepted (MB).")
_W_STEPS = flags.DEFINE_integer("w_steps", 100, "Default W steps of a photo's inversion.",
                                lower_bound=0)
_WPLUS_STEPS = flags.DEFINE_integer("wplus_steps", 100,
                                    "Default W+ steps of a photo's inversion.", lower_bound=0)
_ENCODER = flags.DEFINE_string(
    "encoder", None, "An inversion encoder (training workdir of configs/encoder_ffhq.py or "
    "encoder file) for photos: its prediction is the result, or the start of the steps when "
    "--w_steps / --wplus_steps are given (with --encoder they default to 0).")
_MODCONV = flags.DEFINE_enum("modconv", "nonfused", ["nonfused", "fused"],
                             "Modulated convolution implementation (--generator alone).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute dtype (--generator alone or with --mask).")


def load_editor():
  """The Editor the flags name (sat3d_jax/editor.py)."""
  from sat3d_jax import eg3d  # pylint: disable=g-import-not-at-top
  from sat3d_jax.editor import Editor  # pylint: disable=g-import-not-at-top
  options = dict(modconv=_MODCONV.value, dtype=_DTYPE.value)
  if _WORKDIR.value:
    return Editor.from_workdir(_WORKDIR.value, _STEP.value)
  generator = eg3d.generator_from_spec(_GENERATOR.value, **options) if _GENERATOR.value \
      else None
  if _MASK.value:
    return Editor.from_mask_file(_MASK.value, generator, **options)
  return Editor.plain(generator, _GENERATOR.value)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if bool(_WORKDIR.value) + bool(_MASK.value) > 1 or \
      not (_WORKDIR.value or _MASK.value or _GENERATOR.value):
    raise app.UsageError("give --workdir, or --mask, or --generator alone")
  if _WORKDIR.value and _GENERATOR.value:
    raise app.UsageError("--generator goes with --mask or alone, not with --workdir")
  if _MAX_UPLOAD_MB.value <= 0:
    raise app.UsageError("--max_upload_mb must be > 0")
  os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
  try:
    import gradio  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    cli.fail("the studio needs Gradio: pip install -e \".[studio]\"")

  from launch.studio_app import engine, ui  # pylint: disable=g-import-not-at-top
  print(f"loading {_WORKDIR.value or _MASK.value or _GENERATOR.value}")
  editor = load_editor()
  gen = editor.generator
  print(f"  generator {editor.mask.generator} ({gen.img_resolution} px, {editor.fingerprint})"
        + (f"; mask of step {editor.mask.step}, attributes {', '.join(editor.attributes)}"
           if editor.attributes else "; no mask: generation and orbit viewer"))
  encoder = None
  if _ENCODER.value:
    import numpy as np  # pylint: disable=g-import-not-at-top

    from sat3d_jax import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
    encoder = encoder_lib.load_encoder(_ENCODER.value)
    encoder.check_generator(gen)
    encoder(np.zeros((1, gen.img_resolution, gen.img_resolution, 3), np.float32))  # compile
    print(f"  encoder {_ENCODER.value} (step {encoder.step}) inverts photos")
    for flag in (_W_STEPS, _WPLUS_STEPS):
      if not flags.FLAGS[flag.name].present:
        flags.FLAGS[flag.name].value = 0
  studio = engine.Studio(editor, _OUT.value, _FRAMES.value, _FPS.value, _SHAPE_RES.value,
                         encoder=encoder)
  print("warm-up: compiling the mapping, edit, tri-plane, render, turntable and shape programs")
  seconds = studio.warm_up()
  print(f"warm-up: done in {seconds:.1f} s (a click runs compiled programs only)")
  max_bytes = int(_MAX_UPLOAD_MB.value * 1e6)
  demo = ui.build(studio, max_bytes, _W_STEPS.value, _WPLUS_STEPS.value)
  demo.queue(default_concurrency_limit=1)
  print(f"sessions' downloads go to {pathlib.Path(studio.out_dir).resolve()}")
  try:
    demo.launch(server_name=_HOST.value, server_port=_PORT.value, share=_SHARE.value,
                max_file_size=max_bytes, allowed_paths=[str(studio.out_dir)], inbrowser=False)
  except OSError as e:  # e.g. the port is taken
    cli.fail(f"cannot serve on {_HOST.value}:{_PORT.value} ({e}); choose another --port")


if __name__ == "__main__":
  cli.run(main)
