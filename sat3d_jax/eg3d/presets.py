"""Generator configs: the released EG3D architectures, the fixtures' small ones and a micro one.

Each preset is a config {'init_kwargs': TriPlaneGenerator kwargs, 'neural_rendering_resolution'}.
- 'ffhq512', 'afhqcats512', 'shapenetcars128': the released models (ffhq512-128.pkl,
  afhqcats512-128.pkl, shapenetcars128-64.pkl; docs/eg3d.md and the official
  train.py configs).
- 'tiny128', 'ffhq512_small', 'cars128_tiny': the architectures of the reference fixtures
  eg3d_tiny128 / eg3d_ffhq512_small / eg3d_cars128_tiny (their json, embedded here).
- 'micro': not an official architecture: 64 px planes, a half-size 2X super-resolution to 64 px,
  neural resolution 16, 8 + 8 samples per ray; for fast CPU tests and training.
"""
from __future__ import annotations

import copy

_SR = "training.superresolution."

# rendering_kwargs of the official FFHQ training config (train.py, cfg 'ffhq').
_FFHQ_RENDERING = {
    "image_resolution": 512,
    "disparity_space_sampling": False,
    "clamp_mode": "softplus",
    "superresolution_module": _SR + "SuperresolutionHybrid8XDC",
    "c_gen_conditioning_zero": False,
    "gpc_reg_prob": 0.5,
    "c_scale": 1.0,
    "superresolution_noise_mode": "none",
    "density_reg": 0.25,
    "density_reg_p_dist": 0.004,
    "reg_type": "l1",
    "decoder_lr_mul": 1.0,
    "sr_antialias": True,
    "depth_resolution": 48,
    "depth_resolution_importance": 48,
    "ray_start": 2.25,
    "ray_end": 3.3,
    "box_warp": 1,
    "avg_camera_radius": 2.7,
    "avg_camera_pivot": [0, 0, 0.2],
}
# cfg 'afhq': as FFHQ with another camera pivot.
_AFHQ_OVERRIDES = {"avg_camera_pivot": [0, 0, -0.06]}
# cfg 'shapenet'.
_SHAPENET_OVERRIDES = {
    "image_resolution": 128,
    "superresolution_module": _SR + "SuperresolutionHybrid2X",
    "depth_resolution": 64,
    "depth_resolution_importance": 64,
    "ray_start": 0.1,
    "ray_end": 2.6,
    "box_warp": 1.6,
    "white_back": True,
    "avg_camera_radius": 1.7,
    "avg_camera_pivot": [0, 0, 0],
}


def _config(*, img_resolution, channel_base, channel_max, sr_num_fp16_res, rendering,
            neural_rendering_resolution, **extra):
  init_kwargs = {
      "class_name": "training.triplane.TriPlaneGenerator",
      "z_dim": 512,
      "w_dim": 512,
      "c_dim": 25,
      "img_resolution": img_resolution,
      "img_channels": 3,
      "mapping_kwargs": {"num_layers": 2},
      "channel_base": channel_base,
      "channel_max": channel_max,
      "fused_modconv_default": "inference_only",
      "rendering_kwargs": rendering,
      "num_fp16_res": 0,
      "conv_clamp": None,
      "sr_num_fp16_res": sr_num_fp16_res,
      "sr_kwargs": {"channel_base": channel_base, "channel_max": channel_max,
                    "fused_modconv_default": "inference_only"},
  }
  init_kwargs.update(extra)
  return {"init_kwargs": init_kwargs, "neural_rendering_resolution": neural_rendering_resolution}


def _rendering(**overrides):
  r = copy.deepcopy(_FFHQ_RENDERING)
  r.update(copy.deepcopy(overrides))
  return r


_PRESETS = {
    "ffhq512": _config(img_resolution=512, channel_base=32768, channel_max=512,
                       sr_num_fp16_res=4, rendering=_rendering(),
                       neural_rendering_resolution=128),
    "afhqcats512": _config(img_resolution=512, channel_base=32768, channel_max=512,
                           sr_num_fp16_res=4, rendering=_rendering(**_AFHQ_OVERRIDES),
                           neural_rendering_resolution=128),
    "shapenetcars128": _config(img_resolution=128, channel_base=32768, channel_max=512,
                               sr_num_fp16_res=4, rendering=_rendering(**_SHAPENET_OVERRIDES),
                               neural_rendering_resolution=64),
    # The reference fixtures' architectures (docs/eg3d.md, "Reference fixtures").
    "tiny128": _config(
        img_resolution=128, channel_base=1024, channel_max=64, sr_num_fp16_res=0,
        rendering=_rendering(image_resolution=128,
                             superresolution_module=_SR + "SuperresolutionHybrid2X",
                             depth_resolution=12, depth_resolution_importance=12),
        neural_rendering_resolution=32),
    "ffhq512_small": _config(
        img_resolution=512, channel_base=2048, channel_max=128, sr_num_fp16_res=4,
        rendering=_rendering(depth_resolution=16, depth_resolution_importance=16),
        neural_rendering_resolution=64),
    "cars128_tiny": _config(
        img_resolution=128, channel_base=1024, channel_max=64, sr_num_fp16_res=0,
        rendering=_rendering(**dict(_SHAPENET_OVERRIDES, depth_resolution=16,
                                    depth_resolution_importance=16)),
        neural_rendering_resolution=32),
    # Port-only (see module docstring): backbone_resolution is not an official kwarg.
    "micro": _config(
        img_resolution=64, channel_base=512, channel_max=32, sr_num_fp16_res=0,
        rendering=_rendering(image_resolution=64,
                             superresolution_module="SuperresolutionMicro2X",
                             depth_resolution=8, depth_resolution_importance=8),
        neural_rendering_resolution=16, backbone_resolution=64),
}

PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str) -> dict:
  """A fresh copy of the named config (see module docstring for the names)."""
  if name not in _PRESETS:
    raise ValueError(f"unknown EG3D preset {name!r}; known: {', '.join(PRESET_NAMES)}")
  return copy.deepcopy(_PRESETS[name])
