"""A restricted reader for the network pickles of the official EG3D code (no torch, no code run).

A stock `pickle.load` of an EG3D pickle *executes* the source text embedded in it
(`torch_utils.persistence` re-imports every persistent class from its `module_src`) and imports
torch. This reader instead resolves every global the pickle names against an explicit allow-list
and maps each one to a local stand-in that only builds plain data:

- persistent classes (`torch_utils.persistence._reconstruct_persistent_obj`) and the classes
  pickled by reference (the EG3D renderer / decoder helpers, `torch.nn` Sequential and Softplus)
  become `ModuleRecord`s holding the pickled `__dict__`; `module_src` is kept as a string and
  never compiled;
- tensors and parameters become `TensorRecord`s holding a numpy array decoded from the nested
  legacy torch storage blobs (read with a second, even narrower unpickler);
- `collections.OrderedDict` and `dnnlib.util.EasyDict` become `DictRecord`s (plain dicts);
- numpy scalars become Python numbers.

Any other global raises `UnsafePickleError` naming it *before* anything is called. The format
facts are those of docs/eg3d.md, section "The pickle format".
"""
from __future__ import annotations

import io
import pickle
import pickletools
import reprlib
import struct
from typing import Any, BinaryIO, Callable

import numpy as np

from sat3d_jax.errors import InputError

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def _short(value: Any) -> str:
  """A repr for error messages that stays short (and finite) for any nesting depth."""
  return _REPR.repr(value)


# torch/serialization.py (legacy format): magic number and protocol version of a torch.save blob.
LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001
# torch_utils/persistence.py: `_version` of the persistent-object format written by EG3D.
PERSISTENCE_FORMAT_VERSION = 6

# Legacy typed storages -> numpy dtype (torch always writes storage bytes little-endian).
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

# Classes the official code pickles by reference (docs/eg3d.md). They carry no code of their
# own in the pickle; here they become records of their pickled attributes.
BY_REFERENCE_MODULE_CLASSES = frozenset({
    "training.triplane.OSGDecoder",
    "training.volumetric_rendering.renderer.ImportanceRenderer",
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",
    "training.volumetric_rendering.ray_sampler.RaySampler",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.activation.Softplus",
})

# numpy dtype codes accepted for pickled numpy scalars (numbers only; the codes numpy pickles).
_SCALAR_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})


class UnsafePickleError(pickle.UnpicklingError, InputError):
  """The pickle names a global outside the allow-list; nothing was called."""


class PickleFormatError(InputError):
  """The pickle is made only of allowed parts but is not laid out as an EG3D pickle is."""


# ------------------------------------------------------------------------------------------------
# Plain-data stand-ins for the allowed classes.


