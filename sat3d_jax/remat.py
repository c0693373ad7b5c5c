"""Rematerialisation policies of the SAT3D objective: the name -> `jax.checkpoint` policy table.

`config.objective.remat` names one. The checkpoint wraps the edit's rendering (flat styles ->
images, tri-planes included) or, for 'renderer', only its camera-dependent part (tri-planes ->
images): what a policy does not save is recomputed in the backward pass.

  'none'          no checkpoint: every residual of the forward is kept (fastest, most memory).
  'full'          nothing saved: the whole rendering is recomputed in the backward pass (the
                  tri-plane backbone included: its forward runs twice per step).
  'renderer'      the backbone keeps its residuals; the volume renderer and super-resolution
                  (per view, where the ray samples live) are recomputed.
  'dots'          matmuls and convolutions saved (`dots_saveable`), elementwise ops recomputed.
  'dots_no_batch' matmuls without batch dimensions saved (`dots_with_no_batch_dims_saveable`):
                  the decoder MLP's, not the convolutions.

Where the generator does not split off its tri-planes, 'renderer' checkpoints the whole
rendering, as 'full'. Configs written when the field was a bool: True means 'full', False 'none'.
"""
from __future__ import annotations

from typing import Callable, Union

import jax

from sat3d_jax import errors

# name -> (the part checkpointed: 'rendering' (styles -> images) or 'renderer' (planes ->
# images), the jax.checkpoint policy); 'none' checkpoints nothing.
POLICIES: dict[str, tuple[str, Callable] | None] = {
    "none": None,
    "full": ("rendering", jax.checkpoint_policies.nothing_saveable),
    "renderer": ("renderer", jax.checkpoint_policies.nothing_saveable),
    "dots": ("rendering", jax.checkpoint_policies.dots_saveable),
    "dots_no_batch": ("rendering", jax.checkpoint_policies.dots_with_no_batch_dims_saveable),
}


def policy_name(value: Union[str, bool]) -> str:
  """The policy name of a config value (a name, or a legacy bool); InputError if unknown."""
  if isinstance(value, bool):
    return "full" if value else "none"
  if value not in POLICIES:
    raise errors.InputError(f"config.objective.remat must be one of {sorted(POLICIES)} (or a "
                            f"bool: True = 'full', False = 'none'), got {value!r}")
  return value


def checkpoint(fn: Callable, value: Union[str, bool], part: str = "rendering") -> Callable:
  """`fn` (the objective's `part`: 'rendering' or 'renderer') under the named policy's
  `jax.checkpoint` when the policy applies to that part, else `fn` itself."""
  entry = POLICIES[policy_name(value)]
  if entry is None or entry[0] != part:
    return fn
  return jax.checkpoint(fn, policy=entry[1])
