"""The JAX EG3D port against the official PyTorch reference outputs (tests/fixtures/eg3d).

Each fixture is run once through one jitted function (module-scoped); the .pkl path reuses the
compiled code because the architecture (a static argument) is equal.
"""
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sat3d_jax import eg3d
from sat3d_jax.eg3d import architecture, renderer

FIXTURES = ("eg3d_tiny128", "eg3d_ffhq512_small", "eg3d_cars128_tiny")
# Each fixture is a preset with smaller widths and z (tests/fixtures/eg3d/README.md).
_SMALL = {"z_dim": 64, "channel_base": 512, "channel_max": 16}
PRESET_OF_FIXTURE = {
    "eg3d_tiny128": ("tiny128", _SMALL),
    "eg3d_ffhq512_small": ("ffhq512_small", {**_SMALL, "mapping_kwargs": {"num_layers": 1}}),
    "eg3d_cars128_tiny": ("cars128_tiny", {**_SMALL, "mapping_kwargs": {"num_layers": 1}}),
}
TOL = 1e-4  # fixtures/eg3d/README.md: what a correct fp32 port reaches on the CPU


@functools.partial(jax.jit, static_argnames=("arch", "options"))
def _run_all(params, arch, options, z, c, ws, coordinates, directions):
  """Every quantity the fixtures record, from the public pure functions."""
  styles = eg3d.apply_styles(params, arch, ws)
  out = eg3d.apply_synthesis_from_styles(params, arch, styles, c, options)
  origins, dirs = renderer.ray_sampler(c[:, :16].reshape(-1, 4, 4), c[:, 16:].reshape(-1, 3, 3),
                                       arch.neural_rendering_resolution)
  return dict(
      ws=eg3d.apply_mapping(params, arch, z, c, 0.7, 14),
      ws_psi1=eg3d.apply_mapping(params, arch, z, c),
      styles=styles,
      planes=eg3d.apply_planes(params, arch, styles, options),
      ray_origins=origins, ray_directions=dirs,
      sample=eg3d.apply_sample(params, arch, coordinates, directions, ws, options),
      **out)


def _nchw(x):
  return np.asarray(x).transpose(0, 3, 1, 2)


def _compare(ref, got, arch):
  """{fixture key: max abs error} for every 'io/' output array."""
  b = got["planes"].shape[0]
  planes = np.asarray(got["planes"]).transpose(0, 1, 4, 2, 3)  # [B, 3, 32, H, W]
  planes = planes.reshape(b, 96, *planes.shape[-2:])[:, :, ::8, ::8]
  mine = {
      "io/ws": got["ws"], "io/ws_psi1": got["ws_psi1"], "io/planes_sub8": planes,
      "io/image": _nchw(got["image"]), "io/image_raw": _nchw(got["image_raw"]),
      "io/image_depth": _nchw(got["image_depth"]),
      "io/ray_origins": got["ray_origins"], "io/ray_directions": got["ray_directions"],
      "io/sample_sigma": got["sample"]["sigma"], "io/sample_rgb": got["sample"]["rgb"],
  }
  for name, _ in arch.style_layers:
    mine[f"io/styles/{name}"] = got["styles"][name]
  expected_keys = {k for k in ref if k.startswith("io/")} - {
      "io/z", "io/c", "io/sample_coordinates", "io/sample_directions"}
  assert set(mine) == expected_keys
  errors = {}
  for k, v in mine.items():
    v = np.asarray(v)
    assert v.shape == ref[k].shape, k
    errors[k] = float(np.max(np.abs(v - ref[k])))
  return errors


def _inputs(ref):
  return tuple(jnp.asarray(ref[k]) for k in ("io/z", "io/c", "io/ws", "io/sample_coordinates",
                                             "io/sample_directions"))


@pytest.fixture(scope="module", params=FIXTURES)
def fixture_run(request, eg3d_fixture_dir):
  name = request.param
  with np.load(eg3d_fixture_dir / f"{name}.npz") as npz:
    ref = {k: npz[k] for k in npz.files}
  G = eg3d.load_generator(eg3d_fixture_dir / f"{name}.npz")
  got = jax.device_get(_run_all(G.params, G.arch, G.options, *_inputs(ref)))
  return dict(name=name, dir=eg3d_fixture_dir, ref=ref, G=G, got=got)