class ModuleRecord:
  """A torch module as pickled: its class name and its `__dict__` (`state`), never its code.

  Attributes:
    class_name: `module.qualname` for classes pickled by reference; the bare class name for
      persistent classes (their module exists only as `module_src`).
    state: the pickled `__dict__` (`_parameters`, `_buffers`, `_modules`, plain attributes, ...).
    module_src: the embedded source text of a persistent class (kept, never executed), else None.
  """

  # Class-level defaults: NEWOBJ creates instances without calling __init__.
  class_name: str = "<unset>"
  state: dict | None = None
  module_src: str | None = None

  def __setstate__(self, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
      raise PickleFormatError(f"the state of {self.class_name} is not a dict with str keys")
    self.state = dict(state)

  def __repr__(self) -> str:
    return f"ModuleRecord({self.class_name})"


_by_reference_types: dict[str, type] = {}


def _module_record_type(qualified_name: str) -> type:
  """One ModuleRecord subclass per allowed by-reference class (NEWOBJ needs a type object)."""
  if qualified_name not in _by_reference_types:
    short = qualified_name.rsplit(".", 1)[-1]
    _by_reference_types[qualified_name] = type(
        f"{short}Record", (ModuleRecord,), {"class_name": qualified_name})
  return _by_reference_types[qualified_name]


class DictRecord(dict):
  """Stand-in for `collections.OrderedDict` and `dnnlib.util.EasyDict`: a plain dict."""

  def __setstate__(self, state: Any) -> None:
    # EasyDict / OrderedDict keep their items as dict items; an attribute state is not expected.
    if state:
      raise PickleFormatError(f"unexpected attribute state on a pickled dict: {_short(state)}")


class TensorRecord:
  """A tensor or parameter rebuilt from a storage: `array` (a C-contiguous numpy copy)."""

  __slots__ = ("array", "is_parameter")

  def __init__(self, array: np.ndarray, is_parameter: bool = False) -> None:
    self.array = array
    self.is_parameter = is_parameter

  def __setstate__(self, state: Any) -> None:
    raise PickleFormatError("unexpected BUILD on a tensor")

  def __repr__(self) -> str:
    return f"TensorRecord({self.array.dtype}{list(self.array.shape)})"


class StorageRecord:
  """A decoded legacy torch storage: a read-only 1-D numpy array over the blob bytes."""

  __slots__ = ("array",)

  def __init__(self, array: np.ndarray) -> None:
    self.array = array

  def __setstate__(self, state: Any) -> None:
    raise PickleFormatError("unexpected BUILD on a storage")


class DtypeRecord:
  """A pickled `numpy.dtype` of a number type; BUILD gives it its byte order."""

  __slots__ = ("code", "byteorder")

  def __init__(self, code: str) -> None:
    self.code = code
    self.byteorder = "="

  def __setstate__(self, state: Any) -> None:
    # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags).
    if (not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "=")
        or any(part is not None for part in state[2:5])):
      raise PickleFormatError(f"unsupported numpy dtype state {_short(state)}")
    self.byteorder = state[1]

  def to_numpy(self) -> np.dtype:
    return np.dtype(self.code).newbyteorder(self.byteorder)


# ------------------------------------------------------------------------------------------------
# Safe replacements for the allowed callables.


def _reconstruct_persistent_obj(meta: Any) -> ModuleRecord:
  """torch_utils.persistence._reconstruct_persistent_obj, minus the `exec` of `module_src`."""
  if not isinstance(meta, dict):
    raise PickleFormatError("persistent object metadata is not a dict")
  missing = {"type", "version", "module_src", "class_name", "state"} - set(meta)
  if missing:
    raise PickleFormatError(f"persistent object metadata lacks {sorted(missing)}")
  if meta["type"] != "class":
    raise PickleFormatError(f"persistent object of type {meta['type']!r} (expected 'class')")
  if meta["version"] != PERSISTENCE_FORMAT_VERSION:
    raise PickleFormatError(f"persistence format version {meta['version']!r} "
                            f"(this reader knows version {PERSISTENCE_FORMAT_VERSION})")
  if not isinstance(meta["class_name"], str) or not isinstance(meta["module_src"], str):
    raise PickleFormatError("persistent object class_name / module_src are not strings")
  record = ModuleRecord()
  record.class_name = meta["class_name"]
  record.__setstate__(meta["state"])
  record.module_src = meta["module_src"]
  return record


