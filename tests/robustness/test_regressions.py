"""Minimised cases of the crashes the fuzz tests found, as plain regression tests (one per fix)."""
import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from frldgt_jax.data import align, clips
from frldgt_jax.data import annotations as A
from sat3d_jax import image_file, latent_file, style_file
from sat3d_jax.eg3d import convert
from sat3d_jax.eg3d.pickle_reader import PickleFormatError
from sat3d_jax.errors import InputError
from tests.frldgt.test_annotations import write_casme2_xlsx
from tests.robustness.test_fuzz_images import png_claiming


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


# ------------------------------------------------------------------------------ latent files


def test_latent_ws_of_strings_is_an_input_error(tmp_path):
  """A string 'ws' reached np.isfinite: TypeError."""
  path = tmp_path / "latent.npz"
  np.savez(path, ws=np.full((1, 2, 3), "a"))
  with pytest.raises(InputError, match=r"latent.npz: 'ws' has dtype <U1, not a real number"):
    latent_file.read_latent_file(path)


def test_latent_plain_npy_is_an_input_error(tmp_path):
  """np.load of a .npy returns an array, which is no context manager: TypeError."""
  path = tmp_path / "latent.npy"
  np.save(path, np.ones((1, 2, 3), np.float32))
  with pytest.raises(InputError, match=r"latent.npy: not a readable latent .npz file"):
    latent_file.read_latent_file(path)


@pytest.mark.parametrize("flag, compress_type, message", [
    (0x1, zipfile.ZIP_STORED, "is encrypted"), (0, 99, "uses zip compression method 99")])
def test_latent_zip_members_numpy_cannot_open_are_input_errors(tmp_path, flag, compress_type,
                                                               message):
  """An encrypted member (RuntimeError) or an unknown compression method (NotImplementedError)."""
  path = tmp_path / "latent.npz"
  np.savez(path, ws=np.ones((1, 2, 3), np.float32))
  data = bytearray(path.read_bytes())
  for signature in (b"PK\x03\x04", b"PK\x01\x02"):  # local header and central directory
    at = data.index(signature)
    offset = 6 if signature == b"PK\x03\x04" else 8
    data[at + offset:at + offset + 2] = struct.pack("<H", flag)
    data[at + offset + 2:at + offset + 4] = struct.pack("<H", compress_type)
  path.write_bytes(bytes(data))
  with pytest.raises(InputError, match=rf"latent.npz: member 'ws.npy' {message}"):
    latent_file.read_latent_file(path)


def test_latent_member_claiming_more_than_it_holds_is_refused_before_allocating(tmp_path):
  path = tmp_path / "latent.npz"
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                "shape": (1 << 20, 1024, 1024)})
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("ws.npy", header.getvalue() + b"\0" * 8)
  with pytest.raises(InputError, match=r"claims shape \(1048576, 1024, 1024\)"):
    latent_file.read_latent_file(path)


def _write_latent(path, generator):
  latent_file.write_latent_file(str(path), np.ones((1, 2, 3)), generator=generator)


def _write_styles(path, generator):
  style_file.write_style_file(path, np.ones((1, 3), np.float32), [("a", 1), ("b", 2)],
                              "fingerprint", ["row"], generator=generator)


@pytest.mark.parametrize("write, read", [
    (_write_latent, latent_file.read_latent_file), (_write_styles, style_file.read_style_file)])
@pytest.mark.parametrize("generator, message", [
    ("../escape", "leaves the file's folder"), ("missing", "does not exist")])
def test_generator_path_escaping_or_missing(tmp_path, write, read, generator, message):
  """Latent and style files name pivotal-tuned params by path: a relative one is read from the
  file's folder and may not leave it (style files had looked in the working directory first)."""
  (tmp_path / "files").mkdir()
  (tmp_path / "escape").mkdir()
  path = tmp_path / "files" / "faces.npz"
  write(path, generator)
  with pytest.raises(InputError, match=message):
    read(path)
  (tmp_path / "files" / "tuned").mkdir()
  write(path, "tuned")
  assert read(path)["generator"] == str(tmp_path / "files" / "tuned")


# ------------------------------------------------------------------------------ images


def _png(tmp_path, array, name="photo.png"):
  path = tmp_path / name
  Image.fromarray(array).save(path)
  return path


