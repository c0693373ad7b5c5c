"""Fuzzing configs and `--config.x=y` overrides: random fields (and misspelt ones) of the shipped
configs set to values of wrong types and out of range (negative steps, zero batch, a batch the
devices do not divide, NaN learning rates). Each is refused when the flags are parsed (absl /
ml_collections, naming the field) or by `validate_config` (ConfigError naming the field) -- both
before anything is built or compiled -- or accepted with every checked range true."""
import math
import pathlib
import sys
from unittest import mock

import pytest
from absl import flags
from hypothesis import given
from hypothesis import strategies as st
from ml_collections import config_flags

from launch.trainer.config_checks import _flatten, validate_config
from launch.trainer.errors import ConfigError
from tests.robustness import harness

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ["tests/trainer/driver_task.py", "configs/sat3d_ffhq.py:tiny",
           "configs/frldgt_casme2.py"]
DEVICES = 8
_VALUES = ["-1", "0", "1", "3", "8", "12", str(2**40), "1.5", "-0.5", "nan", "inf", "-inf",
           "abc", "''", "True", "None", "[1,2]", "1e-3", "models", "batch"]


def _parse(config: str, overrides: list[str]):
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=values,
                                  lock_config=True)
  argv = ["prog", f"--config={ROOT / config}"] + overrides
  with mock.patch.object(sys, "argv", argv):  # config_flags reads the overrides from sys.argv
    values(argv)
  return values.config


@pytest.fixture(scope="module")
def fields():
  return {name: sorted(_flatten(_parse(name, []))) for name in CONFIGS}


def _check_accepted(config):
  for field in ("total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    assert config[field] >= 1, field
  assert config.num_devices <= DEVICES and config.model_sharding in ("models", "batch")
  batch = config.get("global_batch_size")
  assert batch is None or (batch >= 1 and (not config.num_devices
                                           or batch % config.num_devices == 0))
  for name, value in _flatten(config).items():
    assert not (isinstance(value, float) and not math.isfinite(value)), name


@harness.fuzz(30)
@given(data=st.data())
def test_random_overrides(recorder, fields, data):
  config_name = data.draw(st.sampled_from(CONFIGS))
  names = fields[config_name] + ["totl_steps"]
  overrides = {data.draw(st.sampled_from(names)): data.draw(st.sampled_from(_VALUES))
               for _ in range(data.draw(st.integers(1, 3)))}
  argv = [f"--config.{k}={v}" for k, v in overrides.items()]
  reader = "configs and --config overrides"
  try:
    try:
      config = _parse(config_name, argv)
    # What parsing raises (reported by cli.run as one line, exit status 2): absl's flag errors,
    # and ml_collections' AttributeError / KeyError for a field the config does not have.
    except (flags.Error, AttributeError, KeyError) as e:
      assert any(k in str(e) for k in overrides), str(e)
      recorder.count(reader, "refused")
      return
    try:
      validate_config(config, DEVICES)
    except ConfigError as e:
      assert "config." in str(e) or "global batch" in str(e), str(e)
      recorder.count(reader, "refused")
      return
    _check_accepted(config)
    recorder.count(reader, "accepted")
  except AssertionError:
    recorder.count(reader, "crash")
    raise


@pytest.mark.parametrize("override, message", [
    ("total_steps=-5", "config.total_steps must be an integer >= 1"),
    ("global_batch_size=0", "config.global_batch_size must be an integer >= 1"),
    ("num_devices=3", "does not divide over config.num_devices=3"),
    ("num_devices=64", "only 8 device"),
    ("learning_rate=nan", "config.learning_rate is nan"),
    ("learning_rate=-0.1", "config.learning_rate must be > 0"),
    ("seed=-1", "config.seed must be an integer in"),
])
def test_out_of_range_values_are_named(override, message):
  with pytest.raises(ConfigError, match=message):
    validate_config(_parse("tests/trainer/driver_task.py", [f"--config.{override}"]), DEVICES)
