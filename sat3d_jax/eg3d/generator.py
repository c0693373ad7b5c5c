"""TriPlaneGenerator as pure functions over the official state dict, and a small facade.

Params are a flat dict {official state-dict name: float32 array} (the non-'io/' keys of the
fixture .npz, or a converted pickle). The architecture comes from the config
{'init_kwargs': ..., 'neural_rendering_resolution': ...} via `architecture.parse_config`.

Pure API (jit/grad with params as an argument, which stay un-donated):
  apply_mapping(params, arch, z, c, truncation_psi, truncation_cutoff) -> ws
  apply_styles(params, arch, ws) -> {layer: [B, dim]}
  apply_planes(params, arch, styles, options, noise_mode, rng) -> [B, 3, 256, 256, 32]
  apply_render(params, arch, planes, styles, c, options, rng) -> {'image', ...}
    = apply_volume_render (ray marching) then apply_superresolution
  apply_synthesis_from_styles(params, arch, styles, c, options, ...) -> {'image', ...}
  apply_synthesis(params, arch, ws, c, options, ...) -> {'image', ...}
  apply_sample(params, arch, coordinates, directions, ws, options, ...) -> {'sigma', 'rgb'}
`Generator` binds params, config and options and offers jitted conveniences over them.
Rendering from styles with the tri-planes computed once (flat or per-layer styles, several
views per face) is rendering.py's, built on these functions.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import pathlib
from typing import Any, Mapping, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax.eg3d import architecture, mapping, renderer, superres, synthesis
from sat3d_jax.eg3d.architecture import Arch
from sat3d_jax.errors import InputError

Params = Mapping[str, jax.Array]
MODCONV_CHOICES = ("nonfused", "fused")
# jax.named_scope of each part, so that a jaxpr's FLOPs (forward and backward) can be split by
# part (launch/benchmarks/flops.py count_jaxpr(..., scopes)).
SCOPES = {"mapping": "eg3d_mapping", "styles": "eg3d_styles", "backbone": "eg3d_backbone",
          "renderer": "eg3d_renderer", "superres": "eg3d_superres"}


@dataclasses.dataclass(frozen=True)
class Options:
  """Execution choices that do not change the maths.

  modconv: 'nonfused' (x * styles -> shared conv -> * dcoefs; fastest on CPU) or 'fused'
    (grouped conv with one group per sample, the official inference path).
  dtype: compute dtype of convolutions, plane sampling and decoder (float32 accumulation;
    params stay float32; mapping, styles, ray marching and sampling stay float32).
  ray_chunk: rays per image rendered at a time (None = all at once).
  """
  modconv: str = "nonfused"
  dtype: Any = jnp.float32
  ray_chunk: Optional[int] = None

  def __post_init__(self):
    if self.modconv not in MODCONV_CHOICES:
      raise InputError(f"modconv must be one of {MODCONV_CHOICES}, got {self.modconv!r}")
    if self.ray_chunk is not None and int(self.ray_chunk) < 1:
      raise InputError(f"ray_chunk must be a positive int or None, got {self.ray_chunk!r}")
    object.__setattr__(self, "dtype", jnp.dtype(self.dtype))


def apply_mapping(params: Params, arch: Arch, z: jax.Array, c: jax.Array,
                  truncation_psi=1.0, truncation_cutoff: Optional[int] = None) -> jax.Array:
  """ws [B, num_ws, w_dim]; see mapping.mapping."""
  with jax.named_scope(SCOPES["mapping"]):
    return mapping.mapping(params, arch, z, c, truncation_psi, truncation_cutoff)


def apply_styles(params: Params, arch: Arch, ws: jax.Array) -> dict[str, jax.Array]:
  """StyleSpace {layer name: [B, dim]} of ws, in the official layer order."""
  with jax.named_scope(SCOPES["styles"]):
    return synthesis.styles_from_ws(params, arch, ws)


def styles_from_flat(flat: jax.Array, arch: Arch) -> dict[str, jax.Array]:
  """{layer: [..., dim]} of flat StyleSpace vectors [..., C] in the official layer order (the
  order of Generator.flatten_styles, toRGB included)."""
  styles, start = {}, 0
  for name, dim in arch.style_layers:
    styles[name] = flat[..., start:start + dim]
    start += dim
  return styles


def _split_rng(rng: Optional[jax.Array]):
  return (None, None, None) if rng is None else tuple(jax.random.split(rng, 3))


def apply_planes(params: Params, arch: Arch, styles: Mapping[str, jax.Array],
                 options: Options = Options(), noise_mode: str = "const",
                 rng: Optional[jax.Array] = None) -> jax.Array:
  """Tri-planes [B, 3, R, R, 32] from the styles (backbone only)."""
  with jax.named_scope(SCOPES["backbone"]):
    return synthesis.backbone_planes(params, arch, styles, noise_mode=noise_mode, key=rng,
                                     fused=options.modconv == "fused", dtype=options.dtype)


def apply_render(params: Params, arch: Arch, planes: jax.Array, styles: Mapping[str, jax.Array],
                 c: jax.Array, options: Options = Options(), rng: Optional[jax.Array] = None,
                 neural_rendering_resolution: Optional[int] = None) -> dict[str, jax.Array]:
  """Renders the camera c [N, 25] from tri-planes [N, 3, R, R, 32] and the styles [N, dim]
  (super-resolution's): everything of synthesis that depends on the camera.

  The backbone depends on the styles only, so several views of one face repeat its planes
  (`jnp.repeat(planes, views, axis=0)`) instead of recomputing them. `rng` is the same key
  apply_synthesis_from_styles takes (its render and super-resolution parts are used here), so
  apply_render(apply_planes(...)) equals apply_synthesis_from_styles bit for bit.
  """
  if c.ndim != 2 or c.shape[1] != 25:
    raise ValueError(f"camera labels c must be [B, 25], got {c.shape}")
  if planes.shape[0] != c.shape[0]:
    raise ValueError(f"planes {planes.shape} and cameras {c.shape} differ in batch size")
  _, k_render, k_sr = _split_rng(rng)
  feature_image, depth_image = apply_volume_render(params, arch, planes, c, options, k_render,
                                                   neural_rendering_resolution)
  image, image_raw = apply_superresolution(params, arch, feature_image, styles, options, k_sr)
  return {"image": image, "image_raw": image_raw, "image_depth": depth_image}


def apply_volume_render(params: Params, arch: Arch, planes: jax.Array, c: jax.Array,
                        options: Options = Options(), key: Optional[jax.Array] = None,
                        neural_rendering_resolution: Optional[int] = None
                        ) -> tuple[jax.Array, jax.Array]:
  """The ray marcher of apply_render: (feature image [N, r, r, 32], depth [N, r, r, 1]) of
  cameras c [N, 25] from tri-planes [N, 3, R, R, 32]; `key` draws the stochastic samples."""
  res = int(neural_rendering_resolution or arch.neural_rendering_resolution)
  c = c.astype(jnp.float32)
  with jax.named_scope(SCOPES["renderer"]):
    return renderer.render(
        params, arch, planes, c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3), res,
        key=key, ray_chunk=options.ray_chunk, dtype=options.dtype)


def apply_superresolution(params: Params, arch: Arch, feature_image: jax.Array,
                          styles: Mapping[str, jax.Array], options: Options = Options(),
                          key: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
  """The super-resolution of apply_render: (image, image_raw) of a feature image."""
  with jax.named_scope(SCOPES["superres"]):
    return superres.superresolution(
        params, arch, feature_image, styles, fused=options.modconv == "fused",
        dtype=options.dtype,
        key=key if arch.render.superresolution_noise_mode == "random" else None)


def apply_synthesis_from_styles(params: Params, arch: Arch, styles: Mapping[str, jax.Array],
                                c: jax.Array, options: Options = Options(),
                                noise_mode: str = "const", rng: Optional[jax.Array] = None,
                                neural_rendering_resolution: Optional[int] = None
                                ) -> dict[str, jax.Array]:
  """Renders the camera c [B, 25] from StyleSpace vectors: apply_planes, then apply_render.

  Returns {'image': [B, H, W, 3], 'image_raw': [B, r, r, 3], 'image_depth': [B, r, r, 1]},
  NHWC float32, images in [-1, 1]. Deterministic when rng is None (noise_mode must then be
  'const' or 'none'); with an rng the renderer draws the official random samples too.
  """
  missing = [name for name, _ in arch.style_layers if name not in styles]
  if missing:
    raise ValueError(f"styles lack {len(missing)} layers, e.g. {missing[:3]}")
  if c.ndim != 2 or c.shape[1] != 25:
    raise ValueError(f"camera labels c must be [B, 25], got {c.shape}")
  k_backbone = _split_rng(rng)[0]
  planes = apply_planes(params, arch, styles, options, noise_mode,
                        k_backbone if noise_mode == "random" else None)
  return apply_render(params, arch, planes, styles, c, options, rng, neural_rendering_resolution)


def apply_synthesis(params: Params, arch: Arch, ws: jax.Array, c: jax.Array,
                    options: Options = Options(), noise_mode: str = "const",
                    rng: Optional[jax.Array] = None,
                    neural_rendering_resolution: Optional[int] = None) -> dict[str, jax.Array]:
  """Official G.synthesis(ws, c): apply_synthesis_from_styles(apply_styles(ws), c)."""
  return apply_synthesis_from_styles(params, arch, apply_styles(params, arch, ws), c, options,
                                     noise_mode, rng, neural_rendering_resolution)


def apply_sample(params: Params, arch: Arch, coordinates: jax.Array, directions: jax.Array,
                 ws: jax.Array, options: Options = Options(), noise_mode: str = "const",
                 rng: Optional[jax.Array] = None) -> dict[str, jax.Array]:
  """Official G.sample_mixed: {'sigma': [B, N, 1], 'rgb': [B, N, 32]} at points [B, N, 3].

  The official decoder ignores the directions; they are accepted for the same signature.
  noise_mode defaults to 'const' (deterministic, as the fixtures); the official sample_mixed
  called without synthesis kwargs uses the backbone default 'random'.
  """
  del directions
  planes = apply_planes(params, arch, apply_styles(params, arch, ws), options, noise_mode, rng)
  sigma, rgb = renderer.run_model(params, arch, planes, coordinates.astype(jnp.float32),
                                  options.dtype)
  return {"sigma": sigma, "rgb": rgb}


def init_params(config: Union[Mapping[str, Any], Arch], key: jax.Array) -> dict[str, jax.Array]:
  """Random params in the official state-dict layout, initialised as the official constructors:
  weights N(0, 1) / lr_multiplier, affine biases 1, other biases 0, const and noise_const
  N(0, 1), noise_strength 0, w_avg 0, resample filters [1,3,3,1]. Pure (jax.eval_shape-able).
  """
  arch = config if isinstance(config, Arch) else architecture.parse_config(config)
  shapes = architecture.param_shapes(arch)
  # One normal draw for all tensors (many small draws make XLA compile for minutes).
  sizes = [int(np.prod(s)) for s in shapes.values()]
  normal = jax.random.normal(key, (sum(sizes),), jnp.float32)
  params, offset = {}, 0
  for (name, shape), size in zip(shapes.items(), sizes):
    draw = normal[offset:offset + size].reshape(shape)
    offset += size
    if name.endswith("resample_filter"):
      value = jnp.asarray(architecture.RESAMPLE_FILTER_2D)
    elif name.endswith(".affine.bias"):
      value = jnp.ones(shape, jnp.float32)
    elif name.endswith((".weight", ".const", ".noise_const")):
      value = draw
      if name.startswith("backbone.mapping.fc"):
        value = value / arch.mapping_lr_multiplier
      elif name.startswith("decoder."):
        value = value / arch.decoder_lr_multiplier
    else:  # biases, noise_strength, w_avg
      value = jnp.zeros(shape, jnp.float32)
    params[name] = value
  return params


def _normalise_config(config: Mapping[str, Any], source: str) -> dict:
  if not isinstance(config, Mapping) or "init_kwargs" not in config:
    raise InputError(f"{source}: config has no 'init_kwargs' (expected a TriPlaneGenerator "
                     "config as the converter or the fixtures write it)")
  return {"init_kwargs": copy.deepcopy(dict(config["init_kwargs"])),
          "neural_rendering_resolution": config.get("neural_rendering_resolution")}


@dataclasses.dataclass(frozen=True, eq=False)
class Generator:
  """A TriPlaneGenerator: params (official state dict, float32), config and options.

  Methods without the `apply_` prefix are jitted conveniences over `self.params`; the
  `apply_*` methods are the pure functions with params as their first argument (bind nothing
  else), for callers that jit/grad themselves and keep params frozen.
  """
  params: Mapping[str, jax.Array] = dataclasses.field(repr=False)
  config: Mapping[str, Any] = dataclasses.field(repr=False)
  options: Options = Options()

  @functools.cached_property
  def arch(self) -> Arch:
    return architecture.parse_config(self.config)

  # --- Architecture facts -------------------------------------------------------------------
  @property
  def z_dim(self) -> int:
    return self.arch.z_dim

  @property
  def c_dim(self) -> int:
    return self.arch.c_dim

  @property
  def w_dim(self) -> int:
    return self.arch.w_dim

  @property
  def num_ws(self) -> int:
    return self.arch.num_ws

  @property
  def img_resolution(self) -> int:
    return self.arch.img_resolution

  @property
  def neural_rendering_resolution(self) -> int:
    return self.arch.neural_rendering_resolution

  @property
  def rendering_kwargs(self) -> Mapping[str, Any]:
    return self.config["init_kwargs"]["rendering_kwargs"]

  # --- StyleSpace -----------------------------------------------------------------------------
  def style_layers_list(self, include_torgb: bool = True) -> list[tuple[str, int]]:
    """[(layer name, dim)] in the official order, optionally without the toRGB layers."""
    return [(l.name, l.style_dim) for l in self.arch.layers
            if include_torgb or l.kind != "torgb"]

  @property
  def style_layers(self) -> list[tuple[str, int]]:
    """[(layer name, dim)] of all modulated layers in the official StyleSpace order."""
    return self.style_layers_list(True)

  def style_channels(self, include_torgb: bool = True) -> int:
    return sum(d for _, d in self.style_layers_list(include_torgb))

  @property
  def num_style_channels(self) -> int:
    """Length of the flat StyleSpace vector (all layers, toRGB included)."""
    return self.style_channels(True)

  def style_slices(self, include_torgb: bool = True) -> dict[str, slice]:
    """{layer name: slice of the flat StyleSpace vector} (see flatten_styles)."""
    out, start = {}, 0
    for name, dim in self.style_layers_list(include_torgb):
      out[name] = slice(start, start + dim)
      start += dim
    return out

  def flatten_styles(self, styles: Mapping[str, jax.Array],
                     include_torgb: bool = True) -> jax.Array:
    """[B, C]: the layers' styles concatenated in the official order."""
    return jnp.concatenate([styles[n] for n, _ in self.style_layers_list(include_torgb)], -1)

  def unflatten_styles(self, flat: jax.Array, include_torgb: bool = True,
                       base: Optional[Mapping[str, jax.Array]] = None) -> dict[str, jax.Array]:
    """Inverse of flatten_styles. Without toRGB, the toRGB styles are taken from `base`."""
    expected = self.style_channels(include_torgb)
    if flat.shape[-1] != expected:
      raise ValueError(f"flat styles have {flat.shape[-1]} channels, expected {expected}")
    if not include_torgb and base is None:
      raise ValueError("unflatten_styles(include_torgb=False) needs `base` styles for toRGB")
    slices = self.style_slices(include_torgb)
    out = {}
    for name, _ in self.style_layers:
      out[name] = flat[..., slices[name]] if name in slices else base[name]
    return out

  # --- Pure functions (params first) --------------------------------------------------------
  def apply_mapping(self, params, z, c, truncation_psi=1.0, truncation_cutoff=None):
    return apply_mapping(params, self.arch, z, c, truncation_psi, truncation_cutoff)

  def apply_styles(self, params, ws):
    return apply_styles(params, self.arch, ws)

  def apply_planes(self, params, styles, noise_mode="const", rng=None):
    return apply_planes(params, self.arch, styles, self.options, noise_mode, rng)

  def apply_render(self, params, planes, styles, c, rng=None, neural_rendering_resolution=None):
    return apply_render(params, self.arch, planes, styles, c, self.options, rng,
                        neural_rendering_resolution)

  def apply_synthesis(self, params, ws, c, noise_mode="const", rng=None,
                      neural_rendering_resolution=None):
    return apply_synthesis(params, self.arch, ws, c, self.options, noise_mode, rng,
                           neural_rendering_resolution)

  def apply_synthesis_from_styles(self, params, styles, c, noise_mode="const", rng=None,
                                  neural_rendering_resolution=None):
    return apply_synthesis_from_styles(params, self.arch, styles, c, self.options, noise_mode,
                                       rng, neural_rendering_resolution)

  def apply_sample(self, params, coordinates, directions, ws, noise_mode="const", rng=None):
    return apply_sample(params, self.arch, coordinates, directions, ws, self.options,
                        noise_mode, rng)

  # --- Jitted conveniences over self.params -------------------------------------------------
  # They call module-level jitted functions with the (hashable) arch and options as static
  # arguments, so generators of the same architecture share compiled code. Those from styles
  # (planes, render, synthesis_from_styles) are rendering.py's, shared with every other caller.
  def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None) -> jax.Array:
    """ws [B, num_ws, w_dim] (official G.mapping; generation scripts use cutoff 14)."""
    if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
      truncation_psi = None  # the official code skips the lerp for psi == 1
    return _jit_mapping(self.params, self.arch, z, c, truncation_psi, truncation_cutoff)

  def styles(self, ws) -> dict[str, jax.Array]:
    """StyleSpace {layer: [B, dim]} in the official order."""
    out = _jit_styles(self.params, self.arch, ws)
    return {name: out[name] for name, _ in self.style_layers}

  def synthesis(self, ws, c, noise_mode="const", rng=None, neural_rendering_resolution=None):
    """{'image', 'image_raw', 'image_depth'} (NHWC) for ws and rendering camera c [B, 25]."""
    return _jit_synthesis(self.params, self.arch, ws, c, self.options, noise_mode, rng,
                          neural_rendering_resolution)

  def synthesis_from_styles(self, styles, c, noise_mode="const", rng=None,
                            neural_rendering_resolution=None):
    """As synthesis, from (possibly edited) StyleSpace vectors."""
    from sat3d_jax.eg3d import rendering  # it builds on this module
    return rendering.jit_synthesize(self.params, self.arch, dict(styles), c, self.options,
                                    noise_mode, rng, neural_rendering_resolution)

  def planes(self, styles, noise_mode="const", rng=None) -> jax.Array:
    """Tri-planes [B, 3, R, R, 32] from StyleSpace vectors (the camera-independent part)."""
    from sat3d_jax.eg3d import rendering  # it builds on this module
    return rendering.jit_planes(self.params, self.arch, dict(styles), self.options, noise_mode,
                                rng)

  def render(self, planes, styles, c, rng=None, neural_rendering_resolution=None):
    """As synthesis_from_styles, from planes computed once (a camera move renders only)."""
    from sat3d_jax.eg3d import rendering  # it builds on this module
    return rendering.jit_render(self.params, self.arch, planes, dict(styles), c, self.options,
                                rng, neural_rendering_resolution)

  def sample(self, coordinates, directions, ws, noise_mode="const", rng=None):
    """{'sigma': [B, N, 1], 'rgb': [B, N, 32]} at points [B, N, 3] (official sample_mixed)."""
    return _jit_sample(self.params, self.arch, coordinates, directions, ws, self.options,
                       noise_mode, rng)

  def with_options(self, **changes) -> "Generator":
    """The same params and config with other Options (modconv, dtype, ray_chunk)."""
    return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes))


