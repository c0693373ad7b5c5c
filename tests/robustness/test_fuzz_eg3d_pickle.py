"""Fuzzing the EG3D pickle reader and converter: byte-wise mutations of a reference fixture's
pickle (tests/fixtures/eg3d) and of a small synthetic generator, random opcode programs (hostile
globals, REDUCE, BUILD on odd objects, deep nesting, memo abuse, claimed lengths far past the
file), truncations and a zip where a pickle is expected. Every case is read or refused with the
reader's own error."""
import io
import json
import pickle
import pickletools
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sat3d_jax.eg3d import convert
from sat3d_jax.eg3d.pickle_reader import PickleFormatError, UnsafePickleError
from sat3d_jax.errors import InputError
from tests.eg3d.test_eg3d_convert import dumps, legacy_storage_blob, small_generator
from tests.robustness import harness

FIXTURE = "eg3d_cars128_tiny.pkl"


def _valid_network(output):
  state_dict, config = output
  assert state_dict and all(isinstance(v, np.ndarray) for v in state_dict.values())
  json.dumps(config, allow_nan=False)


# The unpickler's own failures on malformed bytes, which the reader names as "truncated or
# malformed pickle" (pickle documents these for bad input).
_UNPICKLER_ERRORS = (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
                     KeyError, IndexError)
READER = harness.Reader("EG3D pickle reader", convert.read_network_pickle,
                        (UnsafePickleError, PickleFormatError), _valid_network, _UNPICKLER_ERRORS)


def _convert(path):
  return convert.convert_network_pickle(path, path.parent / "out")


def _valid_conversion(config):
  json.dumps(config, allow_nan=False)


CONVERTER = harness.Reader("EG3D pickle converter", _convert,
                           (UnsafePickleError, PickleFormatError), _valid_conversion,
                           _UNPICKLER_ERRORS, output_dir="out")


def _opcode_positions(data: bytes) -> list[int]:
  positions = []
  stream = io.BytesIO(data)
  try:
    for _, _, pos in pickletools.genops(stream):
      positions.append(pos)
  except ValueError:
    pass
  return positions


# ------------------------------------------------------------------------------------------------
# Random opcode programs.

_GLOBALS = [("posix", "system"), ("builtins", "eval"), ("builtins", "getattr"),
            ("builtins", "__import__"), ("subprocess", "Popen"), ("numpy", "load"),
            ("torch", "load"), ("torch_utils.persistence", "_src_to_module"),
            # allowed names, to be called with the wrong arguments
            ("collections", "OrderedDict"), ("dnnlib.util", "EasyDict"), ("builtins", "set"),
            ("builtins", "frozenset"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
            ("torch.storage", "_load_from_bytes"),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"),
            ("training.triplane", "OSGDecoder"), ("torch.nn.modules.activation", "Softplus")]


def _unicode(text: str) -> bytes:
  raw = text.encode("utf-8", "surrogatepass")
  return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def _token(draw) -> bytes:
  kind = draw(st.sampled_from([
      "global", "stack_global", "reduce", "build", "newobj", "mark", "dict", "list", "tuple",
      "empty_dict", "empty_list", "empty_tuple", "setitem", "setitems", "append", "appends",
      "int", "str", "bytes", "none", "true", "memoize", "binput", "long_binput", "binget",
      "long_binget", "pop", "dup", "deep", "huge_bytes", "huge_unicode", "frame", "persid",
      "tuple2", "blob"]))
  if kind == "global":
    module, name = draw(st.sampled_from(_GLOBALS))
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()
  if kind == "stack_global":
    module, name = draw(st.sampled_from(_GLOBALS))
    return _unicode(module) + _unicode(name) + pickle.STACK_GLOBAL
  if kind == "int":
    return pickle.BININT + struct.pack("<i", draw(st.integers(-2**31, 2**31 - 1)))
  if kind == "str":
    return _unicode(draw(st.text(max_size=12)))
  if kind == "bytes":
    raw = draw(st.binary(max_size=32))
    return pickle.SHORT_BINBYTES + bytes([len(raw)]) + raw
  if kind in ("binput", "binget"):
    op = pickle.BINPUT if kind == "binput" else pickle.BINGET
    return op + bytes([draw(st.integers(0, 255))])
  if kind in ("long_binput", "long_binget"):
    op = pickle.LONG_BINPUT if kind == "long_binput" else pickle.LONG_BINGET
    return op + struct.pack("<I", draw(st.sampled_from([0, 1, 7, 1 << 20, 1 << 28, 2**32 - 1])))
  if kind == "deep":  # a list nested `depth` levels
    depth = draw(st.sampled_from([10, 1000, 100_000]))
    return pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)
  if kind == "huge_bytes":
    return pickle.BINBYTES8 + struct.pack("<Q", draw(st.sampled_from([1 << 31, 1 << 40, 2**63])))
  if kind == "huge_unicode":
    return pickle.BINUNICODE8 + struct.pack("<Q", draw(st.sampled_from([1 << 31, 1 << 40])))
  if kind == "frame":
    return pickle.FRAME + struct.pack("<Q", draw(st.sampled_from([0, 9, 1 << 40])))
  if kind == "persid":
    return pickle.BINPERSID
  if kind == "blob":  # a legacy storage blob claiming far more elements than it holds
    blob = legacy_storage_blob(np.ones(4, np.float32), numel=draw(
        st.sampled_from([4, 1 << 30, 1 << 62])), count=draw(st.sampled_from([4, 1 << 30])))
    return pickle.BINBYTES + struct.pack("<I", len(blob)) + blob
  return {"reduce": pickle.REDUCE, "build": pickle.BUILD, "newobj": pickle.NEWOBJ,
          "mark": pickle.MARK, "dict": pickle.DICT, "list": pickle.LIST, "tuple": pickle.TUPLE,
          "empty_dict": pickle.EMPTY_DICT, "empty_list": pickle.EMPTY_LIST,
          "empty_tuple": pickle.EMPTY_TUPLE, "setitem": pickle.SETITEM,
          "setitems": pickle.SETITEMS, "append": pickle.APPEND, "appends": pickle.APPENDS,
          "none": pickle.NONE, "true": pickle.NEWTRUE, "memoize": pickle.MEMOIZE,
          "pop": pickle.POP, "dup": pickle.DUP, "tuple2": pickle.TUPLE2}[kind]


