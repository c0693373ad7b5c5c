"""Errors the driver raises for a run that cannot go on (entry points report them in one line)."""


class ConfigError(ValueError):
  """A config field has a value the run cannot use; the message names the field and the fix."""


class NonFiniteLossError(FloatingPointError):
  """Raised when a step produced a non-finite loss (or other metric); names the step."""


class CheckpointError(RuntimeError):
  """A checkpoint cannot be written, or none of those found is intact; names the step and what
  to do."""
