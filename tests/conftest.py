"""Test-wide setup: 8 fake CPU devices so multi-device code is exercised on any machine."""
import os

from tests.xla import xla_flags

os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keep TensorFlow (tf.data) off any accelerator and from grabbing every core.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import gzip
import pathlib

import pytest

EG3D_FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "eg3d"


@pytest.fixture(scope="session", autouse=True)
def xla_cache_dir(tmp_path_factory):
  """One persistent compilation cache for the session, shared with the tests' subprocesses.

  Many tests build the same programs again (new closures over the same shapes: a task per test,
  a CLI subprocess after an in-process run); with the cache each compiles once per session.
  """
  import jax  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.getbasetemp() / "xla_cache"
  path.mkdir(exist_ok=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)  # inherited by subprocesses
  jax.config.update("jax_compilation_cache_dir", str(path))
  return path


@pytest.fixture(scope="session")
def eg3d_fixture_dir(tmp_path_factory):
  """The official EG3D reference fixtures (tests/fixtures/eg3d/README.md) as the tests read them:
  a folder of NAME.npz, NAME.json and NAME.pkl, the pickles unpacked from the committed .pkl.gz."""
  out = tmp_path_factory.mktemp("eg3d_fixtures")
  for path in sorted(EG3D_FIXTURES.iterdir()):
    if path.suffix in (".npz", ".json"):
      (out / path.name).symlink_to(path)
    elif path.name.endswith(".pkl.gz"):
      (out / path.name[:-len(".gz")]).write_bytes(gzip.decompress(path.read_bytes()))
  return out
