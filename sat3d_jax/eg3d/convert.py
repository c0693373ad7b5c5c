"""Official EG3D network pickles -> numpy state dict + JSON config, without torch or code execution.

The pickle is read by `pickle_reader` (an allow-listed unpickler that builds plain data only).
The state dict uses the official PyTorch state-dict names (e.g.
`backbone.synthesis.b8.conv0.affine.weight`), the names of the official reference fixtures
(docs/eg3d.md, "Reference fixtures"). A converted directory holds:

  params.npz   the state dict (one .npy per tensor, no pickled objects)
  config.json  constructor kwargs, neural_rendering_resolution, tensor counts and provenance
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import zipfile
from typing import Any

import numpy as np

from sat3d_jax.eg3d import pickle_reader
from sat3d_jax.eg3d.pickle_reader import ModuleRecord, PickleFormatError, TensorRecord

# Bump when the content or layout of a converted directory changes. Version 1 wrote the 0-d
# tensors (noise_strength) with shape (1,); load_generator reads them as scalars.
CONVERTER_VERSION = 2
PARAMS_FILE = "params.npz"
CONFIG_FILE = "config.json"

# Persistent classes store only their bare name and source text; the official code defines the
# generator in training/triplane.py (its training configs name it by this qualified name).
_OFFICIAL_MODULE_OF_CLASS = {"TriPlaneGenerator": "training.triplane"}
# torch attribute and submodule names; they also become the member names of params.npz.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")


def _file_sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _state_dict(module: ModuleRecord, source: str) -> tuple[dict[str, np.ndarray], int]:
  """torch's `Module.state_dict()` over records: parameters, persistent buffers, submodules.

  Returns the state dict and the number of parameter (not buffer) values.
  """
  state_dict: dict[str, np.ndarray] = {}
  num_parameter_values = 0
  ancestors: set[int] = set()

  def visit(record: Any, prefix: str) -> None:
    nonlocal num_parameter_values
    where = prefix.rstrip(".") or "<root>"
    if not isinstance(record, ModuleRecord) or record.state is None:
      raise PickleFormatError(f"{source}: module {where} is a {type(record).__name__}, "
                              "not a pickled torch module")
    if id(record) in ancestors:
      raise PickleFormatError(f"{source}: module {where} contains itself")
    state = record.state
    for field in ("_parameters", "_buffers", "_modules"):
      if not isinstance(state.get(field), dict):
        raise PickleFormatError(f"{source}: module {where} ({record.class_name}) has no {field}")
      for name in state[field]:
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
          raise PickleFormatError(f"{source}: module {where} has a {field} entry named {name!r}")
    non_persistent = state.get("_non_persistent_buffers_set", set())
    tensors = [(name, t, True) for name, t in state["_parameters"].items()]
    tensors += [(name, t, False) for name, t in state["_buffers"].items()
                if name not in non_persistent]
    for name, tensor, is_parameter in tensors:
      if tensor is None:  # torch skips unset parameters/buffers too.
        continue
      if not isinstance(tensor, TensorRecord):
        raise PickleFormatError(f"{source}: {prefix}{name} is a {type(tensor).__name__}, "
                                "not a tensor")
      state_dict[prefix + name] = tensor.array
      if is_parameter:
        num_parameter_values += tensor.array.size
    ancestors.add(id(record))
    for name, child in state["_modules"].items():
      if child is not None:
        visit(child, f"{prefix}{name}.")
    ancestors.discard(id(record))

  visit(module, "")
  return state_dict, num_parameter_values


def _to_json(value: Any, where: str) -> Any:
  """Plain JSON data from pickled values (dict subclasses -> dict, tuples -> lists)."""
  if isinstance(value, float) and not np.isfinite(value):
    raise PickleFormatError(f"{where} is {value}, which JSON cannot hold")
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, dict):
    out = {}
    for key, item in value.items():
      if not isinstance(key, str):
        raise PickleFormatError(f"{where}: key {key!r} is not a string")
      out[key] = _to_json(item, f"{where}.{key}")
    return out
  if isinstance(value, (list, tuple)):
    return [_to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
  raise PickleFormatError(f"{where} is a {type(value).__name__}, not plain data")


def _module_summary(module: ModuleRecord) -> dict[str, str]:
  """Top-level submodules and their classes, e.g. {'superresolution': 'SuperresolutionHybrid2X'}."""
  return {name: child.class_name for name, child in module.state["_modules"].items()
          if isinstance(child, ModuleRecord)}


def read_network_pickle(path: str | os.PathLike,
                        key: str = "G_ema") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Reads one network of an official EG3D pickle without torch and without running its code.

  Args:
    path: the network pickle (e.g. `ffhq512-128.pkl`).
    key: which network of the pickled dict to read ('G_ema', 'G' or 'D').

  Returns:
    (state_dict, config): the state dict under the official names (numpy arrays with the stored
    dtypes, float32 for the released models), and a JSON-serialisable config with
    'init_kwargs' (constructor kwargs), 'init_args', 'neural_rendering_resolution' (the pickle
    attribute; None if absent), 'class_name', 'modules' (top-level submodule classes),
    'num_tensors', 'num_parameters' (learnable values) and 'module_src_sha256'.

  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list (nothing was run).
    PickleFormatError: the file is not laid out as an EG3D network pickle, or `key` is missing.
  """
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    try:
      data = pickle_reader.load_network_pickle(f)
    except (pickle_reader.UnsafePickleError, PickleFormatError) as e:
      raise type(e)(f"{path}: {e}") from e
  if not isinstance(data, dict):
    raise PickleFormatError(f"{path}: holds a {type(data).__name__}, not a dict of networks")
  if key not in data:
    raise PickleFormatError(f"{path}: no {key!r} network; keys found: {sorted(map(str, data))}")
  module = data[key]
  if not isinstance(module, ModuleRecord) or module.state is None:
    raise PickleFormatError(f"{path}: {key!r} is a {type(module).__name__}, not a network")

  state_dict, num_parameters = _state_dict(module, f"{path}[{key!r}]")
  state = module.state
  resolution = state.get("neural_rendering_resolution")
  if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)):
    raise PickleFormatError(f"{path}: neural_rendering_resolution is {resolution!r}")
  class_name = module.class_name
  if module.module_src is not None and class_name in _OFFICIAL_MODULE_OF_CLASS:
    class_name = f"{_OFFICIAL_MODULE_OF_CLASS[class_name]}.{class_name}"
  config = {
      "class_name": class_name,
      "init_args": _to_json(state.get("_init_args", ()), "_init_args"),
      "init_kwargs": _to_json(state.get("_init_kwargs", {}), "_init_kwargs"),
      "neural_rendering_resolution": resolution,
      "modules": _module_summary(module),
      "num_tensors": len(state_dict),
      "num_parameters": int(num_parameters),
      "module_src_sha256": (hashlib.sha256(module.module_src.encode("utf-8")).hexdigest()
                            if module.module_src is not None else None),
  }
  return state_dict, config


