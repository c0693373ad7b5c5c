"""Train any task of this project.

  python launch/train.py --config configs/sat3d_ffhq.py:tiny [--workdir DIR] [--config.total_steps=200]

Running the same command again resumes from the newest checkpoint in the workdir (raise
`--config.total_steps` to train further). See launch/trainer/cli.py for multi-process flags.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from launch.trainer import cli  # noqa: E402


def main(argv):
  cli.start(argv)
  from launch.trainer import NonFiniteLossError, train_and_evaluate  # pylint: disable=g-import-not-at-top
  try:
    result = train_and_evaluate(cli.FLAGS.config, cli.resolve_workdir())
  except NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if result.stopped_by_signal is not None:
    sys.exit(128 + result.stopped_by_signal)


if __name__ == "__main__":
  cli.define_flags()
  app.run(main)
