"""Fuzzing the latent .npz reader: random members (wrong names, shapes, dtypes, object arrays,
NaN/inf), `generator` paths that escape the file's folder or do not exist, byte mutations of
valid files, members whose header claims far more bytes than the file holds."""
import io
import pathlib
import tempfile
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sat3d_jax import latent_file
from sat3d_jax.errors import InputError
from tests.robustness import harness


def _valid(out):
  ws = out["ws"]
  assert ws.dtype == np.float32 and ws.ndim == 3 and np.all(np.isfinite(ws))
  if "c" in out:
    assert out["c"].shape == (ws.shape[0], 25) and np.all(np.isfinite(out["c"]))
  if "generator" in out:
    generator = pathlib.Path(out["generator"])
    assert generator.is_absolute() and generator.exists()
  assert set(out) <= {"ws", "c", "generator"}


NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
              NotImplementedError)
LATENTS = harness.Reader("latent .npz files", latent_file.read_latent_file, InputError, _valid,
                         NPZ_ERRORS)

_DTYPES = ["float32", "float64", "float16", "int32", "uint8", "bool", "complex64", "U5", "O",
           "V8"]


@st.composite
def arrays(draw, shapes):
  shape = draw(shapes)
  dtype = draw(st.sampled_from(_DTYPES))
  size = int(np.prod(shape))
  if dtype == "O":
    return np.array([{"x": 1}] * size, dtype=object).reshape(shape)
  values = draw(st.lists(st.sampled_from([0.0, 1.5, -2.0, np.nan, np.inf, -np.inf, 1e30]),
                         min_size=size, max_size=size))
  array = np.array(values, np.float64).reshape(shape)
  if dtype in ("U5", "V8"):
    return np.zeros(shape, dtype)
  with np.errstate(all="ignore"):
    return array.astype(dtype)


_SHAPES = st.lists(st.integers(0, 4), max_size=4).map(tuple)
_GENERATORS = ["tuned", "./tuned", "tuned/../tuned", "../escape", "../../etc", "/etc",
               "/nonexistent/gen", "", "missing", "a\0b", "tuned/../../x"]


@st.composite
def latent_members(draw):
  members = {}
  n = draw(st.integers(1, 3))
  if draw(st.integers(0, 9)):
    members["ws"] = draw(st.one_of(
        arrays(st.just((n, 2, 3))), arrays(_SHAPES),
        st.just(np.zeros((n, 2, 3), np.float32))))
  if draw(st.booleans()):
    members["c"] = draw(st.one_of(arrays(st.just((n, 25))), arrays(_SHAPES),
                                  st.just(np.zeros((n, 25), np.float32))))
  if draw(st.booleans()):
    members["generator"] = draw(st.one_of(
        st.sampled_from(_GENERATORS).map(np.asarray), arrays(_SHAPES),
        st.just(np.asarray(["tuned", "tuned"]))))
  if not draw(st.integers(0, 5)):
    members["extra"] = np.zeros(2)
  return members


def _write(members, compressed) -> bytes:
  out = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(out, **members)
  return out.getvalue()


def _case(recorder, data: bytes, name="latent.npz"):
  with tempfile.TemporaryDirectory() as tmp:
    sandbox = pathlib.Path(tmp)
    (sandbox / "files").mkdir()
    (sandbox / "files" / "tuned").mkdir()
    path = sandbox / "files" / name
    path.write_bytes(data)
    recorder.check(LATENTS, path, sandbox)


@harness.fuzz(150)
@given(members=latent_members(), compressed=st.booleans())
def test_random_members(recorder, members, compressed):
  _case(recorder, _write(members, compressed))


_VALID = _write({"ws": np.ones((2, 3, 4), np.float32), "c": np.zeros((2, 25), np.float32),
                 "generator": np.asarray("tuned")}, compressed=False)
_VALID_COMPRESSED = _write({"ws": np.ones((2, 3, 4), np.float32)}, compressed=True)


@harness.fuzz(150)
@given(data=st.data(), compressed=st.booleans())
def test_mutated_files(recorder, data, compressed):
  _case(recorder, data.draw(harness.mutated(_VALID_COMPRESSED if compressed else _VALID)))


def _claiming(shape) -> bytes:
  """A stored .npz whose ws.npy header claims `shape` over 8 bytes of data."""
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                "shape": shape})
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as zf:
    zf.writestr("ws.npy", header.getvalue() + b"\0" * 8)
  return out.getvalue()


def _zip_with(name: str, payload: bytes) -> bytes:
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as zf:
    zf.writestr(name, payload)
  return out.getvalue()


def _npy(array) -> bytes:
  out = io.BytesIO()
  np.save(out, array)
  return out.getvalue()


SPECIAL = {
    "empty": b"",
    "plain .npy": _npy(np.ones((1, 2, 3))),
    "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
    "zip with a text member": _zip_with("ws.txt", b"1"),
    "npy format 3.0": _zip_with("ws.npy", _npy(np.ones((1, 2, 3)))[:6] + b"\x03" +
                                _npy(np.ones((1, 2, 3)))[7:]),
    "ws header claims 2**40 floats": _claiming((1 << 20, 1024, 1024)),
}


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_special_files(recorder, case):
  _case(recorder, SPECIAL[case])
