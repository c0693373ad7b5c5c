"""Does the DGM learn the motion? Its field against the true one, at every saved step of a sweep.

  python launch/dgm_truth.py --workdir W                 # every fold unit of the sweep in W
  python launch/dgm_truth.py --workdir W --out DIR --last_only

W is a sweep (launch/sweep.py) on the generated corpus (a `:synthetic` config): the corpus knows
the onset -> apex motion it drew in each stored frame (frldgt_jax/data/synthetic.py,
`true_motion`). For each fold, on its held-out clips (onset = first stored frame, apex = last, the
pair the classifier reads), the DGM's field at every checkpoint the fold kept (train with
--config.keep_checkpoints and --config.checkpoint_every to keep a trajectory), TV-L1's and zero are
scored against the truth inside the action-unit region and outside it: end-point error, direction
agreement (cosine) and gain (frldgt_jax/flow_eval.py). Stage 1 is the steps up to
config.dgm_pretrain_steps.

Writes DIR (default W/dgm_truth/): dgm_truth.json (one row per fold, step and method),
dgm_truth.md (the means over folds per step) and dgm_truth.png (the AU-region error and cosine
over the steps, TV-L1 and zero as lines). Prints the table.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import json
import pathlib

from absl import flags, logging

from frldgt_jax import dgm_truth
from frldgt_jax.errors import InputError

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep's workdir on the generated corpus.",
                               required=True)
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/dgm_truth).")
_LAST_ONLY = flags.DEFINE_bool("last_only", False, "Score only each fold's newest checkpoint.")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Orbax warns at every read-only restore
  workdir = pathlib.Path(_WORKDIR.value)
  if not workdir.is_dir():
    raise InputError(f"{workdir}: no such sweep workdir")
  out = pathlib.Path(_OUT.value) if _OUT.value else workdir / "dgm_truth"
  rows, facts = dgm_truth.score_sweep(workdir, _LAST_ONLY.value)
  means = dgm_truth.summary(rows)
  out.mkdir(parents=True, exist_ok=True)
  (out / "dgm_truth.json").write_text(json.dumps({"facts": facts, "means": means, "rows": rows},
                                                 indent=1))
  table = dgm_truth.format_table(means, facts)
  (out / "dgm_truth.md").write_text(table)
  dgm_truth.plot(means, facts, out / "dgm_truth.png")
  print(table)
  cli.print_outputs(out, [out / n for n in ("dgm_truth.json", "dgm_truth.md", "dgm_truth.png")])


if __name__ == "__main__":
  cli.run(main, tensorflow="required")