def test_npz_matches_reference(fixture_run):
  errors = _compare(fixture_run["ref"], fixture_run["got"], fixture_run["G"].arch)
  worst = max(errors, key=errors.get)
  print(f"{fixture_run['name']}: worst {worst} {errors[worst]:.2e}")
  assert {k: e for k, e in errors.items() if not e <= TOL} == {}


def test_pkl_matches_reference(fixture_run):
  """The official-pickle path (sat3d_jax.eg3d.convert.read_network_pickle) gives the same."""
  name, G_npz = fixture_run["name"], fixture_run["G"]
  G = eg3d.load_generator(fixture_run["dir"] / f"{name}.pkl")
  assert G.arch == G_npz.arch
  assert list(G.params) == list(G_npz.params)
  got = jax.device_get(_run_all(G.params, G.arch, G.options, *_inputs(fixture_run["ref"])))
  errors = _compare(fixture_run["ref"], got, G.arch)
  assert {k: e for k, e in errors.items() if not e <= TOL} == {}


def test_layout_and_config(fixture_run):
  """State-dict names/shapes/order, preset config (with the fixture's sizes) and style layer list
  match the fixture."""
  ref, G = fixture_run["ref"], fixture_run["G"]
  state = [k for k in ref if not k.startswith("io/")]
  shapes = architecture.param_shapes(G.arch)
  assert list(shapes) == state
  assert all(shapes[k] == ref[k].shape for k in state)
  meta = json.loads((fixture_run["dir"] / f"{fixture_run['name']}.json").read_text())
  name, overrides = PRESET_OF_FIXTURE[fixture_run["name"]]
  preset = eg3d.get_preset(name)
  kwargs = preset["init_kwargs"]
  kwargs.update(overrides)
  kwargs["sr_kwargs"].update(channel_base=kwargs["channel_base"],
                             channel_max=kwargs["channel_max"])
  assert kwargs == meta["init_kwargs"]
  assert preset["neural_rendering_resolution"] == meta["neural_rendering_resolution"]
  assert G.style_layers == [(s["name"], s["dim"]) for s in meta["style_layers"]]
  assert list(G.styles(jnp.asarray(ref["io/ws"]))) == [s["name"] for s in meta["style_layers"]]


def test_cameras_reproduce_fixture_labels(fixture_run):
  meta = json.loads((fixture_run["dir"] / f"{fixture_run['name']}.json").read_text())
  cams = meta["cameras"]
  labels = eg3d.orbit_labels(cams["yaws"], cams["pitches"], cams["pivot"], cams["radius"],
                             cams["fov_deg"])
  np.testing.assert_allclose(np.asarray(labels), fixture_run["ref"]["io/c"], atol=2e-6)


def test_fov_to_intrinsics():
  # eg3d.md: FOV_to_intrinsics(18.837 deg) = 4.26339.
  k = np.asarray(eg3d.fov_to_intrinsics(18.837))
  np.testing.assert_allclose(k, [[4.26339, 0, 0.5], [0, 4.26339, 0.5], [0, 0, 1]], atol=1e-5)
  assert eg3d.fov_to_intrinsics(jnp.asarray([18.837, 30.0])).shape == (2, 3, 3)


@pytest.fixture(scope="module")
def tiny(eg3d_fixture_dir):
  with np.load(eg3d_fixture_dir / "eg3d_tiny128.npz") as npz:
    ref = {k: npz[k] for k in npz.files}
  return ref, eg3d.load_generator(eg3d_fixture_dir / "eg3d_tiny128.npz")


def test_fused_modconv_matches_reference_and_nonfused(tiny):
  ref, G = tiny
  Gf = G.with_options(modconv="fused")
  assert Gf.options.modconv == "fused" and G.options.modconv == "nonfused"
  fused = jax.device_get(_run_all(Gf.params, Gf.arch, Gf.options, *_inputs(ref)))
  errors = _compare(ref, fused, Gf.arch)
  assert {k: e for k, e in errors.items() if not e <= TOL} == {}
  nonfused = jax.device_get(_run_all(G.params, G.arch, G.options, *_inputs(ref)))
  for k in ("image", "image_raw", "image_depth", "planes"):
    np.testing.assert_allclose(fused[k], nonfused[k], atol=2e-5, rtol=0)


