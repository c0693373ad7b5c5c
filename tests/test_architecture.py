"""The shape of the code, read from the source with `ast` (nothing is imported or run).

- Dependencies point one way: `launch` -> `sat3d_jax`, `frldgt_jax`; the two libraries import
  neither `launch` nor each other; the driver `launch/trainer` imports no library.
- No entry point (`launch/*.py`) imports another, nothing reaches into the driver's private
  names, there is one flag system (no argparse) and no `sys.path` editing in `launch/`.
- Each config file in `configs/` shows its experiment: the hyperparameters are literal values
  assigned in the file, or in the sibling config it starts from.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARIES = ("sat3d_jax", "frldgt_jax")
ENTRY_POINTS = sorted(p.stem for p in (ROOT / "launch").glob("*.py") if p.stem != "__init__")


def _modules(package: str):
  return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, module) of every import in the file, at any depth (lazy imports count)."""
  tree = ast.parse(path.read_text(), str(path))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      out.append((node.lineno, node.module))
      out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
  return out


def _top(module: str) -> str:
  return module.split(".")[0]


def _violations(paths, forbidden) -> list[str]:
  found = []
  for path in paths:
    for line, module in _imports(path):
      if forbidden(module):
        found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
  return found


@pytest.mark.parametrize("library", LIBRARIES)
def test_libraries_import_neither_the_application_nor_each_other(library):
  others = {"launch", *LIBRARIES} - {library}
  assert _violations(_modules(library), lambda m: _top(m) in others) == []


def test_the_driver_imports_no_library_and_no_binding():
  paths = _modules("launch/trainer")
  assert paths
  bad = _violations(paths, lambda m: _top(m) in LIBRARIES or m.startswith(
      ("launch.tasks", "launch.common", "launch.benchmarks")))
  assert bad == []


def _project_python_files() -> list[pathlib.Path]:
  """The project's .py files: tracked or new, not what git ignores (virtual environments, the
  GPU bundle, an official EG3D checkout under build/); every one below ROOT without git."""
  try:
    done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                           "--", "*.py"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / f for f in done.stdout.decode().split("\0") if f and (ROOT / f).is_file()]
  except (OSError, subprocess.CalledProcessError):
    return [p for p in ROOT.glob("**/*.py") if not {".venv", "__pycache__"} & set(p.parts)]


def test_no_entry_point_imports_another():
  entry_modules = {f"launch.{name}" for name in ENTRY_POINTS}
  assert "launch.train" in entry_modules and "launch.sweep" in entry_modules
  paths = [p for p in _project_python_files() if "tests" not in p.relative_to(ROOT).parts]
  bad = _violations(paths, lambda m: any(m == e or m.startswith(e + ".")
                                         for e in entry_modules))
  assert bad == []


def test_nothing_uses_a_private_name_of_the_driver():
  bad = []
  for path in [p for p in ROOT.glob("launch/**/*.py") if "trainer" not in p.parts]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("launch.trainer"):
        bad += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                if a.name.startswith("_")]
      if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
          not node.attr.startswith("__") and isinstance(node.value, ast.Name) and \
          node.value.id in {"loop", "trainer", "programs", "mesh_lib", "ckpt_lib", "logs_lib"}:
        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
  assert bad == []


def test_one_flag_system_and_no_sys_path_edits():
  bad = []
  for path in _modules("launch"):
    for line, module in _imports(path):
      if _top(module) in ("argparse", "optparse"):
        bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.Attribute) and node.attr == "path" and \
          isinstance(node.value, ast.Name) and node.value.id == "sys":
        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses sys.path")
  assert bad == []


def test_every_entry_point_runs_through_the_shared_start():
  """`from launch.common import cli` first (quiet start-up), `cli.run(main)` at the bottom."""
  for name in ENTRY_POINTS:
    tree = ast.parse((ROOT / "launch" / f"{name}.py").read_text())
    project_imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module and
                       _top(n.module) in ("launch", *LIBRARIES)]
    assert project_imports, name
    first = project_imports[0]
    assert first.module == "launch.common" and first.names[0].name == "cli", name
    main_block = [n for n in tree.body if isinstance(n, ast.If)]
    assert main_block and "cli.run(" in ast.unparse(main_block[-1]), name


# --------------------------------------------------------------------------- config files

