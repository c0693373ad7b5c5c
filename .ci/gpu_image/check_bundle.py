"""Checks a wheel bundle against an image: every requirement of every wheel in WHEELS_DIR (for
the image's Python and platform) is met by the image's packages (REQUIREMENTS, a pinned pip
list) or by the bundle itself, the bundle's version of a package winning (it comes first on
PYTHONPATH). Prints one line per unmet requirement and exits 1 if there is any.

  python .ci/gpu_image/check_bundle.py WHEELS_DIR REQUIREMENTS [--python 3.12]
"""
import argparse
import email.parser
import pathlib
import sys
import zipfile

try:  # packaging, or the copy inside pip (`fetch` runs pip, so it is there either way)
  from packaging.markers import default_environment
  from packaging.requirements import Requirement
  from packaging.utils import canonicalize_name, parse_wheel_filename
  from packaging.version import Version
except ImportError:
  from pip._vendor.packaging.markers import default_environment
  from pip._vendor.packaging.requirements import Requirement
  from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
  from pip._vendor.packaging.version import Version


def image_versions(requirements: pathlib.Path) -> dict:
  out = {}
  for line in requirements.read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
      name, _, version = line.partition("==")
      out[canonicalize_name(name)] = Version(version)
  return out


def wheel_requirements(wheel: pathlib.Path) -> list[Requirement]:
  with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    message = email.parser.Parser().parsestr(z.read(meta).decode())
  return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("wheels", type=pathlib.Path)
  parser.add_argument("requirements", type=pathlib.Path)
  parser.add_argument("--python", default="3.12")
  args = parser.parse_args()
  env = default_environment() | {"python_version": args.python,
                                 "python_full_version": f"{args.python}.0",
                                 "sys_platform": "linux", "platform_system": "Linux",
                                 "platform_machine": "x86_64", "extra": ""}
  available = image_versions(args.requirements)
  wheels = sorted(args.wheels.glob("*.whl"))
  if not wheels:
    print(f"error: no wheels in {args.wheels}", file=sys.stderr)
    return 1
  for wheel in wheels:
    name, version, _, _ = parse_wheel_filename(wheel.name)
    available[canonicalize_name(name)] = version
  unmet = []
  for wheel in wheels:
    for req in wheel_requirements(wheel):
      if req.marker is not None and not req.marker.evaluate(env):
        continue  # an extra, another platform or Python
      have = available.get(canonicalize_name(req.name))
      if have is None or not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{wheel.name}: needs {req} (image + bundle: {have or 'absent'})")
  for line in unmet:
    print(line)
  size = sum(w.stat().st_size for w in wheels)
  print(f"{len(wheels)} wheels, {size / 2 ** 20:.1f} MiB; "
        + (f"{len(unmet)} unmet requirement(s)" if unmet else "every requirement met"))
  return 1 if unmet else 0


if __name__ == "__main__":
  sys.exit(main())