@st.composite
def opcode_programs(draw):
  """PROTO 4, up to 40 random opcodes (with arguments), STOP."""
  tokens = [_token(draw) for _ in range(draw(st.integers(1, 40)))]
  return pickle.PROTO + b"\x04" + b"".join(tokens) + pickle.STOP


@st.composite
def inside_generator(draw):
  """A random opcode program spliced in as a value inside the synthetic generator."""
  program = draw(opcode_programs())[2:-1]
  data = dumps(small_generator(), protocol=4)
  positions = _opcode_positions(data)
  pos = draw(st.sampled_from(positions[1:-1]))
  return data[:pos] + program + data[pos:]


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_bytes(eg3d_fixture_dir):
  data = (eg3d_fixture_dir / FIXTURE).read_bytes()
  return data, _opcode_positions(data)


_SMALL = dumps(small_generator(), protocol=4)
_SMALL_PROTO2 = dumps(small_generator(), protocol=2)


@harness.fuzz(25)
@given(data=st.data())
def test_mutated_fixture_pickles(recorder, fixture_bytes, data):
  original, structural = fixture_bytes
  recorder.check_bytes(READER, data.draw(harness.mutated(original, structural)), "net.pkl")


@harness.fuzz(150)
@given(data=st.data(), protocol2=st.booleans())
def test_mutated_synthetic_pickles(recorder, data, protocol2):
  original = _SMALL_PROTO2 if protocol2 else _SMALL
  mutation = harness.mutated(original, _opcode_positions(original))
  recorder.check_bytes(READER, data.draw(mutation), "net.pkl")


@harness.fuzz(150)
@given(program=opcode_programs())
def test_random_opcode_programs(recorder, program):
  recorder.check_bytes(READER, program, "net.pkl")


@harness.fuzz(100)
@given(data=inside_generator())
def test_random_opcodes_inside_a_generator(recorder, data):
  recorder.check_bytes(READER, data, "net.pkl")


@harness.fuzz(30)
@given(data=st.data())
def test_converter_on_mutated_pickles(recorder, data):
  mutation = harness.mutated(_SMALL, _opcode_positions(_SMALL))
  recorder.check_bytes(CONVERTER, data.draw(mutation), "net.pkl")


def _zip_bytes() -> bytes:
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as zf:  # torch.save's zip format: archive/data.pkl + data/0
    zf.writestr("archive/data.pkl", _SMALL)
    zf.writestr("archive/data/0", b"\0" * 64)
  return out.getvalue()


SPECIAL_FILES = {
    "empty": b"",
    "zip where a pickle is expected": _zip_bytes(),
    "memo index 2**28 (a 4 GiB memo)": b"\x80\x04Nr\x00\x00\x00\x10.",
    "BINBYTES8 claiming 1 TiB": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"ab.",
    "list nested 100000 deep": b"\x80\x04" + b"]" * 100_000 + b"a" * 99_999 + b".",
    "dict nested 100000 deep as G_ema": (
        b"\x80\x04}" + b"\x8c\x01k}" * 100_000 + b"s" * 100_000 + b"."),
}


@pytest.mark.parametrize("case", sorted(SPECIAL_FILES))
def test_special_files(recorder, case):
  recorder.check_bytes(READER, SPECIAL_FILES[case], "net.pkl")


@pytest.mark.parametrize("cut", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_fixture(recorder, fixture_bytes, cut):
  original, _ = fixture_bytes
  recorder.check_bytes(READER, original[:int(len(original) * cut)], "net.pkl")


def test_errors_are_input_errors():
  assert issubclass(UnsafePickleError, InputError) and issubclass(PickleFormatError, InputError)
