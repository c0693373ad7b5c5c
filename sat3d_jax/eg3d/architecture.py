"""The static architecture of a TriPlaneGenerator, derived from its config.

A config is a dict {'init_kwargs': the official constructor kwargs (rendering_kwargs inside),
'neural_rendering_resolution': int}. `parse_config` turns it into a hashable `Arch` (usable as a
static jit argument) that lists every layer, its state-dict name, its StyleSpace slot and the w it
reads. `param_shapes(arch)` gives the exact official state-dict layout.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import numpy as np

from sat3d_jax.eg3d.ops import RESAMPLE_FILTER_2D

# Official defaults of the constructors that a pickle's init_kwargs may leave out.
_MAPPING_DEFAULTS = dict(num_layers=8, embed_features=None, layer_features=None,
                         activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.998)
PLANE_CHANNELS = 32  # TriPlaneGenerator: backbone img_channels = 32 * 3.
DECODER_HIDDEN = 64  # OSGDecoder.hidden_dim.
DECODER_OUTPUT_DIM = 32  # OSGDecoder 'decoder_output_dim'.
DEFAULT_NEURAL_RENDERING_RESOLUTION = 64  # TriPlaneGenerator.__init__ sets 64.
SR_CONV_CLAMP = 256  # superresolution.py: conv_clamp=(256 if use_fp16 else None).


@dataclasses.dataclass(frozen=True)
class SRSpec:
  """One super-resolution class of training/superresolution.py.

  blocks: ((up, out_channels, resolution), ...) for block0, block1; up=False is SynthesisBlockNoUp.
  resize_if: 'ne' resizes the neural image when its size != input_resolution, 'lt' when smaller.
  """
  img_resolution: int
  input_resolution: int
  blocks: tuple
  resize_if: str = "ne"
  has_filter_buffer: bool = True  # the module-level 'superresolution.resample_filter' buffer
  official: bool = True


SUPERRESOLUTION_MODULES = {
    # training.superresolution.* of the official code (see superresolution.py there).
    "SuperresolutionHybrid8XDC": SRSpec(512, 128, ((True, 256, 256), (True, 128, 512)),
                                        has_filter_buffer=False),
    "SuperresolutionHybrid8X": SRSpec(512, 128, ((True, 128, 256), (True, 64, 512))),
    "SuperresolutionHybrid4X": SRSpec(256, 128, ((False, 128, 128), (True, 64, 256)),
                                      resize_if="lt"),
    "SuperresolutionHybrid2X": SRSpec(128, 64, ((False, 128, 64), (True, 64, 128))),
    # Not in the official code: the 2X design at half the size (32 -> 64 px) for the port's
    # 'micro' preset, so tests and CPU training can run a complete generator quickly.
    "SuperresolutionMicro2X": SRSpec(64, 32, ((False, 32, 32), (True, 16, 64)), official=False),
}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """A modulated layer: a SynthesisLayer ('conv') or a ToRGBLayer ('torgb')."""
  name: str  # state-dict prefix, e.g. 'backbone.synthesis.b8.conv0'
  kind: str
  in_channels: int
  out_channels: int
  resolution: int
  up: int
  w_index: int  # which ws[:, i] the affine layer reads
  conv_clamp: Optional[float]

  @property
  def style_dim(self) -> int:
    return self.in_channels


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """A SynthesisBlock (up=True: 2x up-sampling conv0 and skip path) or SynthesisBlockNoUp."""
  name: str
  resolution: int
  in_channels: int  # 0 for the first backbone block (learned const input)
  out_channels: int
  up: bool
  layers: tuple  # LayerSpec, in execution order (conv0, conv1, torgb)


@dataclasses.dataclass(frozen=True)
class RenderSpec:
  depth_resolution: int
  depth_resolution_importance: int
  ray_start: float
  ray_end: float
  box_warp: float
  white_back: bool
  disparity_space_sampling: bool
  density_noise: float
  superresolution_noise_mode: str


@dataclasses.dataclass(frozen=True)
class Arch:
  """Hashable description of a TriPlaneGenerator (see module docstring)."""
  z_dim: int
  c_dim: int
  w_dim: int
  num_ws: int
  img_resolution: int
  neural_rendering_resolution: int
  mapping_layers: int
  mapping_lr_multiplier: float
  embed_features: int
  layer_features: int
  c_scale: float
  c_conditioning_zero: bool
  backbone_resolution: int
  backbone_blocks: tuple  # BlockSpec
  sr_module: str
  sr_spec: SRSpec
  sr_antialias: bool
  sr_blocks: tuple  # BlockSpec
  decoder_lr_multiplier: float
  render: RenderSpec

  @property
  def layers(self) -> tuple:
    """All modulated layers in the official StyleSpace order (backbone, then super-resolution)."""
    return tuple(l for b in self.backbone_blocks + self.sr_blocks for l in b.layers)

  @property
  def style_layers(self) -> tuple:
    """((name, dim), ...) in the official order, as the fixtures' 'style_layers'."""
    return tuple((l.name, l.style_dim) for l in self.layers)


