"""Reading a CSV a user gives (the composite list, landmark files): rows with their line numbers.

One place decides what a readable CSV is: UTF-8 text (a byte-order mark, as spreadsheet programs
write, is allowed) that Python's csv module parses. Anything else is reported through the
caller's own error type, naming the line.
"""
from __future__ import annotations

import csv
import io
import os
import pathlib
from typing import Callable


def read_rows(path: str | os.PathLike, fail: Callable[[str, int | None], Exception]
              ) -> list[tuple[int, list[str]]]:
  """(line number, cells) for every row of the CSV at `path` (line numbers from 1, a row's last
  line for a row spanning several).

  `fail(message, line)` builds the caller's error (line None: the whole file); raised for a
  missing or unreadable file, text that is not UTF-8 and text the csv module cannot parse.
  """
  path = pathlib.Path(path)
  try:
    raw = path.read_bytes()
  except FileNotFoundError as e:
    raise fail("cannot be read (file does not exist)", None) from e
  except OSError as e:
    raise fail(f"cannot be read ({e})", None) from e
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    raise fail(f"not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); save the file "
               "as UTF-8", line) from e
  reader = csv.reader(io.StringIO(text, newline=""))
  rows = []
  try:
    for cells in reader:
      rows.append((reader.line_num, cells))
  except csv.Error as e:
    raise fail(f"not parseable as CSV ({e})", reader.line_num + 1) from e
  return rows
