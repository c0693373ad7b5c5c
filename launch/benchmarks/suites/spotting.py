"""The spotter's speed: frames per second of motion features, the spotting net and decoding.

Cases (the programs launch/spot.py runs, at the shapes it runs them; frames are 64 x 64 aligned
crops, the spotter's config.data.image_size):
  features        frldgt_jax/spotting/features.chunk_features: one call is CHUNKS_PER_CALL
                  chunks of CHUNK frames (4096 frames)
  spotting net    the net's probabilities over WINDOWS_PER_CALL windows of WINDOW frames plus
                  their context (frldgt_jax/spotting/spotter.score_features; 4096 frames)
  train step      one step of the tiny config's training (launch/tasks/spotting.py), windows
                  of config.window frames x config.batch_size (frames = window x batch)
Decoding (host NumPy, frldgt_jax/spotting/decode.py) and the whole of Spotter.spot on one minute
of generated 30 fps video (1800 frames: features, net, decoding, apex re-spotting; compiled
programs reused) are timed with a wall clock and reported in the notes. Quick and full are the
same (the net is small).
"""
from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from launch.benchmarks import harness
from launch.benchmarks.suites import Finish, SuiteOptions

REPO = pathlib.Path(__file__).resolve().parents[3]
SIZE = 64


def start(options: SuiteOptions) -> Finish:
  """Builds the three programs and hands them to the compile pool; finish() times them."""
  try:
    from frldgt_jax.spotting import (  # pylint: disable=g-import-not-at-top
        decode, features, spotter, toy)
    from launch.tasks import spotting as task_lib  # pylint: disable=g-import-not-at-top
    from launch.trainer import from_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    reason = f"the spotter cannot be imported ({e})"
    return lambda: harness.missing_suite(reason)
  log, pool = options.log, options.compile_pool
  tiny = spotter.load_spotter(REPO / "tests" / "fixtures" / "spotter_tiny")
  offsets = spotter.offsets_of(tiny.config)
  video = toy.toy_video(0, 1800, size=SIZE, n_micro=12, n_macro=4)
  n_chunks, margin = features.CHUNKS_PER_CALL, max(offsets)
  index = np.clip(np.arange(n_chunks)[:, None] * features.CHUNK
                  + np.arange(features.CHUNK + margin)[None] - margin // 2, 0, 1799)
  chunks = jnp.asarray(video.frames[index])
  weights = jnp.asarray(features.region_weights(SIZE))
  feature_frames = n_chunks * features.CHUNK
  context = tiny.model.kernel // 2 * int(sum(tiny.model.dilations)) + 1
  windows = jnp.zeros((spotter.WINDOWS_PER_CALL, spotter.WINDOW + 2 * context,
                       features.num_features(offsets)), jnp.float32)
  score_frames = spotter.WINDOWS_PER_CALL * spotter.WINDOW
  model = tiny.model

  def score(params, x):
    return jax.nn.softmax(model.apply({"params": params}, x), axis=-1)

  config = from_file(str(REPO / "configs" / "spotting_casme2_lv.py"), "tiny")
  config.data.toy.subjects, config.data.toy.frames = 2, 300
  task = task_lib.make_task(config)
  state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
  frozen = task.frozen()
  batch = {k: jnp.asarray(v) for k, v in task.batch_for_step(0).items()}
  step_frames = int(config.window) * int(config.batch_size)
  cases = [
      ("features", lambda c, w: features.chunk_features(c, w, offsets), [chunks, weights],
       feature_frames),
      ("spotting net", score, [tiny.params, windows], score_frames),
      ("train step", lambda s, f, b: task.train_step(s, f, b, jax.random.PRNGKey(1)),
       [state, frozen, batch], step_frames),
  ]
  prepared = []
  for name, fn, args, frames in cases:
    prepared.append(harness.prepare("spotting", name, fn, args, items_per_call=frames,
                                    item="frames", dtype="float32", pool=pool, log=log))

  def finish() -> dict:
    results = [harness.run(p, warmup=options.warmup, runs=options.runs, peaks=options.peaks,
                           pool=pool, log=log) for p in prepared]
    probs = spotter.score_features(model, tiny.params, features.motion_features(
        video.frames, offsets))
    t0 = time.perf_counter()
    for _ in range(options.runs):
      decode.decode(probs, spotter.decode_options(tiny.config))
    decode_s = (time.perf_counter() - t0) / options.runs
    tiny.spot(video.frames, fps=30.0)  # compiles nothing new after this
    t0, cpu0 = time.perf_counter(), time.process_time()
    tiny.spot(video.frames, fps=30.0)
    minute_s, minute_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    device = jax.devices()[0].platform
    notes = [f"decoding (NumPy, host): {len(probs) / decode_s:.3g} frames/s",
             f"Spotter.spot on one minute of 30 fps video (1800 frames of {SIZE} x {SIZE}, "
             f"{device}): {minute_s:.2f} s wall, {minute_cpu:.2f} s process CPU (features, net, "
             "decoding, apex re-spotting; face detection and alignment not included)",
             f"train step: {config.batch_size} windows of {config.window} frames"]
    return {"status": "ok", "cases": results, "notes": notes,
            "setup": {"minute_of_video_s": minute_s, "minute_of_video_cpu_s": minute_cpu,
                      "decode_frames_per_s": len(probs) / decode_s}}
  return finish


def run(options: SuiteOptions) -> dict:
  """Measures every case; the suite dict."""
  return start(options)()
