"""EG3D pickle conversion: fixture parity, CLI round trip, and refusal of hostile pickles.

References: the fixture .npz/.json written by the official PyTorch code, and pickles built here
with pickle's own protocol (a pure-Python Pickler that can name any module.qualname without
importing it) following the released pickles' format: persistent classes of
torch_utils/persistence.py and nested legacy torch storages.
"""
import hashlib
import io
import json
import os
import pathlib
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from sat3d_jax.eg3d import convert
from sat3d_jax.eg3d.generator import load_generator
from sat3d_jax.eg3d.pickle_reader import PickleFormatError, UnsafePickleError

FIXTURES = ["eg3d_tiny128", "eg3d_ffhq512_small", "eg3d_cars128_tiny"]
REPO = pathlib.Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------------
# A pickle writer that can reference globals that are not importable here (torch, EG3D, ...).


class Global:
  """A reference to `module.name`, written as a pickle global without importing it."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):
    raise AssertionError("a Global is never called while writing")


class Call:
  """Pickled as REDUCE: `func(*args)`, `func` being a Global or another Call."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __call__(self, *args):
    raise AssertionError("a Call is never called while writing")

  def __reduce__(self):
    return self.func, self.args


class NewObj:
  """Pickled as NEWOBJ of `cls` (a Global), then SETITEMS `items`, then BUILD `state`."""

  def __init__(self, cls, state=None, items=None):
    self.cls, self.state, self.items = cls, state, items


class _Pickler(pickle._Pickler):  # The pure-Python pickler has an extensible dispatch table.
  dispatch = pickle._Pickler.dispatch.copy()

  def __init__(self, file, protocol, storage_id=None):
    super().__init__(file, protocol)
    self._storage_id = storage_id

  def persistent_id(self, obj):
    return self._storage_id if obj is STORAGE else None

  def _save_global_ref(self, obj):
    if self.proto >= 4:
      self.save(obj.module)
      self.save(obj.name)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  def _save_new_obj(self, obj):
    self.save(obj.cls)
    self.save(())
    self.write(pickle.NEWOBJ)
    self.memoize(obj)
    if obj.items:
      self._batch_setitems(iter(obj.items.items()))
    if obj.state is not None:
      self.save(obj.state)
      self.write(pickle.BUILD)

  dispatch[Global] = _save_global_ref
  dispatch[NewObj] = _save_new_obj


STORAGE = object()  # Placeholder for the storage inside a legacy blob (a persistent id).


def dumps(obj, protocol=4, storage_id=None):
  f = io.BytesIO()
  _Pickler(f, protocol, storage_id).dump(obj)
  return f.getvalue()


def legacy_storage_blob(values, storage_type="FloatStorage", numel=None, count=None,
                        payload=None, storage_obj=STORAGE, storage_module="torch"):
  """torch.save(storage) in the legacy format: magic, protocol, sys_info, storage, keys, data."""
  values = np.ascontiguousarray(values).ravel()
  numel = values.size if numel is None else numel
  out = io.BytesIO()
  for part in (0x1950a86a20f9469cfc6c, 1001,
               dict(protocol_version=1001, little_endian=True,
                    type_sizes=dict(short=2, int=4, long=4))):
    out.write(dumps(part, protocol=2))
  storage_id = ("storage", Global(storage_module, storage_type), "0", "cpu", numel, None)
  out.write(dumps(storage_obj, protocol=2, storage_id=storage_id))
  out.write(dumps(["0"], protocol=2))
  out.write(struct.pack("<q", numel if count is None else count))
  little_endian = values.astype(values.dtype.newbyteorder("<"))
  out.write(little_endian.tobytes() if payload is None else payload)
  return out.getvalue()


def ordered_dict():
  return Call(Global("collections", "OrderedDict"))


