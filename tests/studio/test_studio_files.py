"""The studio's library pieces without a browser: mask and style files, the editor's renders
from tri-planes computed once, per-attribute strengths, shapes and the upload checks."""
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from launch.studio_app import uploads
from sat3d_jax import mask_file, shapes, style_file
from sat3d_jax.editor import Editor
from sat3d_jax.eg3d import random_generator
from sat3d_jax.errors import InputError
from sat3d_jax.fingerprint import generator_fingerprint

ATTRIBUTES = ("hairstyle", "beard", "smile")


@pytest.fixture(scope="module")
def editor():
  """An Editor on the micro generator with a random mask (toRGB channels not editable)."""
  gen = random_generator("micro", seed=3)
  width = gen.style_channels(False)
  logits = np.random.RandomState(0).randn(len(ATTRIBUTES) + 1, width).astype(np.float32)
  mask = mask_file.MaskFile(ATTRIBUTES, logits, 0.5, False, "preset:micro", 3,
                            generator_fingerprint(gen), 0.7, 14, 11)
  return Editor(gen, mask, "test")


def test_mask_file_round_trip_and_refusals(editor, tmp_path):
  path = tmp_path / "mask.npz"
  mask_file.write_mask_file(path, editor.mask)
  back = mask_file.read_mask_file(path)
  np.testing.assert_array_equal(back.mask_logits, editor.mask.mask_logits)
  assert dataclasses.replace(back, mask_logits=None) == \
      dataclasses.replace(editor.mask, mask_logits=None)
  # The file names its generator (a preset with its seed): it loads on its own.
  again = Editor.from_mask_file(path)
  np.testing.assert_array_equal(again.probabilities(), editor.probabilities())
  other = random_generator("micro", seed=4)
  with pytest.raises(InputError, match="learned on generator eg3d-"):
    Editor.from_mask_file(path, other)
  data = dict(np.load(path))
  np.savez(tmp_path / "newer.npz", **{**data, "format_version": np.int32(2)})
  with pytest.raises(InputError, match="version 2 is newer"):
    mask_file.read_mask_file(tmp_path / "newer.npz")
  np.savez(tmp_path / "bad.npz", **{**data, "mask_logits": np.zeros((2, 5), np.float32)})
  with pytest.raises(InputError, match=r"A = 3 attributes"):
    mask_file.read_mask_file(tmp_path / "bad.npz")
  (tmp_path / "text.npz").write_text("not a zip")
  with pytest.raises(InputError, match="not a readable mask"):
    mask_file.read_mask_file(tmp_path / "text.npz")


def test_fingerprint_follows_the_weights(editor):
  gen = editor.generator
  assert generator_fingerprint(random_generator("micro", seed=3)) == editor.fingerprint
  changed = dict(gen.params)
  name = sorted(changed)[0]
  changed[name] = changed[name] + 1e-3
  assert generator_fingerprint(dataclasses.replace(gen, params=changed)) != editor.fingerprint


def test_strengths_per_attribute_against_numpy(editor):
  src, ref = editor.seed_face(1), editor.seed_face(2)
  result = editor.edit(src, ref, {"hairstyle": 1.5, "smile": -0.5})
  logits = editor.mask.mask_logits.astype(np.float64) / editor.mask.temperature
  p = np.exp(logits - logits.max(0))
  p /= p.sum(0)
  m = 1.5 * p[0] + (-0.5) * p[2]
  full = np.zeros(editor.generator.num_style_channels)
  full[editor.editable] = m
  expected = src.styles[0] + full * (ref.styles[0] - src.styles[0])
  np.testing.assert_allclose(result.styles[0], expected, rtol=1e-5, atol=1e-5)
  # toRGB channels are never edited by this mask.
  torgb = np.setdiff1d(np.arange(editor.generator.num_style_channels), editor.editable)
  np.testing.assert_array_equal(result.styles[0, torgb], src.styles[0, torgb])
  with pytest.raises(InputError, match="unknown attribute 'hair'"):
    editor.edit(src, ref, {"hair": 1.0})


def test_planes_once_equals_the_full_generator(editor):
  """Three faces prepared once and rendered from two cameras equal the full synthesis of each
  (face, camera), as the official G.synthesis computes it from the same styles."""
  gen = editor.generator
  faces = [editor.seed_face(s) for s in (1, 2, 5)]
  cams = editor.cameras([[0.3, -0.1], [-0.2, 0.15]])
  images = editor.render_faces(faces, cams)
  flats = np.repeat(np.concatenate([f.styles for f in faces]), 2, 0)
  full = gen.synthesis_from_styles(gen.unflatten_styles(jnp.asarray(flats)),
                                   jnp.asarray(np.tile(cams, (3, 1))))["image"]
  np.testing.assert_allclose(images.reshape(np.shape(full)), np.asarray(full), atol=2e-5)


