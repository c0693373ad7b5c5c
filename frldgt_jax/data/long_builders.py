"""TFDS builders (manual download) for the long-video databases: CAS(ME)^2, SAMM Long Videos and
CAS(ME)^3 Part A (one per `databases.LONG_VIDEO` entry, `LONG_BUILDERS[name]`).

One example per annotated video, read by long_videos.py (readers, errata rules, face tracks), so
a built dataset and `long_videos.load_videos` give the same arrays:

  database, subject, video   str
  fps                        float32
  frame_numbers              int64 [T]       the stored frames' numbers (every `every`-th frame)
  frames                     uint8 [T, S, S] grayscale, aligned track by track (tracks.py)
  onset, offset, apex, label int64 [N]       the intervals (apex -1 where unknown; label 0/1/2,
                                             -1 others); `micro` int64 [N] 1 micro, 0 macro
  emotion                    str             the intervals' emotion texts joined by '|'
  track_start, track_stop    int64 [K]       positions of the face tracks in `frames`

Config `s{S}_e{every}`: S the crop side (default 96: a micro-expression moves 1-3 px of a 128-px
crop, so 96 keeps it near a pixel while a 30 s video at 30 fps stays under 9 MB raw, ZLIB-coded
smaller); `every` the temporal stride (default 1: every frame; SAMM-LV's 200 fps may be thinned
with every=7 to about 30 fps, as MEGC spotting code samples it; docs/spotting_data.md).
The errata found are rules applied, not failures: they are listed in `build_summary.json` in the
dataset folder.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pathlib
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

from frldgt_jax.data import builders, databases, long_videos
from frldgt_jax.errors import InputError

SUMMARY_FILE = builders.SUMMARY_FILE   # the same file the clip builders write
DEFAULT_RESOLUTION = 96
_VERSION = tfds.core.Version("1.0.0")


@dataclasses.dataclass(eq=False)
class LongConfig(tfds.core.BuilderConfig):
  """What is stored: crop side S and temporal stride."""
  resolution: int = DEFAULT_RESOLUTION
  every: int = 1


def _make_config(resolution: int, every: int) -> LongConfig:
  if resolution < 8 or every < 1:
    raise ValueError(f"need resolution >= 8 and every >= 1, got {resolution}, {every}")
  return LongConfig(name=f"s{resolution}_e{every}", version=_VERSION,
                    description=f"{resolution}x{resolution} aligned frames, every {every}",
                    resolution=resolution, every=every)


_PREDEFINED = [_make_config(DEFAULT_RESOLUTION, 1)]


def long_config(resolution: int = DEFAULT_RESOLUTION, every: int = 1) -> LongConfig:
  """The config `s{S}_e{every}`: the predefined one, or a custom one named the same way."""
  for config in _PREDEFINED:
    if (config.resolution, config.every) == (resolution, every):
      return config
  return _make_config(resolution, every)


def example(video: long_videos.LoadedVideo) -> dict[str, Any]:
  """The stored features of one loaded video (module docstring)."""
  ivs = video.intervals
  ints = lambda values: np.asarray(values, np.int64).reshape(-1)
  return {
      "database": video.database, "subject": video.subject, "video": video.video,
      "fps": np.float32(video.fps), "frame_numbers": ints(video.frame_numbers),
      "frames": video.frames,
      "onset": ints([i.onset for i in ivs]), "offset": ints([i.offset for i in ivs]),
      "apex": ints([-1 if i.apex is None else i.apex for i in ivs]),
      "label": ints([i.label for i in ivs]), "micro": ints([i.kind == "micro" for i in ivs]),
      "emotion": "|".join(i.emotion for i in ivs),
      "track_start": ints([t.start for t in video.tracks]),
      "track_stop": ints([t.stop for t in video.tracks]),
  }


class _LongVideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared code of the long-video builders (module docstring)."""

  VERSION = _VERSION
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = _PREDEFINED
  _DATABASE = ""

  def __init__(self, *, detector=None, **kwargs):
    """`detector`: gray image -> align.Landmarks, for a manual directory without
    landmarks_long.csv (long_videos.load_videos)."""
    self._detector = detector
    self._summary = None
    super().__init__(**kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))  # as builders.py: TFDS 4.9's own needs a backport

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.resolution
    vector = lambda: tfds.features.Tensor(shape=(None,), dtype=np.int64)
    features = tfds.features.FeaturesDict({
        "database": tfds.features.Text(), "subject": tfds.features.Text(),
        "video": tfds.features.Text(), "fps": tfds.features.Scalar(np.float32),
        "frame_numbers": vector(),
        "frames": tfds.features.Tensor(shape=(None, s, s), dtype=np.uint8,
                                       encoding=tfds.features.Encoding.ZLIB),
        "onset": vector(), "offset": vector(), "apex": vector(), "label": vector(),
        "micro": vector(), "emotion": tfds.features.Text(),
        "track_start": vector(), "track_stop": vector(),
    })
    return tfds.core.DatasetInfo(builder=self, description=__doc__, features=features,
                                 disable_shuffling=True)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual = pathlib.Path(dl_manager.manual_dir)
    videos, problems = long_videos.read_database(self._DATABASE, manual)
    if not videos:
      raise InputError(f"{manual}: no annotated video of {self._DATABASE} with frames "
                       f"({len(problems)} problem(s): {'; '.join(map(str, problems[:3]))})")
    self._summary = {"dataset": self.name, "config": self.builder_config.name,
                     "manual_dir": str(manual), "videos": len(videos),
                     "intervals": sum(len(v.intervals) for v in videos),
                     "fixes": [{**p.to_json(), "reason": str(p)} for p in problems]}
    return {"train": self._generate_examples(manual)}

  def _generate_examples(self, manual: pathlib.Path):
    config = self.builder_config
    for video in long_videos.load_videos(self._DATABASE, manual, config.resolution,
                                         detector=self._detector, every=config.every):
      yield f"{video.subject}/{video.video}", example(video)

  def _download_and_prepare(self, dl_manager, download_config=None):
    super()._download_and_prepare(dl_manager, download_config)
    path = pathlib.Path(self.data_dir) / SUMMARY_FILE
    path.write_text(json.dumps(self._summary, indent=1))


def _builder(db: databases.LongVideoDatabase) -> type:
  return builders.registry_builder(_LongVideoBuilder, db, __name__,
                                   f"{db.title} long videos, one example per annotated video; "
                                   "features: module doc.")


LONG_BUILDERS = {db.name: _builder(db) for db in databases.LONG_VIDEO}


def build(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike, *,
          resolution: int = DEFAULT_RESOLUTION, every: int = 1, detector=None
          ) -> tuple[tfds.core.DatasetBuilder, dict[str, Any]]:
  """Builds one long-video dataset; returns (builder, its build summary).

  An existing dataset with the same config is reused. `detector`: see _LongVideoBuilder.
  """
  if dataset not in LONG_BUILDERS:
    raise ValueError(f"dataset must be one of {sorted(LONG_BUILDERS)}, got {dataset!r}")
  builder = LONG_BUILDERS[dataset](data_dir=os.fspath(data_dir),
                                   config=long_config(resolution, every), detector=detector)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir), compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder, builders.read_build_summary(builder.data_dir)
