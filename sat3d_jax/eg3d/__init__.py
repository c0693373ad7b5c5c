"""Pure-JAX port of the official EG3D TriPlaneGenerator (Chan et al., CVPR 2022).

  G = load_generator('weights/ffhq512-128')          # converted dir, .pkl, or fixture .npz
  G = random_generator('tiny128', seed=0)            # random params, official layout
  ws = G.mapping(z, c, truncation_psi=0.7, truncation_cutoff=14)
  out = G.synthesis(ws, c)                           # {'image', 'image_raw', 'image_depth'}
  styles = G.styles(ws); out = G.synthesis_from_styles(styles, c)
  planes = G.planes(styles); out = G.render(planes, styles, c)   # a new camera, same face

Params are the official state dict {name: array}; see generator.py for the pure functions and
rendering.py for styles -> tri-planes -> views (flat styles, several views per face).
The pickle converter lives in convert.py (imported lazily by load_generator).
"""
from sat3d_jax.eg3d.architecture import Arch, param_shapes, parse_config
from sat3d_jax.eg3d.camera import (camera_label, fov_to_intrinsics, lookat_pose,
                                   orbit_labels)
from sat3d_jax.eg3d.generator import (Generator, Options, apply_mapping, apply_planes,
                                      apply_render, apply_sample, apply_styles,
                                      apply_superresolution, apply_synthesis,
                                      apply_synthesis_from_styles, apply_volume_render,
                                      from_state_dict,
                                      generator_from_spec, init_params, load_generator,
                                      random_generator)
from sat3d_jax.eg3d.presets import PRESET_NAMES, get_preset

__all__ = [
    "Arch", "Generator", "Options", "PRESET_NAMES", "apply_mapping", "apply_planes",
    "apply_render", "apply_sample", "apply_styles", "apply_superresolution", "apply_synthesis",
    "apply_synthesis_from_styles", "apply_volume_render",
    "camera_label", "fov_to_intrinsics", "from_state_dict", "generator_from_spec", "get_preset",
    "init_params",
    "load_generator", "lookat_pose", "orbit_labels", "param_shapes", "parse_config",
    "random_generator",
]
