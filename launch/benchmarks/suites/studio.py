"""SAT3D Studio's speed: views per second for a camera move, a new edit and the full generator.

Cases per preset x compute dtype (float32, bfloat16), one view (batch 1) per call, the
interactive case:
  camera move     the renderer and super-resolution from cached tri-planes
                  (rendering.render: what the studio runs when yaw or pitch moves)
  new edit        the edit s_src + (sum_a delta_a P[a]) (s_ref - s_src), the tri-planes of the
                  result and its render (what a new strength or reference costs)
  full generator  rendering.synthesize: the backbone again for every view (what a viewer
                  without the planes cache runs per camera move)
Each preset and dtype gets the ratio camera move / full generator in the notes: how much the
cache buys. Quick: the 'micro' preset of the tiny main job. Full: 'micro' and the released
FFHQ-512 architecture ('ffhq512', random weights). The goal on one H100-class GPU is >= 30
views/s for camera moves at 512 px (the official visualizer's plain-generation rate).
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

QUICK_PRESETS, FULL_PRESETS = ("micro",), ("micro", "ffhq512")
DTYPES = ("float32", "bfloat16")
CAMERA_MOVE, NEW_EDIT, FULL = "camera move (cached tri-planes)", "new edit", "full generator"
ATTRIBUTES = 12  # the FFHQ descriptor set's attributes (sat3d_jax/descriptors/ffhq.json)


def _programs(rendering, transfer, arch, options):
  """(camera move, new edit, full generator) as functions of arrays only."""

  def camera_move(params, planes, flat, cams):
    return rendering.render(params, arch, planes, flat, cams, options)["image"]

  def new_edit(params, s_src, s_ref, probabilities, strengths, cams):
    mask = transfer.target_mask(probabilities, strengths)
    flat = transfer.edit_styles(s_src, s_ref, mask, 1.0)
    return rendering.render(params, arch, rendering.planes(params, arch, flat, options), flat,
                            cams, options)["image"]

  def full(params, flat, cams):
    return rendering.synthesize(params, arch, flat, cams, options)["image"]

  return camera_move, new_edit, full


def start(options: SuiteOptions, presets: Optional[Sequence[str]] = None,
          dtypes: Sequence[str] = DTYPES) -> Finish:
  """Builds every (preset, dtype, case) and hands its compilation to the pool; finish() times
  them and returns the suite dict."""
  try:
    from sat3d_jax import eg3d, transfer  # pylint: disable=g-import-not-at-top
    from sat3d_jax.eg3d import rendering  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = f"sat3d_jax cannot be imported ({e})"
    return lambda: harness.missing_suite(reason)
  presets = tuple(presets or (QUICK_PRESETS if options.quick else FULL_PRESETS))
  log, pool = options.log, options.compile_pool
  prepared, setup = [], {}
  for preset in presets:
    t0 = time.perf_counter()
    config = eg3d.get_preset(preset)
    arch = eg3d.parse_config(config)
    params = harness.block(jax.jit(functools.partial(eg3d.init_params, config))(
        jax.random.key(0)))
    kwargs = config["init_kwargs"]["rendering_kwargs"]
    pivot, radius = kwargs.get("avg_camera_pivot", (0, 0, 0)), kwargs["avg_camera_radius"]
    z = jax.random.normal(jax.random.key(1), (2, arch.z_dim), jnp.float32)
    front = eg3d.orbit_labels(jnp.zeros(2), jnp.zeros(2), pivot, radius)
    ws = eg3d.apply_mapping(params, arch, z, front, 0.7, 14)
    flat = rendering.flat_styles(params, arch, ws)
    s_src, s_ref = flat[:1], flat[1:]
    channels = flat.shape[1]
    probabilities = jax.nn.softmax(jax.random.normal(jax.random.key(2),
                                                     (ATTRIBUTES + 1, channels)), axis=0)
    strengths = jnp.zeros((1, ATTRIBUTES)).at[0, 0].set(1.2).at[0, 3].set(0.8)
    cams = eg3d.orbit_labels(jnp.array([0.3]), jnp.array([0.1]), pivot, radius)
    n_params = sum(math.prod(p.shape) for p in params.values())
    setup[preset] = {"params": n_params, "resolution": arch.img_resolution,
                     "init_s": time.perf_counter() - t0}
    log(f"  [studio] preset {preset}: {arch.img_resolution} px, {n_params / 1e6:.2f} M params")
    for dtype in dtypes:
      opts = eg3d.Options(dtype=jnp.dtype(dtype))
      camera_move, new_edit, full = _programs(rendering, transfer, arch, opts)
      planes = harness.block(rendering.jit_planes(params, arch, s_src, opts))
      cases = ((CAMERA_MOVE, camera_move, [params, planes, s_src, cams]),
               (NEW_EDIT, new_edit, [params, s_src, s_ref, probabilities, strengths, cams]),
               (FULL, full, [params, s_src, cams]))
      for case, fn, args in cases:
        name = f"{preset}: {case}"
        try:
          prepared.append((preset, dtype, case, harness.prepare(
              "studio", name, fn, args, items_per_call=1, item="views", batch=1, dtype=dtype,
              pool=pool, log=log)))
        except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
          log(f"  [studio] {name} {dtype}: {type(e).__name__}: {e}")
          prepared.append((preset, dtype, case, harness.error_case("studio", name, e, batch=1,
                                                                   dtype=dtype)))

  def finish() -> dict:
    cases, rates = [], {}
    for preset, dtype, case, p in prepared:
      if isinstance(p, dict):
        cases.append(p)
        continue
      try:
        result = harness.run(p, warmup=options.warmup, runs=options.runs, peaks=options.peaks,
                             pool=pool, log=log)
        rates[(preset, dtype, case)] = result.get("items_per_s")
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [studio] {p.label}: {type(e).__name__}: {e}")
        result = harness.error_case("studio", p.case, e, batch=1, dtype=dtype)
      cases.append(result)
      p.args = []
    notes = [f"one view per call; presets {', '.join(presets)} (random weights); the GPU goal "
             "is >= 30 camera-move views/s at 512 px on one H100-class GPU"]
    for preset in presets:
      for dtype in dtypes:
        move, edit, full = (rates.get((preset, dtype, c)) for c in (CAMERA_MOVE, NEW_EDIT, FULL))
        if move and full:
          notes.append(f"{preset} {dtype}: camera move {move:.2f} views/s, new edit "
                       f"{edit or float('nan'):.2f}, full generator {full:.2f}: the cached "
                       f"tri-planes make a camera move {move / full:.2f}x the full generator")
    return {"status": "ok", "cases": cases, "notes": notes, "setup": setup,
            "ratios": {f"{preset} {dtype}": (rates.get((preset, dtype, CAMERA_MOVE)) or 0) /
                       rates[(preset, dtype, FULL)]
                       for preset in presets for dtype in dtypes
                       if rates.get((preset, dtype, FULL))}}
  return finish


def run(options: SuiteOptions, presets: Optional[Sequence[str]] = None,
        dtypes: Sequence[str] = DTYPES) -> dict:
  """Measures every (preset, dtype, case); the suite dict."""
  return start(options, presets, dtypes)()
