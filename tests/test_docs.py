"""The README and docs/ hold together, and the repository stands on its own.

- Every relative link in README.md and docs/*.md reaches a file, and a `#anchor` into a Markdown
  file reaches one of its headings (GitHub's heading slugs).
- Every command and repository path the README and the docs name exists: `python launch/X.py`,
  `python -m pkg.module`, `.ci/...`, `configs/...`, and every backticked path under the
  project's top-level folders (brace lists expanded, globs matched).
- docs/paper_to_code.md names real functions (`file:function`, `file:Class.method`) and real
  tests (`file::test`).
- No tracked source, test, doc or script refers to the shared folder beside the clone or to
  a path in a temporary, home or workspace folder of one machine. System paths (/proc, /dev,
  /usr/bin/chromium, ...) are fine: they are the same on every machine.
"""
from __future__ import annotations

import itertools
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
TOP_LEVEL = ("sat3d_jax", "frldgt_jax", "launch", "configs", "tests", "docs", ".ci")

# Roots of folders that exist on one machine only. A path under a system root (/proc, /dev,
# /usr, /etc, /sys) is not flagged: ALLOWED_SYSTEM_PATHS lists the ones the project uses.
MACHINE_ROOTS = ("tmp", "var/tmp", "home", "root", "Users", "work", "workspace", "mnt", "scratch")
ALLOWED_SYSTEM_PATHS = ("/proc/", "/dev/shm", "/dev/null", "/usr/bin/chromium", "/etc/")
_MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:" + "|".join(MACHINE_ROOTS) + r")(?=/|\b)")
_BESIDE_THE_CLONE = re.compile(r"\.\./shared|/\s*['\"]shared['\"]")
SCANNED = re.compile(r"(\.(py|md|toml|cff)$|^\.ci/|^configs/)")


def _rel(path: pathlib.Path) -> str:
  return path.relative_to(REPO).as_posix()


def _without_code_blocks(text: str) -> str:
  """The text with fenced code blocks blanked (line numbers kept)."""
  return re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text,
                flags=re.S | re.M)


def heading_slugs(path: pathlib.Path) -> set[str]:
  """GitHub's anchors of a Markdown file's headings (duplicates numbered -1, -2, ...)."""
  slugs, seen = set(), {}
  for line in _without_code_blocks(path.read_text(encoding="utf-8")).splitlines():
    match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not match:
      continue
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link: its text
    slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    slugs.add(slug if n == 0 else f"{slug}-{n}")
  return slugs


