"""What every entry point shares: a quiet start, absl flags, and user errors as one message.

    from launch.common import cli      # first: silences TensorFlow's C++ start-up logging
    ...
    if __name__ == "__main__":
      cli.run(main)

`cli.run` parses the flags (a bad flag value: one line, exit status 2) and calls `main(argv)`.
An error the user can cause and fix (a missing file, bad input data, a config value the run
cannot use, a non-finite loss, an optional dependency the work needs but this environment
lacks, such as TensorFlow on an accelerator image) is printed as `error: ...` on stderr with exit
status 2; `--debug` shows its traceback instead. Any other exception is a bug and keeps its
traceback.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import tempfile

# Before anything imports TensorFlow (its C++ logging reads this once, at load time) or
# transformers (whose Flax models warn at every start that transformers 5 drops them: the
# project pins transformers < 5 for exactly that reason).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
_DEBUG = flags.DEFINE_bool("debug", False,
                           "Show the traceback of an input or config error instead of one line.")

USAGE_EXIT = 2


def user_errors() -> tuple[type[BaseException], ...]:
  """The exception types that mean "the user's input is wrong", not "the code is wrong"."""
  from frldgt_jax import errors as frldgt_errors  # pylint: disable=g-import-not-at-top
  from launch.trainer import errors as trainer_errors  # pylint: disable=g-import-not-at-top
  from sat3d_jax import errors as sat3d_errors  # pylint: disable=g-import-not-at-top
  return (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
          sat3d_errors.InputError, frldgt_errors.InputError, trainer_errors.ConfigError,
          trainer_errors.NonFiniteLossError, trainer_errors.CheckpointError)


def print_outputs(out_dir, paths, seconds: float | None = None, notes: dict | None = None
                  ) -> None:
  """How a command ends: the files it wrote under `out_dir`, one a line (with `notes[path]`
  beside a file where given) and, if given, how long it took."""
  took = f" in {seconds:.0f} s" if seconds is not None else ""
  print(f"wrote {len(paths)} files to {pathlib.Path(out_dir).resolve()}{took}:")
  for path in paths:
    note = (notes or {}).get(path)
    print(f"  {path}" + (f"  ({note})" if note else ""))


def fail(message: str) -> None:
  """Stops the program with `error: message` on stderr and exit status 2."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USAGE_EXIT)


@contextlib.contextmanager
def _stderr_to(path: str):
  """Redirects file descriptor 2 (C++ logging writes there directly) for the duration."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(path, "wb") as sink:
    os.dup2(sink.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


# Optional dependencies by import name: what to install when one is missing. TensorFlow and
# TFDS are the `tensorflow` extra (FRL-DGT's datasets and samplers, prepare_data.py, and the
# project's tf.data input pipeline where installed); the rest run without them.
_INSTALL = {
    "tensorflow": "pip install 'sat3d-frldgt-jax[tensorflow]' (or tensorflow-cpu)",
    "tensorflow_datasets": "pip install 'sat3d-frldgt-jax[tensorflow]' (or tensorflow-datasets)",
}


def missing_dependency(error: BaseException) -> str | None:
  """The one-line message for an ImportError of an optional dependency, else None."""
  name = (getattr(error, "name", None) or "").split(".")[0]
  if not isinstance(error, ImportError) or name not in _INSTALL:
    return None
  return f"this needs {name}, which is not installed here: {_INSTALL[name]}"


def tensorflow_available() -> bool:
  """Imports TensorFlow quietly where it is installed; False where it is not (some accelerator
  images). A TensorFlow that is installed but broken raises its own error."""
  try:
    import_tensorflow_quietly()
  except ImportError as e:
    if missing_dependency(e) is None:
      raise
    return False
  return True


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow with its start-up chatter (absl pre-init and oneDNN notices, written
  by C++ before TF_CPP_MIN_LOG_LEVEL applies) hidden; replayed if the import fails."""
  if "tensorflow" in sys.modules:
    return
  with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as log:
    path = log.name
  try:
    with _stderr_to(path):
      import tensorflow  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except BaseException:
    with open(path, errors="replace") as captured:
      sys.stderr.write(captured.read())
    raise
  finally:
    os.unlink(path)


def _one_line(message: str) -> str:
  """A flag error as one line: config_flags embeds the config file's traceback in its message
  (keep the flag and the exception's last line) and KeyErrors arrive quoted and escaped."""
  if "Traceback (most recent call last)" in message:
    head = message.split("Traceback (most recent call last)")[0].strip()
    lines = [l.strip() for l in message.splitlines() if l.strip()]
    message = f"{head} {lines[-1]}" if lines else head
  message = message.replace("\\'", "'").replace("\\n", " ").replace("\n", " ")
  if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
    message = message[1:-1]
  return " ".join(message.split())


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with exit status 2 and one line for a bad flag. Config flags load the
  config file here, so an error in it or in a `--config.x=y` override (a misspelt field, a
  wrong type, an unknown variant) is reported the same way; `--debug` raises it instead."""
  try:
    return FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    if "--debug" in argv[1:]:
      raise
    print(f"error: {_one_line(str(e))}", file=sys.stderr)
    print(f"see: python {argv[0]} --help (or add --debug for the traceback)", file=sys.stderr)
    sys.exit(USAGE_EXIT)


def run(main, *, tensorflow: str = "") -> None:
  """absl's app.run for this project's entry points (see the module docstring).

  tensorflow: '' (the command never uses it), 'optional' (its work uses tf.data where
  TensorFlow is installed and runs without it elsewhere) or 'required' (it cannot work without
  it: where it is absent the command stops with one `error:` line naming what to install, before
  the flags are parsed). Where installed, TensorFlow is imported quietly before `main`, so its
  start-up logging never reaches the terminal. Whatever the setting, an optional dependency
  found missing during `main` is one `error:` line (exit status 2), not a traceback.
  """
  if tensorflow not in ("", "optional", "required"):
    raise ValueError(f"tensorflow must be '', 'optional' or 'required', got {tensorflow!r}")

  def guarded(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      fail(str(e))
    except user_errors() as e:
      if _DEBUG.value:
        raise
      fail(str(e))
    except ImportError as e:
      message = missing_dependency(e)
      if message is None or _DEBUG.value:
        raise
      fail(message)

  # Before the flags: config files are loaded while they are parsed.
  if tensorflow and not tensorflow_available() and tensorflow == "required" and \
      "--help" not in sys.argv[1:]:
    fail(missing_dependency(ModuleNotFoundError(name="tensorflow")))
  app.run(guarded, flags_parser=_parse_flags)
