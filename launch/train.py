"""Train any task of this project.

  python launch/train.py --config configs/sat3d_ffhq.py:tiny [--workdir DIR] \
      [--config.total_steps=200]

Running the same command again resumes from the newest checkpoint in the workdir (raise
`--config.total_steps` to train further). See launch/trainer/cli.py for multi-process flags.
"""
import sys

from launch.common import cli  # first: quiet TensorFlow start-up
from launch.trainer import cli as trainer_cli


def main(argv):
  trainer_cli.start(argv)
  from launch.trainer import train_and_evaluate  # pylint: disable=g-import-not-at-top
  result = train_and_evaluate(trainer_cli.FLAGS.config, trainer_cli.resolve_workdir())
  if result.stopped_by_signal is not None:
    sys.exit(128 + result.stopped_by_signal)


if __name__ == "__main__":
  trainer_cli.define_flags()
  cli.run(main, tensorflow="optional")