def _check_int(value: Any, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise PickleFormatError(f"tensor {what} is {value!r}, not an int")
  return value


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> TensorRecord:
  """torch._utils._rebuild_tensor_v2 = a bounds-checked strided view of the storage, copied."""
  del requires_grad, metadata  # Training-time flags; irrelevant to the values.
  if not isinstance(storage, StorageRecord):
    raise PickleFormatError(f"tensor storage is a {type(storage).__name__}, not a storage")
  if backward_hooks:
    raise PickleFormatError("tensor has backward hooks")
  if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
    raise PickleFormatError(f"tensor size {size!r} / stride {stride!r} are not matching tuples")
  offset = _check_int(storage_offset, "storage offset")
  shape = [_check_int(s, "size") for s in size]
  steps = [_check_int(s, "stride") for s in stride]
  if offset < 0 or any(s < 0 for s in shape) or any(s < 0 for s in steps):
    raise PickleFormatError(f"negative tensor offset/size/stride: {offset}, {size}, {stride}")
  data = storage.array
  if 0 in shape:
    return TensorRecord(np.zeros(shape, data.dtype))
  last = offset + sum((n - 1) * s for n, s in zip(shape, steps))
  if last >= data.size:
    raise PickleFormatError(f"tensor (offset {offset}, size {size}, stride {stride}) reads "
                            f"element {last} of a storage of {data.size}")
  # Overlapping views (stride 0, as from expand()) could make a small file allocate without
  # bound; no network state needs them.
  if int(np.prod(shape, dtype=np.float64)) > data.size:
    raise PickleFormatError(f"tensor of size {size} has more elements than its storage "
                            f"({data.size}): overlapping views are not supported")
  view = np.lib.stride_tricks.as_strided(
      data[offset:], shape=shape, strides=[s * data.itemsize for s in steps], writeable=False)
  return TensorRecord(view.copy(order="C"))


def _rebuild_parameter(data: Any, requires_grad: Any = True,
                       backward_hooks: Any = None) -> TensorRecord:
  """torch._utils._rebuild_parameter: marks the tensor as a parameter."""
  del requires_grad
  if not isinstance(data, TensorRecord):
    raise PickleFormatError(f"parameter data is a {type(data).__name__}, not a tensor")
  if backward_hooks:
    raise PickleFormatError("parameter has backward hooks")
  return TensorRecord(data.array, is_parameter=True)


def _numpy_dtype(code: Any, align: Any = False, copy: Any = False) -> DtypeRecord:
  """numpy.dtype(code, align, copy), for number types only."""
  del align, copy
  if code not in _SCALAR_CODES:
    raise PickleFormatError(f"numpy dtype {_short(code)} is not one of {sorted(_SCALAR_CODES)}")
  return DtypeRecord(code)


def _numpy_scalar(dtype: Any, data: Any = None) -> bool | int | float:
  """numpy.core.multiarray.scalar(dtype, bytes) -> the Python number it holds."""
  if not isinstance(dtype, DtypeRecord) or not isinstance(data, bytes):
    raise PickleFormatError("numpy scalar is not (number dtype, bytes)")
  np_dtype = dtype.to_numpy()
  if len(data) != np_dtype.itemsize:
    raise PickleFormatError(f"numpy {np_dtype} scalar with {len(data)} bytes")
  return np.frombuffer(data, np_dtype)[0].item()


def _load_from_bytes(blob: Any) -> StorageRecord:
  """torch.storage._load_from_bytes: decodes the nested legacy torch.save blob."""
  if not isinstance(blob, bytes):
    raise PickleFormatError("storage payload is not bytes")
  return StorageRecord(decode_legacy_storage(blob))


# Pickle protocols below 4 build sets by calling these; no other builtin is ever allowed.
_ALLOWED_CONTAINER_BUILTINS = {"set": set, "frozenset": frozenset}


def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
  allowed: dict[tuple[str, str], Callable[..., Any]] = {
      ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
      ("torch.storage", "_load_from_bytes"): _load_from_bytes,
      ("collections", "OrderedDict"): DictRecord,
      ("dnnlib.util", "EasyDict"): DictRecord,
  }
  # numpy moved numpy.core to numpy._core in 2.0; pickles written by either name exist.
  for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    allowed[(core, "scalar")] = _numpy_scalar
  allowed[("numpy", "dtype")] = _numpy_dtype
  for name in BY_REFERENCE_MODULE_CLASSES:
    module, qualname = name.rsplit(".", 1)
    allowed[(module, qualname)] = _module_record_type(name)
  for name, container in _ALLOWED_CONTAINER_BUILTINS.items():
    allowed[("builtins", name)] = container
  return allowed


_ALLOWED_GLOBALS = _allowed_globals()


# ------------------------------------------------------------------------------------------------
# Unpicklers.


# What the unpickler or a stand-in raises on bytes that are not a well-formed pickle of the
# expected shape (bad opcodes, wrong argument counts, BUILD on a plain dict, ...).
_MALFORMED_PICKLE_ERRORS = (EOFError, pickle.UnpicklingError, ValueError, TypeError,
                            AttributeError, KeyError, IndexError)


_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def check_opcodes(stream: io.BytesIO) -> None:
  """Walks one pickle's opcodes (pickletools, which builds and runs nothing) and rewinds.

  The C unpickler allocates what a pickle claims before it reads it: a memo index sizes the memo
  (an 11-byte pickle with LONG_BINPUT 2**28 makes it fill 4 GiB) and BINBYTES8/BINUNICODE8/FRAME
  lengths size a buffer. Refused here: a memo index beyond the entries written so far (a pickler
  numbers them 0, 1, 2, ...) and a length reaching past the end of the data.

  Raises:
    PickleFormatError: naming the opcode and its position.
  """
  start = stream.tell()
  size = len(stream.getbuffer())
  puts = 0
  try:
    for opcode, arg, pos in pickletools.genops(stream):
      if opcode.name in _MEMO_PUTS:
        if not isinstance(arg, int) or not 0 <= arg <= puts:
          raise PickleFormatError(f"memo index {arg!r:.30} at byte {pos} skips past the "
                                  f"{puts} entries written so far")
        puts += 1
      elif opcode.name == "MEMOIZE":
        puts += 1
      elif opcode.name == "FRAME" and arg > size - stream.tell():
        raise PickleFormatError(f"frame of {arg} bytes at byte {pos} reaches past the end "
                                "of the data")
  except PickleFormatError:
    raise
  except ValueError as e:  # genops: unknown opcode, or an argument past the end of the data
    raise PickleFormatError(f"truncated or malformed pickle: {e}") from e
  finally:
    stream.seek(start)


class _NetworkUnpickler(pickle.Unpickler):
  """Resolves globals against the allow-list only; refuses persistent ids."""

  def find_class(self, module: str, name: str) -> Any:
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise UnsafePickleError(
          f"refusing to load {module}.{name}: not in the allow-list of an EG3D network pickle"
      ) from None

  def persistent_load(self, pid: Any) -> Any:
    raise PickleFormatError(f"unexpected persistent id {_short(pid)} in a network pickle")


class _StorageType:
  """The `torch.<X>Storage` class named in a legacy storage's persistent id."""

  def __init__(self, name: str) -> None:
    self.name = name


class _LegacyStorageUnpickler(pickle.Unpickler):
  """Unpickler for the parts of a legacy torch.save blob: only storage type names are allowed."""

  def __init__(self, file: BinaryIO) -> None:
    super().__init__(file)
    self.storages: dict[str, tuple[np.dtype, int]] = {}

  def find_class(self, module: str, name: str) -> Any:
    if module == "torch" and name.endswith("Storage"):
      if name not in STORAGE_DTYPES:
        raise PickleFormatError(f"unsupported tensor storage type torch.{name} (supported: "
                                f"{', '.join(sorted(STORAGE_DTYPES))})")
      return _StorageType(name)
    raise UnsafePickleError(
        f"refusing to load {module}.{name}: not a torch storage type (inside a tensor storage)")

  def persistent_load(self, pid: Any) -> Any:
    # torch/serialization.py `_legacy_save`: ('storage', storage_type, key, location, numel
    # [, view_metadata]); view_metadata is None for whole storages.
    if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
        or (len(pid) == 6 and pid[5] is not None)):
      raise PickleFormatError(f"unsupported persistent id {_short(pid)} in a tensor storage")
    _, storage_type, key, _, numel = pid[:5]
    if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
      raise PickleFormatError(f"malformed storage persistent id {_short(pid)}")
    numel = _check_int(numel, "storage element count")
    self.storages[key] = (STORAGE_DTYPES[storage_type.name], numel)
    return key