# Hyperparameters each experiment must show as literal values (dotted config paths).
EXPERIMENT_FIELDS = {
    "encoder": (  # SAT3D's inversion encoder (docs/encoder.md)
        "optimizer.name", "optimizer.learning_rate", "optimizer.warmup_steps",
        "optimizer.final_learning_rate_fraction", "global_batch_size", "total_steps",
        "loss.wplus", "loss.camera", "loss.l2", "loss.l1", "loss.ms_ssim", "loss.clip",
        "loss.truncation_psi", "generator", "encoder.input_size", "encoder.widths",
        "encoder.blocks", "encoder.hidden"),
    "sat3d": (
        # optimiser, learning rate and schedule
        "optimizer.name", "optimizer.learning_rate", "optimizer.warmup_steps",
        "optimizer.final_learning_rate_fraction",
        # batch size and steps
        "global_batch_size", "total_steps",
        # loss weights
        "objective.target_weight", "objective.preserve_weight", "objective.sparsity_weight",
        "objective.entropy_weight", "objective.identity_weight", "objective.temperature",
        # model sizes: the generator (its architecture), the views per example, the edit
        "generator", "views.count", "truncation_psi", "include_torgb",
    ),
    "frldgt": (
        "optimizer.name", "optimizer.learning_rate", "optimizer.warmup_steps",
        "optimizer.final_learning_rate_fraction", "optimizer.weight_decay",
        "optimizer.dgm_learning_rate",
        "batch_size", "pair_batch_size", "total_steps", "dgm_pretrain_steps",
        "model.dgm_weight", "model.dgm.smooth_weight",
        "model.patch_size", "model.token_dim", "model.num_heads", "model.mlp_ratio",
        "model.local_depth", "model.global_depth", "model.full_depth", "model.dgm.widths",
        "data.resolution", "data.frames",
    ),
    "spotting": (
        "optimizer.learning_rate", "optimizer.warmup_steps", "optimizer.weight_decay",
        "batch_size", "window", "total_steps", "features.offsets", "model.width",
        "model.kernel", "model.dilations", "data.image_size", "data.fps", "decode.threshold",
    ),
}
CONFIG_FILES = sorted((ROOT / "configs").glob("*.py"))


def _dotted(node) -> str | None:
  """'c.optimizer.learning_rate' -> 'optimizer.learning_rate' (the config variable dropped)."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and parts:
    return ".".join(reversed(parts))
  return None


def _is_literal(node) -> bool:
  try:
    ast.literal_eval(node)
    return True
  except ValueError:
    return False


def _literal_fields(tree) -> dict[str, bool]:
  """{dotted field: assigned a literal?} for `c.x.y = value` and `c.x = ConfigDict(dict(k=v))`."""
  fields: dict[str, bool] = {}
  for node in ast.walk(tree):
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
      continue
    name = _dotted(node.targets[0])
    if name is None:
      continue
    value = node.value
    if isinstance(value, ast.Call) and ast.unparse(value.func).endswith("ConfigDict"):
      inner = value.args[0] if value.args else None
      if isinstance(inner, ast.Call) and ast.unparse(inner.func) == "dict":
        for kw in inner.keywords:
          fields[f"{name}.{kw.arg}"] = fields.get(f"{name}.{kw.arg}", True) and \
              _is_literal(kw.value)
      continue
    fields[name] = fields.get(name, True) and _is_literal(value)
  return fields


def _parent_config(tree) -> str | None:
  for node in ast.walk(tree):
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("from_file") and \
        node.args and isinstance(node.args[0], ast.Constant):
      return node.args[0].value
  return None


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_each_config_file_shows_its_hyperparameters_as_literals(path):
  family = path.stem.split("_")[0]
  assert family in EXPERIMENT_FIELDS, f"{path.name}: which experiment family is it?"
  tree = ast.parse(path.read_text())
  fields = _literal_fields(tree)
  parent = _parent_config(tree)
  if parent is not None:  # a variant of a sibling experiment: only literal overrides
    assert (path.parent / parent).is_file(), f"{path.name} starts from missing {parent}"
    assert all(fields.values()), {k: v for k, v in fields.items() if not v}
    fields = {**_literal_fields(ast.parse((path.parent / parent).read_text())), **fields}
  missing = [f for f in EXPERIMENT_FIELDS[family] if f not in fields]
  not_literal = [f for f in EXPERIMENT_FIELDS[family] if f in fields and not fields[f]]
  assert missing == [] and not_literal == [], (path.name, missing, not_literal)


def test_config_files_contain_no_library_calls_for_their_values():
  """Only the driver's plumbing (base_config, from_file) and ml_collections are imported."""
  for path in CONFIG_FILES:
    modules = {m for _, m in _imports(path)}
    assert modules <= {"ml_collections", "launch.trainer", "launch.trainer.base_config",
                       "launch.trainer.from_file"}, (path.name, modules)


def test_every_flag_has_a_one_line_help():
  """Each absl flag an entry point (or its shared modules) defines says what it is for."""
  bad = []
  for path in _modules("launch"):
    for node in ast.walk(ast.parse(path.read_text())):
      if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and
              node.func.attr.startswith("DEFINE_")):
        continue
      # DEFINE_x(name, default, help); DEFINE_enum(name, default, enum_values, help)
      position = 3 if node.func.attr.endswith("enum") else 2
      help_node = next((kw.value for kw in node.keywords if kw.arg == "help"), None)
      if help_node is None and len(node.args) > position:
        help_node = node.args[position]
      if isinstance(help_node, ast.Name):  # a parameter of a define_flags() helper
        continue
      text = ast.unparse(help_node) if help_node is not None else ""
      if not isinstance(help_node, (ast.Constant, ast.JoinedStr, ast.BinOp)) or len(text) < 8:
        bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)[:60]}")
  assert bad == []