def tensor(storage_blob, offset, size, stride, parameter=False):
  t = Call(Global("torch._utils", "_rebuild_tensor_v2"),
           Call(Global("torch.storage", "_load_from_bytes"), storage_blob),
           offset, tuple(size), tuple(stride), False, ordered_dict())
  if not parameter:
    return t
  return Call(Global("torch._utils", "_rebuild_parameter"), t, True, ordered_dict())


def module_state(parameters=None, buffers=None, modules=None, non_persistent=(), **attrs):
  return dict(training=False, _parameters=parameters or {}, _buffers=buffers or {},
              _non_persistent_buffers_set=set(non_persistent), _modules=modules or {}, **attrs)


def persistent(class_name, state, module_src="# source omitted\n"):
  meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
  return Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def by_reference(qualified_name, state):
  """A module pickled by reference: NEWOBJ of its class, then BUILD with its __dict__."""
  return NewObj(Global(*qualified_name.rsplit(".", 1)), state=state)


def write(tmp_path, obj, name="net.pkl", **kwargs):
  path = tmp_path / name
  path.write_bytes(obj if isinstance(obj, bytes) else dumps(obj, **kwargs))
  return path


def small_generator(weight_blob=None, module_src="# source omitted\n"):
  """A TriPlaneGenerator-shaped pickle: params, buffers, nested persistent/by-reference modules."""
  storage = weight_blob or legacy_storage_blob(np.arange(10, dtype=np.float32))
  fc = persistent("FullyConnectedLayer", module_state(
      parameters={"weight": tensor(storage, 1, (2, 3), (1, 2), parameter=True), "bias": None},
      weight_gain=0.5))
  decoder = by_reference("training.triplane.OSGDecoder", module_state(modules={
      "net": by_reference("torch.nn.modules.container.Sequential", module_state(modules={
          "0": fc, "1": by_reference("torch.nn.modules.activation.Softplus",
                                     module_state(beta=1, threshold=20))}))}))
  buffers = {
      "w_avg": tensor(legacy_storage_blob(np.array([1.5, -2], np.float16), "HalfStorage"),
                      0, (2,), (1,)),
      "count": tensor(legacy_storage_blob(np.array([7, -8], np.int64), "LongStorage"), 1, (), ()),
      "mask": tensor(legacy_storage_blob(np.array([1, 0, 1], np.bool_), "BoolStorage"),
                     0, (3,), (1,)),
      "lut": tensor(legacy_storage_blob(np.array([3, 250], np.uint8), "ByteStorage"),
                    0, (2,), (1,)),
      "cache": tensor(storage, 0, (10,), (1,)),
      "unset": None,
  }
  # numpy scalars as written by numpy 2 (numpy._core) and by the 2022 files (numpy.core).
  old_scalar = Call(Global("numpy.core.multiarray", "scalar"), np.dtype("f8"),
                    np.float64(1.5).tobytes())
  init_kwargs = NewObj(Global("dnnlib.util", "EasyDict"), items=dict(
      z_dim=4, pivot=(0, 0, 0.2), c_scale=old_scalar, seed=np.int64(3), flip=np.bool_(True)))
  generator = persistent("TriPlaneGenerator", module_state(
      buffers=buffers, non_persistent=["cache"], modules={"decoder": decoder, "none": None},
      neural_rendering_resolution=64, _init_args=(), _init_kwargs=init_kwargs),
      module_src=module_src)
  return {"G_ema": generator, "training_set_kwargs": None}


# ------------------------------------------------------------------------------------------------
# The official fixtures.


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_pickle_gives_the_official_state_dict_and_config(eg3d_fixture_dir, name):
  state_dict, config = convert.read_network_pickle(eg3d_fixture_dir / f"{name}.pkl")
  with np.load(eg3d_fixture_dir / f"{name}.npz") as npz:
    expected = {k: npz[k] for k in npz.files if not k.startswith("io/")}
  reference = json.loads((eg3d_fixture_dir / f"{name}.json").read_text())

  assert list(state_dict) == list(expected)  # Same names, in torch's state_dict order.
  for key, want in expected.items():
    got = state_dict[key]
    assert got.dtype == want.dtype == np.float32, key
    assert got.shape == want.shape, key
    assert got.tobytes() == want.tobytes(), key  # Bitwise equal.

  init_kwargs = dict(reference["init_kwargs"])
  assert config["class_name"] == init_kwargs.pop("class_name")  # Not a constructor kwarg.
  assert config["init_kwargs"] == init_kwargs
  assert config["neural_rendering_resolution"] == reference["neural_rendering_resolution"]
  assert config["num_tensors"] == len(expected)
  json.dumps(config, allow_nan=False)  # Plain JSON data.


