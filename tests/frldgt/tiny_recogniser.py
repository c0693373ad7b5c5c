"""An FRL-DGT sweep workdir W with W/final/ holding the tiny generated-corpus model
(configs/frldgt_composite.py:synthetic_tiny, 32 x 32 frames), initialised and not trained: its
config.json and a checkpoint of its params, as the driver writes them. What the spot-then-
recognise tests check with it is the plumbing from a spotted interval to a class, not the class."""
import pathlib

import jax

from frldgt_jax import model as model_lib
from launch.trainer import from_file
from launch.trainer.checkpoint import Checkpoints

REPO = pathlib.Path(__file__).resolve().parents[2]


def write_recogniser(workdir: pathlib.Path) -> pathlib.Path:
  """Writes the untrained tiny recogniser into workdir (module docstring); returns workdir."""
  final = workdir / "final"
  final.mkdir(parents=True)
  config = from_file(str(REPO / "configs" / "frldgt_composite.py"), "synthetic_tiny")
  (final / "config.json").write_text(config.to_json_best_effort())
  model = model_lib.build_model(config.model)
  params = model_lib.init_variables(model, jax.random.PRNGKey(0))["params"]
  checkpoints = Checkpoints(final / "checkpoints", async_save=False)
  checkpoints.save(1, {"params": params}, {"input_position": 1})
  checkpoints.close()
  (final / "final.json").write_text("{}\n")
  return workdir