def relative_links(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, target) of every Markdown link and image in `path` that is not a URL."""
  text = _without_code_blocks(path.read_text(encoding="utf-8"))
  out = []
  for number, line in enumerate(text.splitlines(), 1):
    line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
      if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        out.append((number, target))
  return out


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_reach_files_and_headings(page):
  broken = []
  for line, target in relative_links(page):
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / file_part).resolve() if file_part else page
    if not dest.exists():
      broken.append(f"{_rel(page)}:{line}: {target} (no such file)")
    elif anchor and dest.suffix == ".md" and anchor not in heading_slugs(dest):
      broken.append(f"{_rel(page)}:{line}: {target} (no heading #{anchor} in {_rel(dest)})")
  assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
  linked = {(REPO / t.partition("#")[0]).resolve() for _, t in relative_links(REPO / "README.md")}
  assert not [_rel(d) for d in DOCS if d.resolve() not in linked]


def test_the_readme_stays_short():
  assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 320


def _expand_braces(token: str) -> list[str]:
  """'a_{x,y}.py' -> ['a_x.py', 'a_y.py'] (every brace group, in order)."""
  parts = re.split(r"\{([^{}]*)\}", token)
  choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
  return ["".join(c) for c in itertools.product(*choices)]


def _path_part(token: str) -> str:
  """The path in a token: 'configs/x.py:tiny,zero' -> 'configs/x.py', 'a.py::test' -> 'a.py';
  commas end it only outside a brace list."""
  token = re.split(r"[:\[();]", token)[0]
  return token if "{" in token else token.split(",")[0]


def named_paths(text: str) -> set[str]:
  """Repository paths named in `text`: commands (`python launch/x.py`, `python -m a.b`,
  `.ci/...`, `configs/...`) and backticked paths under the top-level folders."""
  found = set(re.findall(r"python\s+((?:launch|\.ci|tests)/[\w/.-]+\.py)", text))
  found |= {m.replace(".", "/") + ".py"
            for m in re.findall(r"python\s+-m\s+((?:tests|launch|sat3d_jax|frldgt_jax)[\w.]+)",
                                text)}
  found |= set(re.findall(r"(?<![\w/.-])(\.ci/[\w/.-]*\w|configs/[\w{},]+\.py)", text))
  top = "|".join(re.escape(t) for t in TOP_LEVEL)
  for span in re.findall(r"`([^`\n]+)`", text):
    for token in span.split():
      if re.match(rf"(?:{top})/", token):
        found.add(_path_part(token))
  return {p for token in found for p in _expand_braces(token.rstrip("."))}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_commands_and_paths_exist(page):
  missing = []
  for name in sorted(named_paths(page.read_text(encoding="utf-8"))):
    if "<" in name or name.endswith("/X.py"):
      continue
    exists = any(REPO.glob(name)) if "*" in name else (REPO / name).exists()
    if not exists:
      missing.append(name)
  assert not missing, f"{_rel(page)} names what does not exist: {missing}"


def test_the_readme_names_every_entry_point():
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  unnamed = [_rel(p) for p in sorted((REPO / "launch").glob("*.py"))
             if p.name != "__init__.py" and f"launch/{p.name}" not in readme]
  assert not unnamed, f"entry points the README's command table leaves out: {unnamed}"


def test_paper_to_code_names_real_functions_and_tests():
  text = (REPO / "docs" / "paper_to_code.md").read_text(encoding="utf-8")
  tests = re.findall(r"`([\w/]+\.py)::(\w+)`", text)
  functions = re.findall(r"`([\w/]+\.py):([\w.]+)`", text)
  assert len(tests) > 50 and len(functions) > 50
  missing = []
  for file, name in tests:
    path = REPO / file
    if not path.is_file() or not re.search(rf"^def {name}\(", path.read_text(), re.M):
      missing.append(f"{file}::{name}")
  for file, name in functions:
    path = REPO / file
    source = path.read_text() if path.is_file() else ""
    if not all(re.search(rf"^\s*(?:def|class) {part}\b", source, re.M)
               for part in name.split(".")):
      missing.append(f"{file}:{name}")
  assert not missing, "docs/paper_to_code.md names what does not exist:\n" + "\n".join(missing)


def tracked_files() -> list[str]:
  """The repository's tracked files (git ls-files), or every file when git is not there."""
  try:
    done = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [f for f in done.stdout.decode().split("\0") if f]
  except (OSError, subprocess.CalledProcessError):
    return [_rel(p) for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts]


def machine_specific_references(text: str) -> list[tuple[int, str]]:
  """(line, text) of each reference to the folder beside the clone or to a folder of one machine."""
  hits = []
  for number, line in enumerate(text.splitlines(), 1):
    for match in itertools.chain(_MACHINE_PATH.finditer(line), _BESIDE_THE_CLONE.finditer(line)):
      if not line[match.start():].startswith(ALLOWED_SYSTEM_PATHS):
        hits.append((number, line.strip()))
        break
  return hits


# The examples are assembled, so that this file itself names no such path.
_BESIDE, _TMP, _WORK, _HOME = "../" + "shared", "/" + "tmp", "/" + "work", "/" + "home"


def test_the_scan_finds_what_it_should():
  assert machine_specific_references(f"G={_BESIDE}/fixtures/x.npz")
  assert machine_specific_references('ROOT = REPO.parent / "shared" / "data"')
  assert machine_specific_references(f"python run.py --eg3d {_TMP}/eg3d/eg3d")
  assert machine_specific_references(f"see {_WORK}/shared/design/eg3d.md")
  assert machine_specific_references(f"~ is {_HOME}/user")
  assert not machine_specific_references('open("/proc/self/status")')
  assert not machine_specific_references("#!/usr/bin/env bash; /usr/bin/chromium; /dev/shm")
  assert not machine_specific_references(f"W{_TMP}/x, workdirs/tmp_run, a{_HOME}/b, out{_WORK}/")


def test_no_reference_to_a_folder_beside_the_clone_or_of_one_machine():
  this = _rel(pathlib.Path(__file__))
  found = []
  for name in tracked_files():
    if name == this or not SCANNED.search(name) or not (REPO / name).is_file():
      continue
    text = (REPO / name).read_text(encoding="utf-8", errors="replace")
    found += [f"{name}:{line}: {content[:120]}" for line, content in
              machine_specific_references(text)]
  assert not found, ("the repository must stand on its own; these refer to the folder beside "
                     "the clone or to a folder of one machine:\n" + "\n".join(found))