def test_style_file_is_a_source_again(editor, tmp_path):
  src = editor.seed_face(7)
  path = tmp_path / "styles.npz"
  style_file.write_style_file(path, np.concatenate([src.styles, src.styles * 2]),
                              editor.generator.style_layers, editor.fingerprint, ["a", "b"])
  again = editor.face(str(path), 1)
  np.testing.assert_array_equal(again.styles, src.styles * 2)
  style_file.write_style_file(tmp_path / "other.npz", src.styles,
                              editor.generator.style_layers, "eg3d-0000000000000000", ["a"])
  with pytest.raises(InputError, match="made with generator eg3d-0000000000000000"):
    editor.face(str(tmp_path / "other.npz"))
  with pytest.raises(InputError, match="row 2 out of range"):
    editor.face(str(path), 2)


def test_grid_follows_the_official_create_samples():
  """The official create_samples order (x slowest, z fastest; origin -L/2, voxel L / (N - 1)),
  written out with integer division."""
  n, length = 5, 1.6
  i = np.arange(n ** 3)
  official = np.stack([(i // n // n) % n, (i // n) % n, i % n], -1) * (length / (n - 1)) \
      - length / 2
  np.testing.assert_allclose(shapes.grid_points(n, length), official, atol=1e-6)


def test_marching_cubes_finds_a_sphere(tmp_path):
  """An analytic density (10 on a sphere of radius 0.3) gives a mesh on that sphere; the PLY
  round-trips."""
  n, length = 48, 1.0
  points = shapes.grid_points(n, length)
  sigma = (20.0 - 10.0 * np.linalg.norm(points, axis=-1) / 0.3).reshape(n, n, n)
  mesh = shapes.extract_mesh(sigma, length)
  assert mesh.level == shapes.OFFICIAL_LEVEL
  radius = np.linalg.norm(mesh.vertices, axis=-1)
  assert np.abs(radius - 0.3).max() < 0.01
  shapes.write_ply(tmp_path / "s.ply", mesh)
  back = shapes.read_ply(tmp_path / "s.ply")
  np.testing.assert_array_equal(back.vertices, mesh.vertices)
  np.testing.assert_array_equal(back.faces, mesh.faces)


def test_face_mesh_of_the_micro_generator(editor):
  face = editor.seed_face(1)
  planes = editor.planes(face.params, face.styles)
  mesh = shapes.face_mesh(editor.generator, face.params, planes, 24)
  assert len(mesh.faces) > 0 and np.all(np.abs(mesh.vertices) <= 0.5 + 1e-5)


def test_uploads_refuse_what_is_not_an_8bit_photo(tmp_path):
  good = tmp_path / "good.png"
  Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(good)
  assert uploads.read_photo(good, 10_000).shape == (8, 8, 3)
  (tmp_path / "text.png").write_text("hello")
  Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "deep.png")
  Image.new("CMYK", (8, 8)).save(tmp_path / "print.jpg")
  Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)).save(
      tmp_path / "full.png")
  (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "old.bmp")
  for name, message in (("text.png", "not a readable image"), ("deep.png", "16-bit"),
                        ("print.jpg", "CMYK"), ("cut.png", "not a readable image"),
                        ("old.bmp", "a BMP image"), ("full.png", "more than the studio's limit")):
    with pytest.raises(InputError, match=message):
      uploads.read_photo(tmp_path / name, 10_000 if name != "full.png" else 1_000)


def test_studio_engine_refuses_a_latent_of_another_generator(editor, tmp_path):
  """A latent inverted with another generator (14 ws, FFHQ-512) in the studio: a message naming
  both shapes; the session keeps its last good render."""
  from launch.studio_app import engine
  from sat3d_jax import latent_file
  studio = engine.Studio(editor, str(tmp_path / "out"), frames=0)
  session = studio.new_session()
  other = tmp_path / "ffhq512.npz"
  latent_file.write_latent_file(other, np.zeros((1, 14, 512), np.float32))
  with pytest.raises(InputError, match=r"\(num_ws, w_dim\) = \(14, 512\)"):
    studio.render(session, engine.Pick("file", other), engine.Pick("seed", 2),
                  {"hairstyle": 1.0}, None, 0.0, 0.0)
  assert session.faces == [] and session.key is None
  with pytest.raises(InputError, match="render a face first"):
    studio.grid_png(session)


def test_mask_by_layer_adds_up_to_the_mask(editor):
  """The plot's matrix: per attribute, the layers' sums are the attribute's whole mass, and each
  entry is the sum of P over that layer's editable channels (toRGB layers absent here)."""
  names, channels = editor.mask_by_layer()
  p = editor.probabilities()
  assert channels.shape == (len(ATTRIBUTES), len(names))
  assert not any(n.endswith(".torgb") for n in names)
  np.testing.assert_allclose(channels.sum(1), p[:-1].sum(1), rtol=1e-5)
  first = editor.generator.style_slices(True)[names[0]]
  np.testing.assert_allclose(channels[:, 0], p[:-1, :first.stop - first.start].sum(1),
                             rtol=1e-5)
