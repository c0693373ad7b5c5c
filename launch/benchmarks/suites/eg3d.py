"""EG3D generator throughput: synthesis(ws, c) images/s.

Cases: batch x compute dtype (float32, bfloat16) x modulated convolution ('fused' = one grouped
convolution with a group per sample, the official inference path; 'nonfused' = styles applied
to the activations around one shared convolution). docs/eg3d.md notes the two
differ a lot in speed by backend, which is why both are kept and measured.

What is timed: `apply_synthesis(params, arch, ws, c)` (backbone, tri-plane rendering with
importance sampling, super-resolution; deterministic renderer, noise 'const'), jitted with the
params as an argument (as a frozen generator is used in training), all three outputs returned
(image, image_raw, image_depth) so nothing is dead code. The mapping network is not included.

Forward+backward ('synthesis forward+backward to ws', the SAT3D and inversion hot path): the
value and gradient with respect to ws of a fixed random projection of the image, for the
non-fused modulated convolution (what training differentiates through); with --quick in
float32 only (on a CPU bfloat16 is emulated, and the quick run has a time budget).

Quick: the fixtures' 'tiny128' architecture (128 px, Hybrid2X, neural resolution 32, 12 + 12
samples) at batch 1 and 8 (a 2-core CPU compiles and runs the 512 px fixture architecture
'ffhq512_small' at ~200 GFLOP per image far too slowly for the 5-minute budget). Full: the
released FFHQ-512 architecture ('ffhq512': 512 px, neural resolution 128, 48 + 48 samples) at
batch 1 and 8. The twelve programs (batch x dtype x modconv, plus forward+backward) are
compiled side by side in the run's compile pool, then timed one after the other.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from launch.benchmarks import harness
from launch.benchmarks.suites import Finish, SuiteOptions

QUICK_PRESET, FULL_PRESET = "tiny128", "ffhq512"
QUICK_BATCHES = FULL_BATCHES = (1, 8)
DTYPES = ("float32", "bfloat16")
MODCONVS = ("fused", "nonfused")
BACKWARD_MODCONVS = ("nonfused",)  # the modulated convolution SAT3D trains through
FORWARD_BACKWARD = "synthesis forward+backward"
_MODCONV_LABEL = {"fused": "grouped (fused) modconv", "nonfused": "non-fused modconv"}


def _inputs(eg3d, params, config, arch, batch: int, seed: int = 0):
  """ws of random z under the frontal conditioning camera (psi 0.7, cutoff 14, as the
  generation scripts) and rendering cameras spread over small yaw/pitch offsets."""
  rendering = config["init_kwargs"]["rendering_kwargs"]
  pivot = rendering.get("avg_camera_pivot", (0.0, 0.0, 0.0))
  radius = rendering.get("avg_camera_radius", 2.7)
  cond = eg3d.orbit_labels(jnp.zeros(batch), jnp.zeros(batch), pivot, radius)
  z = jax.random.normal(jax.random.key(seed), (batch, arch.z_dim), jnp.float32)
  ws = jax.jit(eg3d.apply_mapping, static_argnames=("arch", "truncation_cutoff"))(
      params, arch, z, cond, 0.7, 14)
  yaws = jnp.linspace(-0.4, 0.4, batch)
  cams = eg3d.orbit_labels(yaws, 0.1 * jnp.ones(batch), pivot, radius)
  return ws, cams


def _cotangent(shape) -> jax.Array:
  return jax.random.normal(jax.random.key(1), shape, jnp.float32) / math.prod(shape[1:]) ** 0.5


def start(options: SuiteOptions, preset: Optional[str] = None,
          batches: Optional[Sequence[int]] = None, dtypes: Sequence[str] = DTYPES,
          modconvs: Sequence[str] = MODCONVS,
          backward_modconvs: Sequence[str] = BACKWARD_MODCONVS) -> Finish:
  """Builds every (batch, dtype, modconv) case, and the forward+backward case of each
  (batch, dtype, modconv in backward_modconvs), and hands their compilations to the pool;
  finish() times them and returns the suite dict."""
  try:
    from sat3d_jax import eg3d  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = f"sat3d_jax.eg3d cannot be imported ({e})"  # `e` is unbound after the block
    return lambda: harness.missing_suite(reason)
  preset = preset or (QUICK_PRESET if options.quick else FULL_PRESET)
  batches = tuple(batches or (QUICK_BATCHES if options.quick else FULL_BATCHES))
  log, pool = options.log, options.compile_pool

  start_time = time.perf_counter()
  config = eg3d.get_preset(preset)
  arch = eg3d.parse_config(config)
  params = jax.jit(functools.partial(eg3d.init_params, config))(jax.random.key(0))
  harness.block(params)
  setup_s = time.perf_counter() - start_time
  n_params = sum(math.prod(p.shape) for p in params.values())
  log(f"  [eg3d] preset {preset}: {n_params / 1e6:.2f} M params, random init "
      f"{setup_s:.1f} s")

  prepared = []  # a harness.Prepared, or the error case of a case that failed to build
  for batch in batches:
    ws, cams = _inputs(eg3d, params, config, arch, batch)
    for dtype in dtypes:
      for modconv in modconvs:
        opts = eg3d.Options(modconv=modconv, dtype=jnp.dtype(dtype))

        def synthesis(params, ws, c, opts=opts):
          return eg3d.apply_synthesis(params, arch, ws, c, opts)

        def forward_backward(params, ws, c, cotangent, opts=opts):
          def loss(ws):  # a fixed random projection of the image, so no output is dead code
            image = eg3d.apply_synthesis(params, arch, ws, c, opts)["image"]
            return jnp.sum(image * cotangent)
          return jax.value_and_grad(loss)(ws)

        fns = [(f"synthesis, {_MODCONV_LABEL[modconv]}", synthesis, [params, ws, cams])]
        if modconv in backward_modconvs and (dtype == "float32" or not options.quick):
          # The projection is an input: drawn inside the program, its random numbers would be
          # timed too (~2% of the step at 512 px).
          image_shape = (batch, arch.img_resolution, arch.img_resolution, 3)
          fns.append((f"{FORWARD_BACKWARD} to ws, {_MODCONV_LABEL[modconv]}", forward_backward,
                      [params, ws, cams, _cotangent(image_shape)]))
        for case, fn, args in fns:
          try:
            prepared.append(harness.prepare(
                "eg3d", case, fn, args, items_per_call=batch,
                item="images", batch=batch, dtype=dtype, pool=pool, log=log))
          except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
            log(f"  [eg3d] {case} batch {batch} {dtype}: {type(e).__name__}: {e}")
            prepared.append(harness.error_case("eg3d", case, e, batch=batch, dtype=dtype))

  def finish() -> dict:
    cases = []
    for p in prepared:
      if isinstance(p, dict):
        cases.append(p)
        continue
      try:
        cases.append(harness.run(p, warmup=options.warmup, runs=options.runs,
                                 peaks=options.peaks, pool=pool, log=log))
      except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
        log(f"  [eg3d] {p.label}: {type(e).__name__}: {e}")
        cases.append(harness.error_case("eg3d", p.case, e, batch=p.batch, dtype=p.dtype))
      p.args = []  # each program's inputs are freed once it is measured
    notes = [f"preset '{preset}' ({arch.img_resolution} px, neural resolution "
             f"{arch.neural_rendering_resolution}, {arch.render.depth_resolution} + "
             f"{arch.render.depth_resolution_importance} samples per ray, "
             f"{n_params / 1e6:.2f} M params, random weights), batches {list(batches)}"]
    if options.quick and preset == QUICK_PRESET:
      notes.append("quick: the 'tiny128' fixture architecture (the 512 px architectures do "
                   "not fit the quick budget on a 2-core CPU)")
    return {"status": "ok", "cases": cases, "notes": notes,
            "setup": {"preset": preset, "params": n_params, "init_s": setup_s}}
  return finish


def run(options: SuiteOptions, preset: Optional[str] = None,
        batches: Optional[Sequence[int]] = None, dtypes: Sequence[str] = DTYPES,
        modconvs: Sequence[str] = MODCONVS,
        backward_modconvs: Sequence[str] = BACKWARD_MODCONVS) -> dict:
  """Measures every case of `start`; the suite dict."""
  return start(options, preset, batches, dtypes, modconvs, backward_modconvs)()
