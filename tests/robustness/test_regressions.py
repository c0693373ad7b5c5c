"""Minimised cases of the crashes the fuzz tests found, as plain regression tests (one per fix)."""
import struct
import tracemalloc

import pytest

from sat3d_jax.eg3d import convert
from sat3d_jax.eg3d.pickle_reader import PickleFormatError


def test_pickle_memo_index_far_ahead_is_refused_before_the_memo_grows(tmp_path):
  """LONG_BINPUT 2**28 made the C unpickler allocate and zero a 4 GiB memo (11 s, 4 GiB RSS)."""
  path = tmp_path / "memo.pkl"
  path.write_bytes(b"\x80\x04Nr\x00\x00\x00\x10.")
  with pytest.raises(PickleFormatError, match=r"memo.pkl: memo index 268435456 at byte 3"):
    convert.read_network_pickle(path)


def test_pickle_claimed_length_past_the_file_is_refused_before_allocating(tmp_path):
  """BINUNICODE8 claiming ~2 GiB (a flipped byte after PROTO) made the unpickler allocate it."""
  path = tmp_path / "long.pkl"
  path.write_bytes(b"\x80\x04\x8d" + struct.pack("<Q", 1 << 31) + b"ab.")
  tracemalloc.start()
  try:
    with pytest.raises(PickleFormatError, match=r"long.pkl: truncated or malformed pickle"):
      convert.read_network_pickle(path)
    assert tracemalloc.get_traced_memory()[1] < 64 << 20
  finally:
    tracemalloc.stop()


def test_pickle_nested_deeply_is_refused_with_a_short_message(tmp_path):
  """A dict nested 100000 deep under an EasyDict's BUILD: its repr in the message recursed."""
  path = tmp_path / "deep.pkl"
  path.write_bytes(b"\x80\x04cdnnlib.util\nEasyDict\n)\x81" + b"}\x8c\x01k" * 100_000
                   + b"}" + b"s" * 100_000 + b"b.")
  with pytest.raises(PickleFormatError, match=r"deep.pkl: unexpected attribute state") as e:
    convert.read_network_pickle(path)
  assert len(str(e.value)) < 300
