"""Times the official EG3D code (NVlabs/eg3d) on a fixture generator: synthesis forward, and
forward+backward to ws of a fixed projection of the image. Run by run.py in a torch venv.

Prints one JSON line per program: {"side": "official", "program", "seconds": [...]}.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--eg3d", required=True, help="the eg3d/ folder of NVlabs/eg3d")
  parser.add_argument("--fixture", required=True, help="fixture path without extension")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  sys.path.insert(0, args.eg3d)
  torch.set_num_threads(args.threads)
  from training.triplane import TriPlaneGenerator  # pylint: disable=import-outside-toplevel
  from training.volumetric_rendering import renderer  # pylint: disable=import-outside-toplevel

  cfg = json.load(open(args.fixture + ".json"))
  kwargs = dict(cfg["init_kwargs"])
  kwargs.pop("class_name")
  gen = TriPlaneGenerator(**kwargs)
  npz = np.load(args.fixture + ".npz")
  state = {k: torch.from_numpy(npz[k]) for k in npz.files if not k.startswith("io/")}
  gen.load_state_dict(state, strict=True)
  gen.neural_rendering_resolution = cfg["neural_rendering_resolution"]

  # The fixtures' determinism protocol: no depth jitter, importance u = linspace (det=True).
  def stratified(self, ray_origins, ray_start, ray_end, depth_resolution,
                 disparity_space_sampling=False):
    n, m, _ = ray_origins.shape
    depths = torch.linspace(ray_start, ray_end, depth_resolution, device=ray_origins.device)
    return depths.reshape(1, 1, depth_resolution, 1).repeat(n, m, 1, 1)
  renderer.ImportanceRenderer.sample_stratified = stratified
  sample_pdf = renderer.ImportanceRenderer.sample_pdf
  renderer.ImportanceRenderer.sample_pdf = (
      lambda self, bins, weights, n, det=False, eps=1e-5: sample_pdf(self, bins, weights, n,
                                                                     det=True, eps=eps))

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