def test_photo_decompression_bomb_is_an_input_error(tmp_path):
  """Pillow's DecompressionBombError (not an OSError) escaped read_photo and measure."""
  path = tmp_path / "bomb.png"
  path.write_bytes(png_claiming(20000))  # the header is what is checked
  with pytest.raises(InputError, match=r"bomb.png: image header claims more than"):
    image_file.read_rgb(path)
  with pytest.raises(clips.ClipError, match=r"bomb.png: image header claims more than"):
    clips.load_gray(path)


def test_photo_just_above_the_pixel_bound_is_refused_from_its_header(tmp_path):
  path = tmp_path / "big.png"
  path.write_bytes(png_claiming(10001))
  with pytest.raises(InputError, match=r"big.png: 10001x10001 pixels is more than 100000000"):
    image_file.read_rgb(path)
  with pytest.raises(clips.ClipError, match=r"big.png: 10001x10001 pixels is more than"):
    clips.load_gray(path)


def test_sixteen_bit_grey_photo_is_scaled_not_clipped(tmp_path):
  """convert('RGB') clipped 16-bit grey at 255: a mid-grey 16-bit photo came out white."""
  path = _png(tmp_path, np.array([[0, 32896, 65535]], np.uint16))
  np.testing.assert_array_equal(image_file.read_rgb(path)[0, :, 0], [0, 128, 255])


def test_transparent_photo_is_composited_over_white(tmp_path):
  path = _png(tmp_path, np.array([[[10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8))
  np.testing.assert_array_equal(image_file.read_rgb(path)[0], [[255, 255, 255], [10, 20, 30]])


# ------------------------------------------------------------------------------ annotations


def test_frame_number_of_400_digits_is_a_row_problem(tmp_path):
  """int(float('9' * 400)): OverflowError (float infinity to integer)."""
  path = tmp_path / "CASME2-coding.xlsx"
  write_casme2_xlsx(path, [(1, "EP02_01f", "9" * 400, 59, 86, "happiness")])
  clips_found, problems = A.read_casme2_xlsx(path)
  assert not clips_found and "is not a frame number" in problems[0].message


@pytest.mark.parametrize("encoding", ["utf-16", "cp1252"])
def test_csv_files_that_are_not_utf8_name_the_line(tmp_path, encoding):
  """UnicodeDecodeError escaped both CSV readers."""
  composite, landmarks = tmp_path / "composite.csv", tmp_path / "landmarks.csv"
  composite.write_bytes("dataset,subject,sample,label\ncasme2,sub01,É,1\n".encode(encoding))
  landmarks.write_bytes((",".join(align.LANDMARK_CSV_COLUMNS) + "\nsub01,É,1,2,3,4,5,6\n")
                        .encode(encoding))
  with pytest.raises(A.DataError, match=r"composite.csv, row \d: not UTF-8 text"):
    A.read_composite_list(composite)
  with pytest.raises(align.LandmarkFileError, match=r"landmarks.csv, row \d: not UTF-8 text"):
    align.read_landmarks_csv(landmarks)


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
  path = tmp_path / "composite.csv"
  path.write_bytes("dataset,subject,sample,label\ncasme2,sub01,EP02_01f,1\n".encode("utf-8-sig"))
  entries, problems = A.read_composite_list(path)
  assert [e.sample for e in entries] == ["EP02_01f"] and not problems


def test_missing_composite_list_is_a_data_error(tmp_path):
  """open() raised FileNotFoundError instead of the reader's DataError."""
  with pytest.raises(A.DataError, match=r"missing.csv: file does not exist"):
    A.read_composite_list(tmp_path / "missing.csv")


def test_xlsx_part_claiming_more_bytes_than_the_file_is_refused_before_reading(tmp_path):
  """A flipped bit in a central-directory size made zipfile read (allocate) 512 MiB."""
  path = tmp_path / "sheet.xlsx"
  write_casme2_xlsx(path, [(1, "EP02_01f", 46, 59, 86, "happiness")])
  data = bytearray(path.read_bytes())
  entry = data.rindex(b"PK\x01\x02")  # the last central-directory entry
  data[entry + 20:entry + 24] = struct.pack("<I", 0x2000001b)  # its compressed size
  path.write_bytes(bytes(data))
  with pytest.raises(A.DataError, match=r"sheet.xlsx: .*compressed bytes, past the end"):
    A.read_casme2_xlsx(path)