def test_fixture_with_missing_key_lists_the_keys_found(eg3d_fixture_dir):
  with pytest.raises(PickleFormatError, match=r"no 'G' network; keys found: "
                     r"\['G_ema', 'augment_pipe', 'training_set_kwargs'\]"):
    convert.read_network_pickle(eg3d_fixture_dir / "eg3d_tiny128.pkl", key="G")


def test_truncated_fixture_pickle_is_a_clear_error(eg3d_fixture_dir, tmp_path):
  data = (eg3d_fixture_dir / "eg3d_tiny128.pkl").read_bytes()
  path = write(tmp_path, data[: len(data) // 2])
  with pytest.raises(PickleFormatError, match=rf"{path.name}: truncated or malformed pickle"):
    convert.read_network_pickle(path)


def _run_cli(*args):
  return subprocess.run([sys.executable, str(REPO / "launch" / "convert_eg3d.py"), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=300)


def test_cli_converts_and_round_trips(eg3d_fixture_dir, tmp_path):
  pkl = eg3d_fixture_dir / "eg3d_tiny128.pkl"
  out = tmp_path / "converted" / "tiny"
  result = _run_cli("--pkl", str(pkl), "--out", str(out))
  assert result.returncode == 0, result.stderr
  assert "177 tensors" in result.stdout and str(out) in result.stdout
  assert "SuperresolutionHybrid2X" in result.stdout
  assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]  # No staging leftovers.
  assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.npz"]

  state_dict, config = convert.read_network_pickle(pkl)
  with np.load(out / "params.npz", allow_pickle=False) as npz:
    assert npz.files == list(state_dict)
    for key, want in state_dict.items():
      assert npz[key].dtype == want.dtype and npz[key].shape == want.shape, key
      assert npz[key].tobytes() == want.tobytes(), key
  written = json.loads((out / "config.json").read_text())
  assert {k: written[k] for k in config} == config
  assert written["source"] == {"file": "eg3d_tiny128.pkl", "key": "G_ema",
                               "sha256": hashlib.sha256(pkl.read_bytes()).hexdigest()}
  assert written["converter"]["version"] == convert.CONVERTER_VERSION
  loaded = load_generator(out)  # what every command reads a converted directory with
  assert set(loaded.params) == set(state_dict)
  for key, want in state_dict.items():
    assert np.asarray(loaded.params[key]).tobytes() == want.astype(np.float32).tobytes(), key
  assert loaded.config == {k: config[k] for k in ("init_kwargs", "neural_rendering_resolution")}

  # A second run refuses to replace it unless asked; an unrelated directory is never replaced.
  before = (out / "params.npz").stat().st_mtime_ns
  result = _run_cli("--pkl", str(pkl), "--out", str(out))
  assert result.returncode == 2 and "--overwrite" in result.stderr
  assert "error: " in result.stderr and "Traceback" not in result.stderr
  assert (out / "params.npz").stat().st_mtime_ns == before
  result = _run_cli("--pkl", str(eg3d_fixture_dir / "eg3d_cars128_tiny.pkl"), "--out", str(out),
                    "--overwrite")
  assert result.returncode == 0, result.stderr
  assert json.loads((out / "config.json").read_text())["source"]["file"] == "eg3d_cars128_tiny.pkl"
  assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


def test_a_version_1_conversion_still_loads(eg3d_fixture_dir, tmp_path):
  """Converter version 1 wrote 0-d tensors (noise_strength) with shape (1,); load_generator
  reads such a directory as the scalars they are."""
  out = tmp_path / "v1"
  convert.convert_network_pickle(eg3d_fixture_dir / "eg3d_tiny128.pkl", out)
  with np.load(out / "params.npz") as npz:
    arrays = {k: npz[k] for k in npz.files}
  np.savez(out / "params.npz", **{k: v.reshape(1) if v.ndim == 0 else v
                                  for k, v in arrays.items()})
  config = json.loads((out / "config.json").read_text())
  config["converter"]["version"] = 1
  (out / "config.json").write_text(json.dumps(config))
  loaded = load_generator(out)
  assert all(np.asarray(loaded.params[k]).shape == v.shape for k, v in arrays.items())
  assert any(v.ndim == 0 for v in arrays.values())


def test_convert_fills_an_empty_directory_but_never_replaces_a_foreign_one(eg3d_fixture_dir,
                                                                           tmp_path):
  pkl = eg3d_fixture_dir / "eg3d_tiny128.pkl"
  (tmp_path / "empty").mkdir()
  convert.convert_network_pickle(pkl, tmp_path / "empty")
  assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["config.json", "params.npz"]

  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep me")
  with pytest.raises(FileExistsError, match="not an earlier conversion"):
    convert.convert_network_pickle(pkl, tmp_path / "mine", overwrite=True)
  assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]


# ------------------------------------------------------------------------------------------------
# Synthetic pickles in the EG3D layout.


def test_synthetic_generator_layouts_and_dtypes(tmp_path):
  state_dict, config = convert.read_network_pickle(write(tmp_path, small_generator()))
  assert list(state_dict) == ["w_avg", "count", "mask", "lut", "decoder.net.0.weight"]
  np.testing.assert_array_equal(state_dict["decoder.net.0.weight"],
                                np.array([[1, 3, 5], [2, 4, 6]], np.float32))  # offset, strides
  assert state_dict["decoder.net.0.weight"].flags.c_contiguous
  assert state_dict["w_avg"].dtype == np.float16 and list(state_dict["w_avg"]) == [1.5, -2]
  assert state_dict["count"].dtype == np.int64 and state_dict["count"].shape == ()
  assert state_dict["count"] == -8
  assert state_dict["mask"].dtype == np.bool_ and list(state_dict["mask"]) == [True, False, True]
  assert state_dict["lut"].dtype == np.uint8 and list(state_dict["lut"]) == [3, 250]
  assert config["class_name"] == "training.triplane.TriPlaneGenerator"
  assert config["init_kwargs"] == {"z_dim": 4, "pivot": [0, 0, 0.2], "c_scale": 1.5, "seed": 3,
                                   "flip": True}
  types = [type(config["init_kwargs"][k]) for k in ("c_scale", "seed", "flip")]
  assert types == [float, int, bool]  # Python numbers, not numpy scalars.
  assert config["neural_rendering_resolution"] == 64
  assert config["modules"] == {"decoder": "training.triplane.OSGDecoder"}
  assert config["num_parameters"] == 6


def test_embedded_module_source_is_kept_but_never_executed(tmp_path):
  sentinel = tmp_path / "SENTINEL"
  src = f"open({str(sentinel)!r}, 'w').close()\n"
  path = write(tmp_path, small_generator(module_src=src))
  _, config = convert.read_network_pickle(path)
  assert config["module_src_sha256"] == hashlib.sha256(src.encode()).hexdigest()
  assert not sentinel.exists()


def test_unsupported_storage_dtype_is_a_clear_error(tmp_path):
  blob = legacy_storage_blob(np.zeros(4, np.float32), storage_type="ComplexFloatStorage")
  with pytest.raises(PickleFormatError, match=r"unsupported tensor storage type "
                     r"torch.ComplexFloatStorage"):
    convert.read_network_pickle(write(tmp_path, small_generator(weight_blob=blob)))


@pytest.mark.parametrize("blob_kwargs, message", [
    (dict(payload=np.arange(10, dtype=np.float32).tobytes()[:-3]), r"truncated: needs 40 bytes"),
    (dict(count=11), r"holds 11 elements, its header says 10"),
    (dict(payload=np.arange(11, dtype=np.float32).tobytes()), r"4 unexpected trailing bytes"),
])
def test_malformed_storage_bytes_are_a_clear_error(tmp_path, blob_kwargs, message):
  blob = legacy_storage_blob(np.arange(10, dtype=np.float32), **blob_kwargs)
  with pytest.raises(PickleFormatError, match=message):
    convert.read_network_pickle(write(tmp_path, small_generator(weight_blob=blob)))


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
  blob = legacy_storage_blob(np.arange(4, dtype=np.float32))
  net = {"G_ema": persistent("Net", module_state(parameters={
      "weight": tensor(blob, 1, (2, 2), (2, 1), parameter=True)}))}
  with pytest.raises(PickleFormatError, match=r"reads element 4 of a storage of 4"):
    convert.read_network_pickle(write(tmp_path, net))


def test_overlapping_tensor_view_is_refused(tmp_path):
  blob = legacy_storage_blob(np.arange(4, dtype=np.float32))
  net = {"G_ema": persistent("Net", module_state(buffers={
      "huge": tensor(blob, 0, (10**6, 10**6), (0, 0))}))}  # 4 TB if it were materialised.
  with pytest.raises(PickleFormatError, match=r"more elements than its storage"):
    convert.read_network_pickle(write(tmp_path, net))


def _malformed_networks():
  cyclic = by_reference("torch.nn.modules.container.Sequential", module_state())
  cyclic.state["_modules"]["0"] = cyclic
  return {
      "object dtype scalar": (
          {"G_ema": persistent("Net", module_state(x=Call(
              Global("numpy._core.multiarray", "scalar"), Call(Global("numpy", "dtype"), "O8"),
              b"12345678")))},
          r"numpy dtype 'O8' is not one of"),
      "dict with attribute state": (
          {"G_ema": NewObj(Global("collections", "OrderedDict"), state={"__class__": 1})},
          r"unexpected attribute state on a pickled dict"),
      "persistence version": (
          {"G_ema": Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), dict(
              type="class", version=5, module_src="", class_name="Net", state=module_state()))},
          r"persistence format version 5 \(this reader knows version 6\)"),
      "module cycle": ({"G_ema": cyclic}, r"module 0 contains itself"),
      "odd tensor name": (
          {"G_ema": persistent("Net", module_state(buffers={"../x": None}))},
          r"a _buffers entry named '../x'"),
      "not a module": ({"G_ema": [1, 2]}, r"'G_ema' is a list, not a network"),
      "wrong call arity": (
          {"G_ema": Call(Global("torch._utils", "_rebuild_parameter"))},
          r"truncated or malformed pickle: TypeError"),
  }


