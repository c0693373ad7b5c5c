"""Times the official EG3D code (NVlabs/eg3d) on a fixture generator: synthesis forward, and
forward+backward to ws of a fixed projection of the image. Run by run.py in a torch venv.

Prints one JSON line per program: {"side": "official", "program", "seconds": [...]}.
"""
import argparse
import json
import math
import pathlib
import sys
import time

import torch

# The official code's import and determinism patch, shared with the fixtures' maker.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures"
                       / "eg3d"))
import official_eg3d  # noqa: E402  pylint: disable=wrong-import-position


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--eg3d", required=True, help="the eg3d/ folder of NVlabs/eg3d")
  parser.add_argument("--fixture", required=True, help="fixture path without extension")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  # The fixtures' determinism protocol: no depth jitter, importance u = linspace (det=True).
  official_eg3d.import_official(args.eg3d)
  gen, npz = official_eg3d.load_fixture(args.fixture)

  ws, c = torch.from_numpy(npz["io/ws"]), torch.from_numpy(npz["io/c"])
  with torch.no_grad():
    image = gen.synthesis(ws, c, noise_mode="const")["image"]
  error = float((image - torch.from_numpy(npz["io/image"])).abs().max())
  cotangent = torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
  cotangent /= math.sqrt(image[0].numel())

  def forward():
    with torch.no_grad():
      gen.synthesis(ws, c, noise_mode="const")

  def forward_backward():
    w = ws.clone().requires_grad_(True)
    (gen.synthesis(w, c, noise_mode="const")["image"] * cotangent).sum().backward()

  # fused_modconv_default 'inference_only': eval mode runs the grouped (fused) modulated
  # convolution, train mode the non-fused one; both are timed.
  for mode in ("eval", "train"):
    gen.train(mode == "train")
    for program, fn in (("forward", forward), ("forward+backward", forward_backward)):
      fn()
      seconds = []
      for _ in range(args.repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
      print(json.dumps({"side": "official", "program": f"{program} ({mode})",
                        "seconds": seconds, "max_image_error": error}), flush=True)


if __name__ == "__main__":
  main()
