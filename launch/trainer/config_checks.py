"""Config validation: the values a run cannot use are refused before anything is built or compiled.

`--config.x=y` overrides are type-checked by ml_collections when the flags are parsed (an int
field refuses 'abc' or 1.5); `validate_config` then checks ranges: the driver's fields, the
global batch against the devices, learning rates, and that no float hyperparameter is NaN or
infinite. Each failure is a ConfigError naming the field, its value and what it must be.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import ml_collections

from launch.trainer.errors import ConfigError

# Driver fields (config_files.base_config): (lowest allowed value, what it means).
_AT_LEAST = {
    "total_steps": (1, "the number of training steps"),
    "log_every": (1, "steps between logged losses"),
    "checkpoint_every": (1, "steps between checkpoints"),
    "keep_checkpoints": (1, "checkpoints kept"),
    "summary_every": (0, "steps between image summaries (0 = only at the end)"),
    "eval_every": (0, "steps between evaluations (0 = only at the end)"),
    "num_devices": (0, "devices to train on (0 = all)"),
}
_MAX_SEED = 2**32 - 1


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: ml_collections.ConfigDict,
                    device_count: Optional[int] = None) -> None:
  """Raises ConfigError for the first value of `config` a run cannot use.

  Args:
    config: a training config (base_config's fields plus the task's).
    device_count: the devices available (for num_devices and the batch); None skips those.
  """
  for field, (lowest, meaning) in _AT_LEAST.items():
    value = config.get(field)
    if not _is_int(value) or value < lowest:
      raise ConfigError(f"config.{field} must be an integer >= {lowest} ({meaning}), "
                        f"got {value!r}")
  seed = config.get("seed")
  if not _is_int(seed) or not 0 <= seed <= _MAX_SEED:
    raise ConfigError(f"config.seed must be an integer in [0, 2**32), got {seed!r}")
  if config.get("model_sharding") not in ("models", "batch"):
    raise ConfigError(f"config.model_sharding must be 'models' or 'batch', "
                      f"got {config.get('model_sharding')!r}")
  if device_count is not None and config.num_devices > device_count:
    raise ConfigError(f"config.num_devices={config.num_devices} but only {device_count} "
                      "device(s) are available")
  batch = config.get("global_batch_size")
  if batch is not None:
    if not _is_int(batch) or batch < 1:
      raise ConfigError(f"config.global_batch_size must be an integer >= 1, got {batch!r}")
    if config.num_devices and batch % config.num_devices:
      raise ConfigError(f"the global batch of {batch} does not divide over "
                        f"config.num_devices={config.num_devices}; change one of them")
  for name, value in _flatten(config).items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"config.{name} is {value}: a hyperparameter must be finite")
    leaf = name.rsplit(".", 1)[-1]
    if leaf.endswith("learning_rate") and isinstance(value, (int, float)) and value <= 0:
      raise ConfigError(f"config.{name} must be > 0, got {value!r}")