@pytest.mark.parametrize("case", list(_malformed_networks()))
def test_malformed_networks_are_clear_errors(tmp_path, case):
  network, message = _malformed_networks()[case]
  with pytest.raises(PickleFormatError, match=message):
    convert.read_network_pickle(write(tmp_path, network))


def test_persistent_id_in_a_network_pickle_is_refused(tmp_path):
  data = dumps({"G_ema": STORAGE}, storage_id=("storage", "0"))
  with pytest.raises(PickleFormatError, match=r"unexpected persistent id"):
    convert.read_network_pickle(write(tmp_path, data))


def test_missing_network_lists_the_keys_found(tmp_path):
  with pytest.raises(PickleFormatError, match=r"no 'G_ema' network; keys found: \['D', 'G'\]"):
    convert.read_network_pickle(write(tmp_path, {"G": None, "D": None}))


# ------------------------------------------------------------------------------------------------
# Hostile pickles: refused before anything runs.


def _hostile_payloads(sentinel):
  """{case: (name the reader must report, pickle bytes)}; each payload creates `sentinel`."""

  class Reduce:
    def __init__(self, func, *args):
      self.func, self.args = func, args

    def __reduce__(self):
      return self.func, self.args

  touch = f"touch {sentinel}"
  code = f"open({str(sentinel)!r}, 'w').close()"
  system = f"{os.system.__module__}.system"  # posix.system on Linux.
  return {
      "os.system protocol 0": (system, pickle.dumps(Reduce(os.system, touch), protocol=0)),
      "os.system protocol 2": (system, pickle.dumps(Reduce(os.system, touch), protocol=2)),
      "os.system as G_ema": (system, pickle.dumps({"G_ema": Reduce(os.system, touch)})),
      "exec": ("builtins.exec", pickle.dumps(Reduce(exec, code))),
      "eval": ("builtins.eval", pickle.dumps(Reduce(eval, code))),
      "subprocess.Popen": ("subprocess.Popen",
                           pickle.dumps(Reduce(subprocess.Popen, ["touch", str(sentinel)]))),
      "getattr(__import__('os'), 'system')": ("builtins.getattr", dumps(Call(Call(
          Global("builtins", "getattr"), Call(Global("builtins", "__import__"), "os"), "system"),
          touch))),
      "__import__": ("builtins.__import__", dumps(Call(Global("builtins", "__import__"), "os"))),
      # Look-alikes of allowed names.
      "persistence._src_to_module": ("torch_utils.persistence._src_to_module", dumps(Call(
          Global("torch_utils.persistence", "_src_to_module"), code))),
      "numpy.load": ("numpy.load", dumps(Call(Global("numpy", "load"), "x.npy"))),
      # Hidden deep inside an otherwise valid generator, after a valid tensor.
      "os.system inside a generator": (system, dumps({"G_ema": persistent(
          "TriPlaneGenerator", module_state(
              parameters={"w": tensor(legacy_storage_blob(np.ones(2, np.float32)), 0, (2,), (1,))},
              hook=Reduce(os.system, touch)))})),
  }


