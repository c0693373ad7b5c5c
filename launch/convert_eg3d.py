"""Convert an official EG3D network pickle into params.npz + config.json (no torch, no code run).

  python launch/convert_eg3d.py --pkl ffhq512-128.pkl --out weights/ffhq512-128 [--key G_ema]

The pickle is read with an allow-listed unpickler (sat3d_jax/eg3d/pickle_reader.py): the source
code embedded in it is never executed, and anything outside the allow-list is refused.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import pathlib

from absl import app, flags

from sat3d_jax.eg3d import convert
from sat3d_jax.errors import InputError

_PKL = flags.DEFINE_string("pkl", None, "EG3D network pickle to read.", required=True)
_OUT = flags.DEFINE_string("out", None, "Directory to write params.npz and config.json into.",
                           required=True)
_KEY = flags.DEFINE_string("key", "G_ema", "Network of the pickle to convert (G_ema, G, D).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier conversion in --out.")


def _architecture_lines(config: dict) -> list[str]:
  kwargs = config["init_kwargs"]
  rendering = kwargs.get("rendering_kwargs", {})
  lines = [f"class            {config['class_name']}"]
  for name, cls in config["modules"].items():
    lines.append(f"  .{name:<18}{cls}")
  for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "channel_base", "channel_max"):
    if key in kwargs:
      lines.append(f"{key:<17}{kwargs[key]}")
  if config.get("neural_rendering_resolution") is not None:
    lines.append(f"neural res.      {config['neural_rendering_resolution']}")
  if rendering:
    lines.append(f"depth samples    {rendering.get('depth_resolution')} + "
                 f"{rendering.get('depth_resolution_importance')}, rays "
                 f"{rendering.get('ray_start')}..{rendering.get('ray_end')}, box_warp "
                 f"{rendering.get('box_warp')}")
    lines.append(f"super-resolution {rendering.get('superresolution_module')}")
  return lines


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  pkl, out = pathlib.Path(_PKL.value), pathlib.Path(_OUT.value)
  print(f"reading {_KEY.value!r} from {pkl} (restricted unpickler, nothing is executed)")
  try:
    config = convert.convert_network_pickle(pkl, out, key=_KEY.value,
                                            overwrite=_OVERWRITE.value)
  except (OSError, InputError) as e:  # incl. pickle_reader's UnsafePickleError, PickleFormatError
    raise InputError(f"{type(e).__name__}: {e}\nnothing was written to {out}") from e
  print(f"read {config['num_tensors']} tensors, {config['num_parameters']:,} parameters "
        f"({config['num_parameters'] / 1e6:.2f} M); sha256 {config['source']['sha256']}")
  for line in _architecture_lines(config):
    print("  " + line)
  params = out / convert.PARAMS_FILE
  print(f"wrote {params} ({params.stat().st_size / 2**20:.1f} MiB) and "
        f"{out / convert.CONFIG_FILE}")


if __name__ == "__main__":
  cli.run(main)