def _write_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  """np.savez's layout (one .npy per entry), written without pickling and fsynced."""
  with open(path, "wb") as raw:
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
      for name, array in arrays.items():
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
          # order="C", not ascontiguousarray, which makes a 0-d tensor 1-d.
          np.lib.format.write_array(f, np.asarray(array, order="C"), allow_pickle=False)
    raw.flush()
    os.fsync(raw.fileno())


def _write_json(path: pathlib.Path, value: dict) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, allow_nan=False)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())


def _is_conversion_output(directory: pathlib.Path) -> bool:
  return {p.name for p in directory.iterdir()} <= {PARAMS_FILE, CONFIG_FILE}


def convert_network_pickle(pkl_path: str | os.PathLike, out_dir: str | os.PathLike,
                           key: str = "G_ema", overwrite: bool = False) -> dict[str, Any]:
  """Converts one network of an EG3D pickle into `out_dir`/{params.npz, config.json}.

  The files are written into a temporary sibling directory that is renamed to `out_dir` only
  when complete, so `out_dir` is never left half-written.

  Args:
    pkl_path: the network pickle.
    out_dir: the directory to create (or an empty one to fill).
    key: which network to convert.
    overwrite: replace an existing earlier conversion in `out_dir` (a directory holding
      anything else is never replaced).

  Returns:
    The config written to config.json: `read_network_pickle`'s config plus 'source'
    (file name, sha256, key) and 'converter' (module, version).

  Raises:
    FileExistsError: `out_dir` exists and `overwrite` is False, or it holds other files.
    UnsafePickleError, PickleFormatError: as `read_network_pickle`.
  """
  pkl_path = pathlib.Path(pkl_path)
  out_dir = pathlib.Path(out_dir).absolute()
  replace_existing = out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir()))
  if replace_existing:
    if not out_dir.is_dir() or not _is_conversion_output(out_dir):
      raise FileExistsError(f"{out_dir} exists and is not an earlier conversion; not touching it")
    if not overwrite:
      raise FileExistsError(f"{out_dir} holds an earlier conversion; pass overwrite=True "
                            "(--overwrite) to replace it")

  state_dict, config = read_network_pickle(pkl_path, key)
  config = dict(config)
  config["source"] = {"file": pkl_path.name, "sha256": _file_sha256(pkl_path), "key": key}
  config["converter"] = {"module": __name__, "version": CONVERTER_VERSION}

  out_dir.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial",
                                          dir=out_dir.parent))
  try:
    _write_npz(staging / PARAMS_FILE, state_dict)
    _write_json(staging / CONFIG_FILE, config)
    os.chmod(staging, 0o755)  # mkdtemp creates it private.
    if replace_existing:
      retired = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                              dir=out_dir.parent))
      os.replace(out_dir, retired)  # `retired` is empty: rename() replaces it.
      os.replace(staging, out_dir)
      shutil.rmtree(retired)
    else:
      os.replace(staging, out_dir)  # Also replaces an empty directory.
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return config
