"""An expression interval in a long video: what annotations, spotters and the MEGC metric share.

Frames are the video's own frame numbers as its annotation writes them (CAS(ME)^2 and SAMM Long
Videos count from 1), `onset` and `offset` both inclusive. `kind` is 'micro' or 'macro'.
`label` is the MEGC composite class (0 negative, 1 positive, 2 surprise) or -1 ("others": an
emotion the protocol does not map, or an interval that carries no emotion).
"""
from __future__ import annotations

import dataclasses

KINDS = ("micro", "macro")


@dataclasses.dataclass(frozen=True)
class Interval:
  """One expression interval: onset..offset (inclusive), its apex when known, kind and class."""
  onset: int
  offset: int
  kind: str
  apex: int | None = None
  label: int = -1
  emotion: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"interval kind {self.kind!r} is not one of {KINDS}")
    if self.offset < self.onset:
      raise ValueError(f"interval offset {self.offset} is before its onset {self.onset}")
    if self.apex is not None and not self.onset <= self.apex <= self.offset:
      raise ValueError(f"interval apex {self.apex} is outside {self.onset}..{self.offset}")

  @property
  def length(self) -> int:
    """Frames in the interval, both ends counted."""
    return self.offset - self.onset + 1