_STATIC = ("arch", "options", "noise_mode", "neural_rendering_resolution")
_jit_mapping = jax.jit(apply_mapping, static_argnames=("arch", "truncation_cutoff"))
_jit_styles = jax.jit(apply_styles, static_argnames=("arch",))
_jit_synthesis = jax.jit(apply_synthesis, static_argnames=_STATIC)
_jit_sample = jax.jit(apply_sample, static_argnames=("arch", "options", "noise_mode"))


def _make(params: Mapping[str, Any], config: Mapping[str, Any], source: str,
          options: Options) -> Generator:
  config = _normalise_config(config, source)
  arch = architecture.parse_config(config)
  architecture.validate_params(arch, params, source)
  bad = [k for k, v in params.items()
         if not np.issubdtype(np.asarray(v).dtype, np.floating)]
  if bad:
    raise InputError(f"{source}: non-float tensors {bad[:3]}")
  params = {k: jnp.asarray(np.asarray(params[k], np.float32))
            for k in architecture.param_shapes(arch)}
  return Generator(params=params, config=config, options=options)


def from_state_dict(state_dict: Mapping[str, Any], config: Mapping[str, Any], *,
                    source: str = "<state dict>", modconv: str = "nonfused",
                    dtype=jnp.float32, ray_chunk: Optional[int] = None) -> Generator:
  """A Generator from an in-memory state dict and config (keys under 'io/' are ignored)."""
  state_dict = {k: v for k, v in state_dict.items() if not k.startswith("io/")}
  return _make(state_dict, config, source, Options(modconv, dtype, ray_chunk))