def decode_legacy_storage(blob: bytes) -> np.ndarray:
  """Decodes a legacy `torch.save(storage)` blob into a read-only 1-D numpy array.

  Layout (torch/serialization.py, legacy format): pickle(magic), pickle(protocol 1001),
  pickle(sys_info), pickle(storage, persistent id per storage), pickle(list of keys), then per
  key an int64 little-endian element count and the raw little-endian bytes.

  Raises:
    PickleFormatError: on an unexpected layout, unsupported dtype or truncated/extra bytes.
    UnsafePickleError: if a part names a global other than a torch storage type.
  """
  stream = io.BytesIO(blob)
  unpickler = _LegacyStorageUnpickler(stream)

  def load() -> Any:
    check_opcodes(stream)
    return unpickler.load()

  try:
    magic = load()
    if magic != LEGACY_MAGIC_NUMBER:
      raise PickleFormatError(f"tensor storage lacks the torch.save magic number "
                              f"(got {_short(magic)})")
    protocol = load()
    if protocol != LEGACY_PROTOCOL_VERSION:
      raise PickleFormatError(f"tensor storage has torch.save protocol {_short(protocol)} "
                              f"(expected {LEGACY_PROTOCOL_VERSION})")
    sys_info = load()
    if not isinstance(sys_info, dict):
      raise PickleFormatError("tensor storage sys_info is not a dict")
    root_key = load()
    keys = load()
  except (UnsafePickleError, PickleFormatError):
    raise
  except _MALFORMED_PICKLE_ERRORS as e:
    raise PickleFormatError(f"truncated or malformed tensor storage header: "
                            f"{type(e).__name__}: {e}") from e
  if not isinstance(root_key, str) or root_key not in unpickler.storages:
    raise PickleFormatError("tensor storage blob does not hold a storage")
  if (not isinstance(keys, list) or set(keys) != set(unpickler.storages)
      or len(keys) != len(unpickler.storages)):
    raise PickleFormatError(f"tensor storage key list {_short(keys)} does not match its storages")

  arrays = {}
  for key in keys:
    dtype, numel = unpickler.storages[key]
    header = stream.read(8)
    if len(header) != 8:
      raise PickleFormatError(f"tensor storage {key!r} truncated before its element count")
    (count,) = struct.unpack("<q", header)
    if count != numel:
      raise PickleFormatError(f"tensor storage {key!r} holds {count} elements, "
                              f"its header says {numel}")
    nbytes = count * dtype.itemsize
    start = stream.tell()
    if nbytes < 0 or start + nbytes > len(blob):
      raise PickleFormatError(f"tensor storage {key!r} truncated: needs {nbytes} bytes, "
                              f"{len(blob) - start} left")
    arrays[key] = np.frombuffer(blob, dtype, count, start)
    stream.seek(start + nbytes)
  if stream.tell() != len(blob):
    raise PickleFormatError(f"tensor storage has {len(blob) - stream.tell()} unexpected "
                            "trailing bytes")
  return arrays[root_key]


def load_network_pickle(file: BinaryIO) -> Any:
  """Unpickles an EG3D network pickle from an open binary file, running none of its code.

  The file is read into memory and its opcodes checked first (`check_opcodes`).

  Returns plain data: dicts, lists, numbers, strings, `ModuleRecord`s, `TensorRecord`s.

  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list (nothing was called).
    PickleFormatError: the pickle is not laid out as an EG3D network pickle.
  """
  stream = io.BytesIO(file.read())
  try:
    check_opcodes(stream)
    return _NetworkUnpickler(stream).load()
  except (UnsafePickleError, PickleFormatError):
    raise
  except _MALFORMED_PICKLE_ERRORS as e:
    raise PickleFormatError(f"truncated or malformed pickle: {type(e).__name__}: {e}") from e
