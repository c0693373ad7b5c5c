"""What decided the spotter's features: region frame differences (features.py) against TV-L1
optical flow in the same regions, on generated toy videos: speed per frame and spotting F1.

  python launch/spot_features_study.py --out study.json --train_videos 4 --test_videos 2 \
      --frames 300 --steps 600       # what docs/spotting.md reports: 9 minutes on 2 CPU cores

Both feature sets are D_r,k(t) over the same face regions and offsets k, normalised per video the
same way (features.normalise); the flow variant takes the mean TV-L1 flow magnitude (pixels) in
the region between frames t - k//2 and t - k//2 + k (frldgt_jax/motion.tvl1_flow: scikit-image,
CPU). The same spotting net is trained on each (--steps, the tiny config otherwise) on the
training videos and spots the test videos (other seeds); the MEGC metric scores them
(frldgt_jax/spotting/metrics.py). Writes the frames per second of each feature extractor and the
F1s to --out and prints them.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import json
import pathlib
import time

import numpy as np
from absl import flags

_OUT = flags.DEFINE_string("out", None, "JSON file of the results.", required=True)
_TRAIN = flags.DEFINE_integer("train_videos", 6, "Generated training videos.")
_TEST = flags.DEFINE_integer("test_videos", 3, "Generated test videos (other seeds).")
_FRAMES = flags.DEFINE_integer("frames", 600, "Frames per video (30 fps).")
_STEPS = flags.DEFINE_integer("steps", 800, "Training steps per feature set.")


def flow_features(frames: np.ndarray, offsets) -> np.ndarray:
  """Mean TV-L1 flow magnitude per region (features.region_weights) for each offset."""
  from frldgt_jax import motion  # pylint: disable=g-import-not-at-top
  from frldgt_jax.spotting import features  # pylint: disable=g-import-not-at-top
  weights = features.region_weights(frames.shape[1])
  n, out = len(frames), []
  for k in offsets:
    cols = np.zeros((n, len(weights)), np.float32)
    for t in range(n):
      a, b = np.clip([t - k // 2, t - k // 2 + k], 0, n - 1)
      flow = motion.tvl1_flow(frames[a], frames[b])
      cols[t] = np.einsum("xy,rxy->r", np.linalg.norm(flow, axis=-1), weights)
    out.append(cols)
  return np.concatenate(out, axis=1)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from frldgt_jax.spotting import decode, features, metrics, spotter, toy, training  # pylint: disable=g-import-not-at-top
  from launch.trainer import from_file  # pylint: disable=g-import-not-at-top
  config = from_file(str(pathlib.Path(__file__).parents[1] / "configs" /
                     "spotting_casme2_lv.py"), "tiny")
  config.total_steps = _STEPS.value
  offsets = tuple(config.features.offsets)
  n_train, n_test = _TRAIN.value, _TEST.value
  videos = [toy.toy_video(seed if seed < n_train else 500 + seed, _FRAMES.value,
                          n_micro=6, n_macro=2)
            for seed in tqdm(range(n_train + n_test), desc="generating", unit="video")]
  extractors = {
      "frame differences (features.py, jitted)": lambda f: features.raw_features(f, offsets),
      "TV-L1 flow (scikit-image)": lambda f: flow_features(f, offsets)}
  report = {"videos": {"train": n_train, "test": n_test, "frames": _FRAMES.value,
                       "size": int(videos[0].frames.shape[1])},
            "offsets": list(offsets), "steps": _STEPS.value, "features": {}}
  for name, extract in extractors.items():
    extract(videos[0].frames[:64])  # compile / warm up
    start, cpu = time.perf_counter(), time.process_time()
    raw = [extract(v.frames) for v in tqdm(videos, desc=name, unit="video")]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    frames = sum(len(v.frames) for v in videos)
    feats = [features.normalise(r) for r in raw]
    train = range(n_train)
    bounds, first = [], 0
    for i in train:
      bounds.append((first, first + len(feats[i])))
      first += len(feats[i])
    labels = np.concatenate([training.frame_labels(np.arange(len(videos[i].frames)),
                                                   videos[i].intervals) for i in train])
    frozen = {"features": jnp.asarray(np.concatenate([feats[i] for i in train])),
              "labels": jnp.asarray(labels),
              "video": jnp.asarray(np.concatenate([np.full(b - a, i, np.int32)
                                                   for i, (a, b) in enumerate(bounds)]))}
    init, step = training.make_train_fns(config, frozen["features"].shape[1])
    sampler = training.make_batch_sampler(0, [training.window_starts(bounds, config.window)],
                                          [training.class_weights(labels)], config.batch_size,
                                          stacked=False)
    state, step = init(jax.random.PRNGKey(0)), jax.jit(step)
    for s in tqdm(range(config.total_steps), desc="training", unit="step"):
      state, _ = step(state, frozen, sampler(s), jax.random.fold_in(jax.random.PRNGKey(0), s))
    model = training.build_model(config)
    truths, predictions = {}, {}
    for i in range(n_train, n_train + n_test):
      probs = spotter.score_features(model, state["params"], feats[i])
      predictions[("toy", str(i))] = decode.decode(probs, spotter.decode_options(config))
      truths[("toy", str(i))] = list(videos[i].intervals)
    scores = metrics.spotting(truths, predictions).as_dict()
    report["features"][name] = {
        "frames_per_s_wall": frames / wall, "frames_per_s_cpu": frames / cpu,
        "f1": {k: round(v["f1"], 4) for k, v in scores.items()}, "counts": scores}
    print(f"{name}: {frames / wall:.1f} frames/s (wall), F1 micro "
          f"{scores['micro']['f1']:.3f}, macro {scores['macro']['f1']:.3f}, overall "
          f"{scores['overall']['f1']:.3f}")
  pathlib.Path(_OUT.value).write_text(json.dumps(report, indent=1) + "\n")
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
