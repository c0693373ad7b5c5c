"""Side-by-side timing of the official EG3D code and this port on one machine (a one-off
measurement for the README, outside [dev] and CI: torch is not a dependency of the project).

  # the official code in build/eg3d and a torch venv in build/torchenv, set up as
  # tests/fixtures/eg3d/README.md says
  python .ci/eg3d_side_by_side/run.py --torch_python build/torchenv/bin/python \
      --eg3d build/eg3d/eg3d --rounds 2

Each round runs the official side, then the port, back to back in fresh processes, on the same
fixture weights and inputs (tests/fixtures/eg3d/eg3d_ffhq512_small by default: 512 px, batch 1,
deterministic rendering); the table gives each program's best time over all rounds and the
port's speed-up. Timings on a shared machine only compare within one run.
"""
import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
FIXTURE = str(HERE.parent.parent / "tests" / "fixtures" / "eg3d" / "eg3d_ffhq512_small")


def _run(cmd, env=None) -> list:
  out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
  return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--torch_python", required=True, help="Python of a venv with torch")
  parser.add_argument("--eg3d", required=True, help="the eg3d/ folder of NVlabs/eg3d")
  parser.add_argument("--fixture", default=FIXTURE, help="fixture path without extension")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
  times = collections.defaultdict(list)
  for r in range(args.rounds):
    print(f"round {r + 1}/{args.rounds}, load average {os.getloadavg()}", flush=True)
    rows = _run([args.torch_python, str(HERE / "official.py"), "--eg3d", args.eg3d,
                 "--fixture", args.fixture, "--repeats", str(args.repeats)])
    rows += _run([sys.executable, str(HERE / "port.py"), "--fixture", args.fixture,
                  "--repeats", str(args.repeats)], env=env)
    for row in rows:
      times[(row["side"], row["program"])] += row["seconds"]
      print(f"  {row['side']:8s} {row['program']:26s} best {min(row['seconds']):.3f} s "
            f"(image error vs fixture {row['max_image_error']:.1e})", flush=True)
  with np.load(args.fixture + ".npz") as npz:
    batch = len(npz["io/ws"])
  print("\n| program | official, best s (images/s) | port, best s (images/s) | port speed-up |")
  print("|---|---|---|---|")
  for program in ("forward", "forward+backward"):
    port = min(times[("port", program)])
    official = {mode: min(times[("official", f"{program} ({mode})")])
                for mode in ("eval", "train")}
    best_mode = min(official, key=official.get)
    print(f"| {program} | {official[best_mode]:.3f} ({batch / official[best_mode]:.3f}; "
          f"{best_mode} mode) | {port:.3f} ({batch / port:.3f}) | "
          f"{official[best_mode] / port:.2f}x |")


if __name__ == "__main__":
  main()