def load_generator(path: Union[str, pathlib.Path], *, modconv: str = "nonfused",
                   dtype=jnp.float32, ray_chunk: Optional[int] = None) -> Generator:
  """Loads a TriPlaneGenerator from
  (a) a directory with params.npz + config.json (launch/convert_eg3d.py output),
  (b) an official network pickle (.pkl; read without torch or code execution), or
  (c) a state-dict .npz with its .json config beside it (the fixtures' form; 'io/' keys ignored).
  """
  path = pathlib.Path(path)
  options = Options(modconv, dtype, ray_chunk)
  if path.is_dir():
    params_file, config_file = path / "params.npz", path / "config.json"
    for f in (params_file, config_file):
      if not f.is_file():
        raise FileNotFoundError(f"{path}: not a converted generator directory (no {f.name})")
    config = _read_json(config_file)
    return _make(_scalars_as_written(_read_npz(params_file), config), config, str(path),
                 options)
  if not path.is_file():
    raise FileNotFoundError(f"no generator at {path}")
  if path.suffix == ".pkl":
    from sat3d_jax.eg3d.convert import read_network_pickle  # lazy: only the .pkl path needs it
    state_dict, config = read_network_pickle(path)
    return _make(state_dict, config, str(path), options)
  if path.suffix == ".npz":
    config_file = path.with_suffix(".json")
    if not config_file.is_file():
      raise FileNotFoundError(f"{path}: state-dict .npz needs its config {config_file.name} "
                              "beside it")
    return _make(_read_npz(path), _read_json(config_file), str(path), options)
  raise InputError(f"{path}: expected a directory, a .pkl or a .npz")


