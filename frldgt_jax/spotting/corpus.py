"""The long videos a spotting config trains on, as motion features with per-frame labels, and
its leave-one-subject-out folds.

`load_videos(config)` gives the videos of config.data.dataset: 'toy' draws
config.data.toy.subjects x videos_per_subject aligned toy videos (frldgt_jax/spotting/toy.py);
the long-video databases ('casme2_lv', 'samm_lv', 'casme3_a': the layouts as they ship, or the
generated corpus of launch/make_synthetic.py --long, in config.data.root) come from their
TensorFlow-free reader, frldgt_jax/data/long_videos.py, aligned track by track, every n-th frame
kept where the database's rate is n times config.data.fps (SAMM-LV's 200 fps -> 33 fps).
`prepare(config, videos)` computes every video's features once (features.py) and concatenates
them, with the labels and the video of each frame, into the arrays the train step reads on the
device.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import ml_collections
import numpy as np

from frldgt_jax.errors import InputError
from frldgt_jax.spotting import features as features_lib
from frldgt_jax.spotting import toy, training
from frldgt_jax.spotting.intervals import Interval


@dataclasses.dataclass(frozen=True)
class Video:
  """One long video's aligned face frames and its annotation."""
  subject: str
  name: str
  frames: np.ndarray          # uint8 [T, S, S]
  frame_numbers: np.ndarray   # int64 [T]
  fps: float                  # of `frames` (after any subsampling)
  intervals: tuple[Interval, ...]
  tracks: tuple[tuple[int, int], ...] = ()   # (start, stop) positions of each face track


@dataclasses.dataclass(frozen=True)
class Prepared:
  """Every video's features and labels concatenated, and where each video lies."""
  videos: tuple[Video, ...]
  features: np.ndarray        # float32 [N, F]
  labels: np.ndarray          # int32 [N]
  video: np.ndarray           # int32 [N]: index into `videos`
  bounds: tuple[tuple[int, int], ...]   # (first, stop) rows of each video

  @property
  def subjects(self) -> list[str]:
    """The subjects, sorted: LOSO fold k holds out subjects[k]."""
    return sorted({v.subject for v in self.videos})

  def fold_videos(self, fold: int) -> tuple[list[int], list[int]]:
    """(training videos, held-out videos) of fold `fold`."""
    held = self.subjects[fold]
    train = [i for i, v in enumerate(self.videos) if v.subject != held]
    return train, [i for i, v in enumerate(self.videos) if v.subject == held]


def load_videos(config: ml_collections.ConfigDict) -> list[Video]:
  """The videos of config.data.dataset (module docstring)."""
  d = config.data
  if d.dataset == "toy":
    out = []
    for s in range(int(d.toy.subjects)):
      for v in range(int(d.toy.videos_per_subject)):
        seed = int(config.seed) * 1000 + s * 10 + v
        video = toy.toy_video(seed, int(d.toy.frames), size=int(d.image_size), fps=float(d.fps),
                              n_micro=int(d.toy.micro), n_macro=int(d.toy.macro),
                              subject=f"s{s:02d}")
        out.append(Video(video.subject, f"s{s:02d}_v{v}", video.frames,
                         np.arange(len(video.frames)), video.fps, tuple(video.intervals),
                         ((0, len(video.frames)),)))
    return out
  from frldgt_jax.data import long_videos  # pylint: disable=g-import-not-at-top
  if d.dataset not in long_videos.NAMES:
    raise InputError(f"config.data.dataset must be 'toy' or one of {list(long_videos.NAMES)}, "
                     f"got {d.dataset!r}")
  stride = max(1, int(round(long_videos.FPS[d.dataset] / float(d.fps))))
  loaded = long_videos.load_videos(d.dataset, d.root, int(d.image_size), every=stride)
  return [Video(v.subject, v.video, v.frames, v.frame_numbers, v.fps / stride, v.intervals,
                tuple((t.start, t.stop) for t in v.tracks)) for v in loaded]


def prepare(config: ml_collections.ConfigDict, videos: Sequence[Video]) -> Prepared:
  """Features, labels and video index of every frame (module docstring)."""
  if not videos:
    raise InputError(f"config.data.dataset {config.data.dataset!r}: no videos")
  offsets = tuple(int(k) for k in config.features.offsets)
  feats, labels, index, bounds, first = [], [], [], [], 0
  for i, v in enumerate(videos):
    feats.append(features_lib.motion_features(v.frames, offsets))
    labels.append(training.frame_labels(v.frame_numbers, v.intervals))
    index.append(np.full(len(v.frames), i, np.int32))
    bounds.append((first, first + len(v.frames)))
    first += len(v.frames)
  return Prepared(tuple(videos), np.concatenate(feats), np.concatenate(labels),
                  np.concatenate(index), tuple(bounds))


def spot_by_track(videos: Sequence[Video], spot: Callable[[Video, int, int], list[Interval]],
                  min_frames: int) -> dict[tuple[str, str], list[Interval]]:
  """{(subject, name): intervals} of `videos`, spotted face track by face track.

  spot(video, start, stop) spots frames start..stop-1 of a video (positions, not frame
  numbers); tracks shorter than `min_frames` are not spotted (too short to tell motion from
  the track's start). A video without tracks is one track.
  """
  out = {}
  for v in videos:
    found = []
    for start, stop in v.tracks or ((0, len(v.frames)),):
      if stop - start >= min_frames:
        found += spot(v, start, stop)
    out[(v.subject, v.name)] = found
  return out
