"""An environment in which TensorFlow and TFDS cannot be imported, as on the GPU image.

A folder first on PYTHONPATH holds packages `tensorflow` and `tensorflow_datasets` whose import
raises ModuleNotFoundError for that name, exactly as an absent package does, so the code under
test takes its TensorFlow-less path while the rest of the environment stays the test's own.
"""
import os
import pathlib
import sys
from tests.xla import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tensorflow_datasets")


def blocked_env(tmp_path: pathlib.Path, **extra: str) -> dict:
  """os.environ plus the blocking folder (under tmp_path) and the repository on PYTHONPATH,
  this Python's folder first on PATH, one CPU device, and `extra`."""
  block = tmp_path / "no_tensorflow"
  for name in BLOCKED:
    (block / name).mkdir(parents=True, exist_ok=True)
    (block / name / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{name}' (blocked: the GPU image has "
        f"none)\", name={name!r})\n")
  return dict(os.environ, PYTHONPATH=f"{block}{os.pathsep}{ROOT}",
              PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
              XLA_FLAGS=xla_flags(1), **extra)