def _scalars_as_written(params: dict[str, np.ndarray], config: Mapping[str, Any]
                        ) -> dict[str, np.ndarray]:
  """Converter version 1 (convert.CONVERTER_VERSION) wrote 0-d tensors with shape (1,): those
  of a directory it wrote are read back as the scalars they are."""
  if config.get("converter", {}).get("version") != 1 or "init_kwargs" not in config:
    return params
  shapes = architecture.param_shapes(architecture.parse_config(config))
  return {k: v.reshape(()) if shapes.get(k) == () and v.shape == (1,) else v
          for k, v in params.items()}


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as npz:
    return {k: npz[k] for k in npz.files if not k.startswith("io/")}


def _read_json(path: pathlib.Path) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON ({e})") from e


def generator_from_spec(spec: str, *, seed: int = 0, modconv: str = "nonfused",
                        dtype=jnp.float32, ray_chunk: Optional[int] = None,
                        abstract: bool = False) -> Generator:
  """The generator a `--generator` flag or `config.generator` names: `preset:NAME` (random
  weights from `seed`) or a path `load_generator` reads. An unknown preset is an InputError
  listing the known ones; a missing path a FileNotFoundError. `abstract` (presets only):
  params as jax.ShapeDtypeStruct, for lowering without weights."""
  from sat3d_jax.eg3d import presets
  options = dict(modconv=modconv, dtype=dtype, ray_chunk=ray_chunk)
  if spec.startswith("preset:"):
    name = spec[len("preset:"):]
    if name not in presets.PRESET_NAMES:
      raise InputError(f"unknown EG3D preset {name!r}; known: {', '.join(presets.PRESET_NAMES)}")
    return random_generator(name, seed=seed, abstract=abstract, **options)
  if abstract:
    raise InputError(f"abstract generators come from presets only, got {spec!r}")
  return load_generator(spec, **options)


def random_generator(preset_or_config: Union[str, Mapping[str, Any]], seed: int = 0, *,
                     modconv: str = "nonfused", dtype=jnp.float32,
                     ray_chunk: Optional[int] = None, abstract: bool = False) -> Generator:
  """A Generator with random params (init_params) for a preset name or a config dict;
  `abstract`: their shapes only (jax.ShapeDtypeStruct), nothing computed."""
  from sat3d_jax.eg3d import presets
  if isinstance(preset_or_config, str):
    config = presets.get_preset(preset_or_config)
  else:
    config = preset_or_config
  config = _normalise_config(config, f"random_generator({preset_or_config!r:.60})")
  init = functools.partial(init_params, config)
  key = jax.random.PRNGKey(seed)
  params = jax.eval_shape(init, key) if abstract else jax.jit(init)(key)
  return Generator(params=params, config=config, options=Options(modconv, dtype, ray_chunk))
