"""The spotter's parts (frldgt_jax/spotting/): motion features against a per-frame NumPy/OpenCV
reference, interval decoding on hand-made curves, labels and weights, the driver task's folds,
and the committed tiny spotter (tests/fixtures/spotter_tiny) on generated videos it never saw."""
import pathlib

import cv2
import jax
import numpy as np
import pytest

from frldgt_jax.spotting import corpus, decode, features, spotter, toy, training
from frldgt_jax.spotting.intervals import Interval
from launch.trainer import from_file

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "spotter_tiny"


def _reference_features(frames, offsets):
  """D_r,k(t) frame by frame with OpenCV's separable filter (module docstring of features.py)."""
  kernel = features._gaussian_kernel(features.BLUR_SIGMA_PX)  # pylint: disable=protected-access
  weights = features.region_weights(frames.shape[1])
  g = np.stack([cv2.sepFilter2D(f.astype(np.float32) / 255, -1, kernel, kernel,
                                borderType=cv2.BORDER_REPLICATE) for f in frames])
  g = g - np.einsum("txy,xy->t", g, weights[-1])[:, None, None]
  n = len(frames)
  out = []
  for k in offsets:
    a = np.clip(np.arange(n) - k // 2, 0, n - 1)
    b = np.clip(np.arange(n) - k // 2 + k, 0, n - 1)
    out.append(np.einsum("txy,rxy->tr", np.abs(g[b] - g[a]), weights))
  return np.concatenate(out, axis=1)


def test_features_match_a_per_frame_reference_across_chunk_edges():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (37, 32, 32), dtype=np.uint8)
  offsets = (2, 5)
  raw = features.raw_features(frames, offsets, chunk=8, chunks_per_call=2)
  assert raw.shape == (37, features.num_features(offsets))
  np.testing.assert_allclose(raw, _reference_features(frames, offsets), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(features.raw_features(frames, offsets), raw, rtol=1e-5, atol=1e-7)


def test_features_see_a_planted_expression_and_not_a_still_face():
  video = toy.toy_video(3, 240, n_micro=2, n_macro=0, drift_px=0.0)
  feats = features.motion_features(video.frames, (4, 12))
  signal = features.motion_signal(feats)
  inside = np.zeros(len(signal), bool)
  for iv in video.intervals:
    inside[iv.onset:iv.offset + 1] = True
  assert signal[inside].max() > np.percentile(signal[~inside], 95)


def test_bad_frames_are_input_errors():
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  with pytest.raises(InputError, match="no frame"):
    features.raw_features(np.zeros((0, 8, 8), np.uint8), (2,))
  with pytest.raises(InputError, match="uint8"):
    features.raw_features(np.zeros((4, 8, 8), np.float32), (2,))


def test_decode_joins_gaps_drops_short_runs_and_keeps_the_likelier_kind():
  p = np.zeros((60, 3))
  p[:, 0] = 1
  p[5:9, 1], p[10:13, 1] = 0.9, 0.9        # micro, one-frame gap -> joined 5..12
  p[20:22, 1] = 0.9                        # micro of 2 frames < min_length_micro 3 -> dropped
  p[30:45, 2] = 0.8                        # macro 30..44
  p[40:43, 1] = 0.95                       # overlapping micro with a higher mean -> micro kept
  p[:, 0] = 1 - p[:, 1:].max(1)
  options = decode.DecodeOptions(threshold=0.5, smooth=1, max_gap=2, min_length_micro=3,
                                 min_length_macro=8)
  out = decode.decode(p, options, frame_numbers=np.arange(60) + 100)
  assert [(iv.onset, iv.offset, iv.kind) for iv in out] == [(105, 112, "micro"),
                                                            (140, 142, "micro")]
  assert all(iv.onset <= iv.apex <= iv.offset for iv in out)
  p[40:43, 1] = 0.6                        # now the macro run's mean is the higher one
  out = decode.decode(p, options)
  assert [(iv.onset, iv.offset, iv.kind) for iv in out] == [(5, 12, "micro"), (30, 44, "macro")]


def test_frame_labels_and_class_weights():
  labels = training.frame_labels(np.arange(1, 21), [Interval(3, 12, "macro"),
                                                    Interval(5, 6, "micro")])
  assert labels.tolist() == [0, 0, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2] + [0] * 8
  w = training.class_weights(labels)
  freq = np.bincount(labels, minlength=3) / len(labels)
  assert np.isclose((w * freq).sum(), 1.0) and w[1] > w[2] > w[0]


def test_loso_folds_never_draw_windows_of_the_held_out_subject():
  config = from_file(str(REPO / "configs" / "spotting_casme2_lv.py"), "tiny")
  config.final_model = False
  config.data.toy.subjects, config.data.toy.videos_per_subject = 3, 1
  config.data.toy.frames = 200
  config.window = 64
  from launch.tasks import spotting as task_lib  # pylint: disable=g-import-not-at-top
  task = task_lib.make_task(config)
  data = task.data
  assert task.num_models % jax.device_count() == 0 and task.num_models >= 3
  batch = task.batch_for_step(7)
  assert batch["start"].shape == (task.num_models, config.batch_size)
  for m, slot in enumerate(task.slots):
    held = data.subjects[slot.fold]
    drawn = {data.videos[data.video[s]].subject for s in batch["start"][m]}
    assert held not in drawn
    assert all(data.video[s] == data.video[s + config.window - 1] for s in batch["start"][m])
  again = task.batch_for_step(7)
  np.testing.assert_array_equal(again["start"], batch["start"])


def _iou(a, b):
  inter = max(0, min(a.offset, b.offset) - max(a.onset, b.onset) + 1)
  return inter / (a.length + b.length - inter)


def test_tiny_spotter_finds_most_planted_intervals_of_unseen_videos():
  tiny = spotter.load_spotter(TINY)
  assert tiny.step == 1200 and tiny.image_size == 64
  found = planted = spotted = correct = 0
  for seed in (900, 902):   # the tiny spotter trained on seeds 0..71 (corpus.load_videos)
    video = toy.toy_video(seed, 600, n_micro=4, n_macro=2)
    result = tiny.spot(video.frames, np.arange(len(video.frames)) + 1, video.fps)
    assert result.probabilities.shape == (600, 3)
    truth = [Interval(iv.onset + 1, iv.offset + 1, iv.kind) for iv in video.intervals]
    hit = lambda a, b: a.kind == b.kind and _iou(a, b) >= 0.5  # noqa: E731
    found += sum(any(hit(p, t) for p in result.intervals) for t in truth)
    correct += sum(any(hit(p, t) for t in truth) for p in result.intervals)
    planted, spotted = planted + len(truth), spotted + len(result.intervals)
  assert found / planted >= 0.6, (found, planted)
  assert correct / spotted >= 0.5, (correct, spotted)


def test_a_spotter_at_another_frame_rate_scores_every_nth_frame():
  tiny = spotter.load_spotter(TINY)
  video = toy.toy_video(5, 120, n_micro=1, n_macro=0)
  doubled = np.repeat(video.frames, 2, axis=0)          # the same video at 60 fps
  result = tiny.spot(doubled, np.arange(len(doubled)), 60.0)
  assert result.stride == 2 and len(result.positions) == len(video.frames)
  for iv in result.intervals:
    assert 0 <= iv.onset <= iv.apex <= iv.offset < len(doubled)


def test_load_spotter_refuses_what_is_not_a_spotter(tmp_path):
  from frldgt_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  with pytest.raises(InputError, match="no such spotter workdir"):
    spotter.load_spotter(tmp_path / "missing")
  (tmp_path / "config.json").write_text('{"task": "launch.tasks.frldgt"}')
  with pytest.raises(InputError, match="not a spotter's config"):
    spotter.load_spotter(tmp_path)


def test_corpus_prepares_every_frame_once():
  config = from_file(str(REPO / "configs" / "spotting_casme2_lv.py"), "tiny")
  config.data.toy.subjects, config.data.toy.videos_per_subject = 2, 1
  config.data.toy.frames = 90
  data = corpus.prepare(config, corpus.load_videos(config))
  assert data.features.shape[0] == data.labels.shape[0] == 180
  assert data.bounds == ((0, 90), (90, 180)) and data.subjects == ["s00", "s01"]
  assert data.fold_videos(0) == ([1], [0])