def test_ray_chunks_match_unchunked(tiny):
  """Chunked rendering (a chunk size not dividing the ray count) equals one pass, with and
  without rng."""
  ref, G = tiny
  arch = G.arch
  base = jax.device_get(_run_all(G.params, arch, G.options, *_inputs(ref)))  # unchunked, det.
  c = jnp.asarray(ref["io/c"])
  res = arch.neural_rendering_resolution  # 32 -> 1024 rays per image

  @jax.jit
  def renders(params, planes, c, key):
    run = functools.partial(renderer.render, params, arch, planes, c[:, :16].reshape(-1, 4, 4),
                            c[:, 16:].reshape(-1, 3, 3), res)
    return run(ray_chunk=300), run(key=key), run(key=key, ray_chunk=300)

  (f_det, d_det), (f1, d1), (f2, d2) = renders(G.params, jnp.asarray(base["planes"]), c,
                                               jax.random.PRNGKey(0))
  np.testing.assert_allclose(f_det[..., :3], base["image_raw"], atol=1e-6, rtol=0)
  np.testing.assert_allclose(d_det, base["image_depth"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(f2, f1, atol=1e-6, rtol=0)
  np.testing.assert_allclose(d2, d1, atol=1e-5, rtol=0)
  assert np.abs(np.asarray(f1) - np.asarray(f_det)).max() > 1e-3  # the rng is used


def _psnr(a, b):
  """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
  mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
  return 10 * math.log10(4.0 / mse)


def test_bfloat16_compute_psnr(tiny):
  """bf16 compute (float32 params and accumulation) stays close to the float32 reference; also
  exercises the Generator's synthesis_from_styles and sample conveniences."""
  ref, G = tiny
  Gb = G.with_options(dtype=jnp.bfloat16)
  ws = jnp.asarray(ref["io/ws"])
  out = Gb.synthesis_from_styles(Gb.styles(ws), jnp.asarray(ref["io/c"]))
  assert out["image"].dtype == jnp.float32
  psnr = _psnr(_nchw(out["image"]), ref["io/image"])
  psnr_raw = _psnr(_nchw(out["image_raw"]), ref["io/image_raw"])
  sample = Gb.sample(jnp.asarray(ref["io/sample_coordinates"]),
                     jnp.asarray(ref["io/sample_directions"]), ws)
  sigma_err = float(np.abs(np.asarray(sample["sigma"]) - ref["io/sample_sigma"]).max())
  rgb_err = float(np.abs(np.asarray(sample["rgb"]) - ref["io/sample_rgb"]).max())
  print(f"bf16 vs fp32 reference (tiny128): image {psnr:.1f} dB, image_raw {psnr_raw:.1f} dB, "
        f"sample sigma/rgb max err {sigma_err:.1e}/{rgb_err:.1e}")
  assert psnr > 25 and psnr_raw > 25
  assert sigma_err < 0.1 and rgb_err < 0.05


def test_grad_wrt_styles_is_finite():
  G = eg3d.random_generator("micro", seed=1)
  key_z, key_w = jax.random.split(jax.random.PRNGKey(0))
  c = eg3d.orbit_labels([0.0, 0.3], [0.0, -0.1], [0, 0, 0.2], 2.7)
  ws = G.mapping(jax.random.normal(key_z, (2, G.z_dim)), c, 0.7, 14)
  flat = G.flatten_styles(G.styles(ws))
  assert flat.shape == (2, G.num_style_channels)
  target = jax.random.uniform(key_w, (2, G.img_resolution, G.img_resolution, 3), minval=-1)

  def loss(flat):
    out = G.apply_synthesis_from_styles(G.params, G.unflatten_styles(flat), c)
    return jnp.mean((out["image"] - target) ** 2) + jnp.mean(out["image_depth"])

  value, grad = jax.jit(jax.value_and_grad(loss))(flat)
  assert np.isfinite(float(value))
  grad = np.asarray(grad)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  # toRGB-free flattening round-trips with the toRGB styles taken from `base`.
  styles = G.styles(ws)
  partial = G.flatten_styles(styles, include_torgb=False)
  back = G.unflatten_styles(partial, include_torgb=False, base=styles)
  assert all(np.array_equal(back[k], styles[k]) for k in styles)


def test_ffhq512_stylespace_from_shapes_only():
  """eg3d.md: FFHQ-512 has 176 tensors, 30.66 M parameters, 26 style layers / 9,760 channels
  (6,432 without toRGB; backbone 20 layers, 8,704 channels). Nothing is allocated."""
  config = eg3d.get_preset("ffhq512")
  arch = eg3d.parse_config(config)
  shapes = jax.eval_shape(functools.partial(eg3d.init_params, config), jax.random.PRNGKey(0))
  assert len(shapes) == 176
  n_params = sum(math.prod(s.shape) for k, s in shapes.items() if not architecture.is_buffer(k))
  assert round(n_params / 1e6, 2) == 30.66
  ws = jax.ShapeDtypeStruct((1, arch.num_ws, arch.w_dim), jnp.float32)
  styles = jax.eval_shape(lambda p, w: eg3d.apply_styles(p, arch, w), shapes, ws)
  G = eg3d.Generator(params=shapes, config=config)
  assert len(styles) == len(G.style_layers) == 26
  assert sum(s.shape[1] for s in styles.values()) == G.num_style_channels == 9760
  assert G.style_channels(include_torgb=False) == 6432
  backbone = [d for n, d in G.style_layers if n.startswith("backbone.")]
  assert (len(backbone), sum(backbone)) == (20, 8704)
  assert eg3d.parse_config(eg3d.get_preset("shapenetcars128")).num_ws == 14


def test_bad_inputs_are_named(tmp_path, eg3d_fixture_dir):
  with pytest.raises(FileNotFoundError, match="nothing.npz"):
    eg3d.load_generator(tmp_path / "nothing.npz")
  with np.load(eg3d_fixture_dir / "eg3d_tiny128.npz") as npz:
    state = {k: npz[k] for k in npz.files if not k.startswith("io/")}
  state["decoder.net.0.weight"] = state["decoder.net.0.weight"][:, :16]
  np.savez(tmp_path / "broken.npz", **state)
  (tmp_path / "broken.json").write_text(
      (eg3d_fixture_dir / "eg3d_tiny128.json").read_text())
  with pytest.raises(ValueError, match=r"broken\.npz.*decoder\.net\.0\.weight"):
    eg3d.load_generator(tmp_path / "broken.npz")
  with pytest.raises(FileNotFoundError, match="broken.json"):
    (tmp_path / "broken.json").unlink()
    eg3d.load_generator(tmp_path / "broken.npz")
  with pytest.raises(ValueError, match="modconv"):
    eg3d.Options(modconv="grouped")
  with pytest.raises(ValueError, match="unknown EG3D preset"):
    eg3d.random_generator("ffhq1024")


def test_render_from_planes_equals_synthesis(tiny):
  """Planes computed once and rendered from several cameras give, view for view, exactly what
  the whole generator gives per view (the camera-independent backbone is not repeated)."""
  ref, G = tiny
  styles = G.styles(jnp.asarray(ref["io/ws"][:1]))
  cams = eg3d.orbit_labels([0.0, 0.4, -0.3], [0.0, 0.1, -0.2],
                           G.rendering_kwargs["avg_camera_pivot"],
                           G.rendering_kwargs["avg_camera_radius"])
  planes = G.planes(styles)
  views = G.render(jnp.repeat(planes, 3, axis=0),
                   {k: jnp.repeat(v, 3, axis=0) for k, v in styles.items()}, cams)
  for i in range(3):
    whole = G.synthesis_from_styles(styles, cams[i:i + 1])
    for key in ("image", "image_raw", "image_depth"):
      np.testing.assert_allclose(views[key][i], whole[key][0], atol=1e-5, rtol=0)