def _block_specs(prefix: str, resolutions, channels_in, channels_out, ups, w_indices,
                 conv_clamp, img_channels) -> tuple:
  blocks = []
  for res, cin, cout, up, widx in zip(resolutions, channels_in, channels_out, ups, w_indices):
    name = f"{prefix}{res}" if prefix.endswith(".b") else prefix.format(len(blocks))
    layers = []
    wi = list(widx)
    if cin != 0:
      layers.append(LayerSpec(f"{name}.conv0", "conv", cin, cout, res, 2 if up else 1, wi.pop(0),
                              conv_clamp))
    layers.append(LayerSpec(f"{name}.conv1", "conv", cout, cout, res, 1, wi.pop(0), conv_clamp))
    layers.append(LayerSpec(f"{name}.torgb", "torgb", cout, img_channels, res, 1, wi.pop(0),
                            conv_clamp))
    blocks.append(BlockSpec(name, res, cin, cout, up, tuple(layers)))
  return tuple(blocks)


def _check(cond: bool, msg: str):
  if not cond:
    raise ValueError(f"unsupported EG3D config: {msg}")


def parse_config(config: Mapping[str, Any]) -> Arch:
  """Builds the `Arch` of a config {'init_kwargs': ..., 'neural_rendering_resolution': ...}.

  Raises ValueError naming the offending key for anything this port does not implement.
  """
  if "init_kwargs" not in config:
    raise ValueError("EG3D config has no 'init_kwargs' (expected the TriPlaneGenerator "
                     "constructor kwargs, as in the fixtures' json)")
  kw = config["init_kwargs"]
  for key in ("z_dim", "c_dim", "w_dim", "img_resolution", "rendering_kwargs"):
    _check(key in kw, f"init_kwargs lacks {key!r}")
  rk = kw["rendering_kwargs"]
  z_dim, c_dim, w_dim = int(kw["z_dim"]), int(kw["c_dim"]), int(kw["w_dim"])
  _check(z_dim > 0 and c_dim > 0, "z_dim and c_dim must be > 0 (the official generators are "
         "camera conditioned)")
  _check(kw.get("img_channels", 3) == 3, "img_channels must be 3")
  _check(kw.get("architecture", "skip") == "skip", "only the 'skip' synthesis architecture")
  for key in ("resample_filter",):
    _check(list(kw.get(key, [1, 3, 3, 1])) == [1, 3, 3, 1], f"{key} must be [1,3,3,1]")
  _check(kw.get("use_noise", True), "use_noise=False")

  # Mapping network (StyleGAN2 MappingNetwork; EG3D trains it with depth 2).
  mk = dict(_MAPPING_DEFAULTS)
  mk.update(kw.get("mapping_kwargs", {}) or {})
  _check(mk["activation"] == "lrelu", "mapping activation must be lrelu")
  embed_features = int(mk["embed_features"] or w_dim)
  layer_features = int(mk["layer_features"] or w_dim)

  # Backbone: StyleGAN2 synthesis at 256 px (TriPlaneGenerator hard-codes it) with 96 channels.
  bres = int(kw.get("backbone_resolution", 256))  # port-only key, used by the 'micro' preset
  _check(bres >= 8 and 2 ** int(round(math.log2(bres))) == bres, "backbone_resolution")
  channel_base, channel_max = int(kw.get("channel_base", 32768)), int(kw.get("channel_max", 512))
  res_log2 = int(math.log2(bres))
  resolutions = [2 ** i for i in range(2, res_log2 + 1)]
  ch = {r: min(channel_base // r, channel_max) for r in resolutions}
  num_ws = 2 * res_log2 - 2  # 1 conv + 1 toRGB at 4 px, 2 convs per later block, + last toRGB
  w_idx = [[0, 1]] + [[1 + 2 * k, 2 + 2 * k, 3 + 2 * k] for k in range(len(resolutions) - 1)]
  backbone = _block_specs(
      "backbone.synthesis.b", resolutions, [0] + [ch[r // 2] for r in resolutions[1:]],
      [ch[r] for r in resolutions], [False] + [True] * (len(resolutions) - 1), w_idx,
      kw.get("conv_clamp"), 3 * PLANE_CHANNELS)

  # Super-resolution.
  sr_name = str(rk.get("superresolution_module", "")).rsplit(".", 1)[-1]
  _check(sr_name in SUPERRESOLUTION_MODULES,
         f"rendering_kwargs.superresolution_module {rk.get('superresolution_module')!r} "
         f"(supported: {sorted(SUPERRESOLUTION_MODULES)})")
  sr = SUPERRESOLUTION_MODULES[sr_name]
  _check(int(kw["img_resolution"]) == sr.img_resolution,
         f"img_resolution {kw['img_resolution']} with {sr_name} (needs {sr.img_resolution})")
  sr_clamp = SR_CONV_CLAMP if int(kw.get("sr_num_fp16_res", 0)) > 0 else None
  sr_in = [PLANE_CHANNELS] + [b[1] for b in sr.blocks[:-1]]
  sr_blocks = _block_specs(
      "superresolution.block{}", [b[2] for b in sr.blocks], sr_in, [b[1] for b in sr.blocks],
      [b[0] for b in sr.blocks], [[num_ws - 1] * 3] * len(sr.blocks), sr_clamp, 3)

  # Rendering.
  _check(rk.get("clamp_mode", "softplus") == "softplus",
         "rendering_kwargs.clamp_mode must be 'softplus' (MipRayMarcher2 supports only it)")
  _check(not isinstance(rk.get("ray_start"), str),
         "rendering_kwargs.ray_start='auto' (box-limited rays) is not implemented")
  sr_noise = rk.get("superresolution_noise_mode", "none")
  _check(sr_noise in ("none", "random", "const"), "superresolution_noise_mode")
  render = RenderSpec(
      depth_resolution=int(rk["depth_resolution"]),
      depth_resolution_importance=int(rk.get("depth_resolution_importance", 0)),
      ray_start=float(rk["ray_start"]), ray_end=float(rk["ray_end"]),
      box_warp=float(rk["box_warp"]), white_back=bool(rk.get("white_back", False)),
      disparity_space_sampling=bool(rk.get("disparity_space_sampling", False)),
      density_noise=float(rk.get("density_noise", 0) or 0), superresolution_noise_mode=sr_noise)

  nrr = config.get("neural_rendering_resolution") or DEFAULT_NEURAL_RENDERING_RESOLUTION
  return Arch(
      z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws,
      img_resolution=int(kw["img_resolution"]), neural_rendering_resolution=int(nrr),
      mapping_layers=int(mk["num_layers"]), mapping_lr_multiplier=float(mk["lr_multiplier"]),
      embed_features=embed_features, layer_features=layer_features,
      c_scale=float(rk.get("c_scale", 0)),  # TriPlaneGenerator.mapping: c * get('c_scale', 0)
      c_conditioning_zero=bool(rk.get("c_gen_conditioning_zero", False)),
      backbone_resolution=bres, backbone_blocks=backbone, sr_module=sr_name, sr_spec=sr,
      sr_antialias=bool(rk.get("sr_antialias", True)), sr_blocks=sr_blocks,
      decoder_lr_multiplier=float(rk.get("decoder_lr_mul", 1)), render=render)


# Buffers (not learnable) of the state dict; everything else is a parameter.
_BUFFER_SUFFIXES = (".resample_filter", ".noise_const", ".w_avg")


def is_buffer(name: str) -> bool:
  """True for state-dict buffers (resample filters, noise constants, w_avg)."""
  return name.endswith(_BUFFER_SUFFIXES) or name == "superresolution.resample_filter"


def param_shapes(arch: Arch) -> dict:
  """{official state-dict name: shape} of the generator, in the official order."""
  shapes: dict[str, tuple] = {}

  def blocks(specs):
    for b in specs:
      if b.in_channels == 0:
        shapes[f"{b.name}.const"] = (b.out_channels, b.resolution, b.resolution)
      shapes[f"{b.name}.resample_filter"] = (4, 4)
      for l in b.layers:
        k = 3 if l.kind == "conv" else 1
        shapes[f"{l.name}.weight"] = (l.out_channels, l.in_channels, k, k)
        if l.kind == "conv":
          shapes[f"{l.name}.noise_strength"] = ()
        shapes[f"{l.name}.bias"] = (l.out_channels,)
        if l.kind == "conv":
          shapes[f"{l.name}.resample_filter"] = (4, 4)
          shapes[f"{l.name}.noise_const"] = (l.resolution, l.resolution)
        shapes[f"{l.name}.affine.weight"] = (l.in_channels, arch.w_dim)
        shapes[f"{l.name}.affine.bias"] = (l.in_channels,)

  blocks(arch.backbone_blocks)
  m = "backbone.mapping"
  shapes[f"{m}.w_avg"] = (arch.w_dim,)
  shapes[f"{m}.embed.weight"] = (arch.embed_features, arch.c_dim)
  shapes[f"{m}.embed.bias"] = (arch.embed_features,)
  feats = ([arch.z_dim + arch.embed_features] + [arch.layer_features] * (arch.mapping_layers - 1)
           + [arch.w_dim])
  for i in range(arch.mapping_layers):
    shapes[f"{m}.fc{i}.weight"] = (feats[i + 1], feats[i])
    shapes[f"{m}.fc{i}.bias"] = (feats[i + 1],)
  if arch.sr_spec.has_filter_buffer:
    shapes["superresolution.resample_filter"] = (4, 4)
  blocks(arch.sr_blocks)
  shapes["decoder.net.0.weight"] = (DECODER_HIDDEN, PLANE_CHANNELS)
  shapes["decoder.net.0.bias"] = (DECODER_HIDDEN,)
  shapes["decoder.net.2.weight"] = (1 + DECODER_OUTPUT_DIM, DECODER_HIDDEN)
  shapes["decoder.net.2.bias"] = (1 + DECODER_OUTPUT_DIM,)
  return shapes


def validate_params(arch: Arch, params: Mapping[str, Any], source: str) -> None:
  """Raises ValueError naming `source` if params do not match the architecture's state dict."""
  expected = param_shapes(arch)
  missing = [k for k in expected if k not in params]
  unexpected = [k for k in params if k not in expected]
  wrong = [f"{k}: {tuple(np.shape(params[k]))} != {expected[k]}" for k in expected
           if k in params and tuple(np.shape(params[k])) != expected[k]]
  problems = []
  if missing:
    problems.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
  if wrong:
    problems.append(f"{len(wrong)} wrong shapes (e.g. {wrong[:3]})")
  if problems:
    raise ValueError(f"{source}: state dict does not match the config's architecture: "
                     + "; ".join(problems))
  for k in expected:
    if k.endswith("resample_filter"):
      f = np.asarray(params[k], np.float32)
      if not np.allclose(f, RESAMPLE_FILTER_2D, atol=1e-7):
        raise ValueError(f"{source}: {k} is not the [1,3,3,1] filter this port implements")

