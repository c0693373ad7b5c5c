"""Times this project's EG3D port on a fixture generator, as official.py times the official code
(same weights, inputs and projection method). Run by run.py with the project's Python.

Prints one JSON line per program: {"side": "port", "program", "seconds": [...]}.
"""
import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax import eg3d


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--fixture", required=True, help="fixture path without extension")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  gen = eg3d.load_generator(args.fixture + ".npz")
  params, arch = gen.params, gen.arch
  npz = np.load(args.fixture + ".npz")
  ws, c = jnp.asarray(npz["io/ws"]), jnp.asarray(npz["io/c"])
  options = eg3d.Options(modconv="nonfused")

  forward = jax.jit(lambda p, w, c: eg3d.apply_synthesis(p, arch, w, c, options))
  image = forward(params, ws, c)["image"]
  error = float(jnp.max(jnp.abs(image.transpose(0, 3, 1, 2) - npz["io/image"])))
  cotangent = jax.random.normal(jax.random.key(1), image.shape) / math.sqrt(image[0].size)

  @jax.jit
  def forward_backward(p, w, c, cotangent):
    return jax.value_and_grad(
        lambda w: jnp.sum(eg3d.apply_synthesis(p, arch, w, c, options)["image"] * cotangent))(w)

  for program, fn in (("forward", lambda: forward(params, ws, c)),
                      ("forward+backward", lambda: forward_backward(params, ws, c, cotangent))):
    jax.block_until_ready(fn())
    seconds = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn())
      seconds.append(time.perf_counter() - start)
    print(json.dumps({"side": "port", "program": program, "seconds": seconds,
                      "max_image_error": error}), flush=True)


if __name__ == "__main__":
  main()
