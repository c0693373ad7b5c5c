"""Attribute descriptor groups: the phrases the QMM turns into CLIP zero-shot classes.

A descriptor set maps attribute names (the keys users type on command lines) to K groups of
phrases; each group is one value of the attribute ("short hair", "long hair", ...). Shipped sets
live in sat3d_jax/descriptors/*.json, one per domain:

  {"hairstyle": {"names": ["short", "long", ...],            # optional short group names
                 "groups": [["a photo of a person with short hair", ...], ...],
                 "heldout": [["a portrait of someone with a short hairstyle", ...], ...]},
   ...}

"heldout" holds other phrasings of the same groups, in the same order, for evaluation: the judge
must not be the training signal (docs/sat3d.md, "Evaluation"). A user file may also give an
attribute as a plain list of groups, and `load_descriptors` accepts a dict
{attribute: [[phrase, ...], ...]}.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import pathlib
import re
from typing import Any, Mapping, Sequence

from sat3d_jax.errors import InputError, UnknownNameError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Attribute:
  """One attribute: its groups of phrases, optional held-out phrasings and short group names."""
  name: str
  groups: tuple[tuple[str, ...], ...]
  heldout: tuple[tuple[str, ...], ...] | None
  group_names: tuple[str, ...]

  def phrases(self, heldout: bool = False) -> tuple[tuple[str, ...], ...]:
    """The training groups, or the held-out phrasings of the same groups."""
    if not heldout:
      return self.groups
    if self.heldout is None:
      raise InputError(f"attribute {self.name!r} has no held-out phrasings")
    return self.heldout


@dataclasses.dataclass(frozen=True)
class Descriptors:
  """An ordered set of attributes (file order) and where it came from."""
  attributes: tuple[Attribute, ...]
  source: str

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(a.name for a in self.attributes)

  def __getitem__(self, name: str) -> Attribute:
    for a in self.attributes:
      if a.name == name:
        return a
    raise UnknownNameError(f"no attribute {name!r} in {self.source}; it has {list(self.names)}")

  def select(self, names: Sequence[str]) -> "Descriptors":
    """The subset `names`, in the given order; an unknown name is an error listing the known."""
    return Descriptors(tuple(self[n] for n in names), self.source)

  def phrase_groups(self, heldout: bool = False) -> dict[str, tuple[tuple[str, ...], ...]]:
    """{attribute: groups of phrases}, training or held-out phrasings."""
    return {a.name: a.phrases(heldout) for a in self.attributes}


def shipped_descriptor_sets() -> dict[str, pathlib.Path]:
  """{domain: path} of the descriptor files shipped with the package (ffhq, afhq_cats, ...)."""
  root = importlib.resources.files("sat3d_jax") / "descriptors"
  return {p.stem: pathlib.Path(str(p)) for p in sorted(root.iterdir(), key=lambda p: p.name)
          if p.name.endswith(".json")}


def _groups(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
  if not isinstance(value, (list, tuple)) or not value:
    raise InputError(f"{where}: expected a non-empty list of groups (lists of phrases)")
  groups = []
  for k, group in enumerate(value):
    if isinstance(group, str) or not isinstance(group, (list, tuple)) or not group:
      raise InputError(f"{where}, group {k}: expected a non-empty list of phrases, got {group!r}")
    for phrase in group:
      if not isinstance(phrase, str) or not phrase.strip():
        raise InputError(f"{where}, group {k}: phrases must be non-empty strings, got {phrase!r}")
    groups.append(tuple(p.strip() for p in group))
  if len(groups) < 2:
    raise InputError(f"{where}: needs at least 2 groups (a softmax over one group is constant)")
  return tuple(groups)


def _attribute(name: str, value: Any, source: str) -> Attribute:
  where = f"{source}: attribute {name!r}"
  if not isinstance(name, str) or not _NAME.match(name):
    raise InputError(f"{source}: attribute name {name!r} must be lowercase letters, digits and _ "
                     f"(it is typed on command lines)")
  if isinstance(value, Mapping):
    unknown = set(value) - {"groups", "heldout", "names"}
    if unknown:
      raise InputError(f"{where}: unknown keys {sorted(unknown)} (allowed: groups, heldout, names)")
    if "groups" not in value:
      raise InputError(f"{where}: missing 'groups'")
    groups = _groups(value["groups"], f"{where} groups")
    heldout = None
    if value.get("heldout") is not None:
      heldout = _groups(value["heldout"], f"{where} heldout")
      if len(heldout) != len(groups):
        raise InputError(f"{where}: 'heldout' has {len(heldout)} groups, 'groups' has "
                         f"{len(groups)}; they must match one to one, in order")
    names = value.get("names")
  else:
    groups, heldout, names = _groups(value, where), None, None
  if names is None:
    names = tuple(g[0] for g in groups)
  elif (not isinstance(names, (list, tuple)) or len(names) != len(groups)
        or not all(isinstance(n, str) and n for n in names)):
    raise InputError(f"{where}: 'names' must be {len(groups)} non-empty strings, got {names!r}")
  return Attribute(name=name, groups=groups, heldout=heldout, group_names=tuple(names))


def parse_descriptors(data: Mapping[str, Any], source: str = "<dict>") -> Descriptors:
  """Validates {attribute: {...} or [[phrase, ...], ...]} into `Descriptors` (errors name the
  source)."""
  if not isinstance(data, Mapping) or not data:
    raise InputError(f"{source}: expected a non-empty mapping {{attribute: groups}}")
  return Descriptors(tuple(_attribute(n, v, source) for n, v in data.items()), source)


def load_descriptors(source: str | os.PathLike | Mapping[str, Any] | Descriptors,
                     attributes: Sequence[str] | None = None) -> Descriptors:
  """Loads a descriptor set: a shipped domain name ('ffhq', 'afhq_cats', 'shapenet_cars'), a JSON
  file path, a dict, or an existing `Descriptors`; optionally keeps only `attributes` (in order)."""
  if isinstance(source, Descriptors):
    desc = source
  elif isinstance(source, Mapping):
    desc = parse_descriptors(source)
  else:
    path = pathlib.Path(source).expanduser()
    if not path.is_file():
      shipped = shipped_descriptor_sets()
      if str(source) not in shipped:
        raise FileNotFoundError(f"descriptor set {str(source)!r} is neither a file nor a shipped "
                                f"set ({sorted(shipped)})")
      path = shipped[str(source)]
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
      raise InputError(f"{path} is not valid JSON: {e}") from None
    desc = parse_descriptors(data, str(path))
  return desc.select(attributes) if attributes is not None else desc