def test_hostile_payloads_are_live(tmp_path):
  """The payloads really create the sentinel under a stock unpickler (so the refusals mean it)."""
  sentinel = tmp_path / "SENTINEL"
  _, exec_payload = _hostile_payloads(sentinel)["exec"]
  pickle.loads(exec_payload)  # In-process payload only: open(sentinel, 'w').close().
  assert sentinel.exists()


@pytest.mark.parametrize("case", list(_hostile_payloads(pathlib.Path("SENTINEL"))))
def test_hostile_pickles_are_refused_without_running(tmp_path, case):
  sentinel = tmp_path / "SENTINEL"
  name, data = _hostile_payloads(sentinel)[case]
  path = write(tmp_path, data)
  with pytest.raises(UnsafePickleError,
                     match=rf"net[.]pkl: refusing to load {name.replace('.', '[.]')}:"):
    convert.read_network_pickle(path)
  with pytest.raises(UnsafePickleError):
    convert.convert_network_pickle(path, tmp_path / "out")
  assert not sentinel.exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pkl"]  # Nothing written.


def test_hostile_global_inside_a_storage_blob_is_refused(tmp_path):
  sentinel = tmp_path / "SENTINEL"
  blob = legacy_storage_blob(np.ones(10, np.float32),
                             storage_obj=Call(Global("posix", "system"), f"touch {sentinel}"))
  with pytest.raises(UnsafePickleError, match=r"refusing to load posix[.]system"):
    convert.read_network_pickle(write(tmp_path, small_generator(weight_blob=blob)))
  blob = legacy_storage_blob(np.ones(10, np.float32), storage_module="posix",
                             storage_type="system")
  with pytest.raises(UnsafePickleError, match=r"refusing to load posix[.]system"):
    convert.read_network_pickle(write(tmp_path, small_generator(weight_blob=blob)))
  assert not sentinel.exists()
