"""The FRL-DGT model (docs/frldgt.md): DGM displacement -> patch tokens -> AU-region
transformer fusion.

    onset, apex [B,S,S,1] in [0,1]
      -> DGM U-Net -> displacement [B,S,S,2] (dx, dy) pixels, warp(onset, d) ~ apex
      -> patch embeddings of the displacement (and of the apex frame), fused linearly per patch
         before any attention (or, as an ablation, concatenated as one longer sequence)
      -> (+ position embeddings) -> local transformers inside K AU regions -> K region tokens
      -> global transformer over the region tokens; full-face transformer over all tokens
      -> classifier on [mean region token, global summary, full-face summary] -> logits.

Motion input (config.motion, frldgt_jax/motion.py): 'dgm' as drawn above; 'tvl1' tokenises a
TV-L1 flow passed as `flow` instead (no DGM); 'dgm+tvl1' tokenises both (`embed_displacement`
and `embed_flow`, fused per patch); 'none' leaves the motion out (only the apex frame).

Horizontal flips. The data pipeline flips both frames; the DGM then sees mirrored frames, so the
displacement it produces is the mirrored field with dx negated (frldgt_jax.warp documents why) --
nothing in the model negates dx. `flipped[b] = True` tells the model that example b was
mirrored: right after the patch embedding, its token grid is mirrored back (columns reversed), so
every token, position embedding and AU-region slot refers to the same facial location as in the
unflipped example; in particular the left and right regions swap back (the AU regions are mirror
images of each other, regions.py). What the flip still changes is the content of each token (the
mirrored pixels / negated dx inside a patch). Consequently, when the tokeniser is mirror-
equivariant, model(flip(x), flipped=True) == model(x) exactly (tested). Pass flipped=False (or
None) to use flips as plain augmentation instead.

Zero-displacement ablation (config.displacement = 'zero'): there is no DGM and the displacement is
exactly zero, so the displacement tokens are the same constant for every clip. What remains
informative is the apex frame's appearance (if 'apex' is among config.inputs): the static face at
the apex, its identity and any visible expression, but no onset-to-apex motion. With inputs =
('displacement',) only, every clip gets the same logits (the model can only learn a class prior).
The returned DGM terms are then those of the identity warp (photometric = |onset - apex|
penalty, smoothness 0): constants without gradient.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from frldgt_jax import motion as motion_lib
from frldgt_jax import regions as regions_lib
from frldgt_jax.errors import InputError
from frldgt_jax.dgm import PHOTOMETRIC, dgm_from_config, dgm_loss_terms
from frldgt_jax.fusion import (FullFaceFusion, GlobalRegionFusion, LinearTokenFusion,
                               LocalRegionFusion)

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
INPUTS = ('displacement', 'apex')


def compute_dtype(config: ml_collections.ConfigDict):
  """The jnp dtype named by config.compute_dtype ('float32' or 'bfloat16')."""
  if config.compute_dtype not in _DTYPES:
    raise InputError(f'model.compute_dtype must be one of {list(_DTYPES)}, '
                     f'got {config.compute_dtype!r}')
  return _DTYPES[config.compute_dtype]


def motion_of(c: ml_collections.ConfigDict) -> str:
  """config.model.motion ('dgm' for configs written before the field existed)."""
  return c.get('motion', 'dgm')


def has_dgm(c: ml_collections.ConfigDict) -> bool:
  """Whether the model built from `c` (the model config) has a DGM with parameters."""
  return motion_lib.uses_dgm(motion_of(c)) and c.displacement == 'dgm'


def distill_weight(c: ml_collections.ConfigDict) -> float:
  """The weight of stage 1's TV-L1 distillation term (model.dgm.distill_weight; 0 without a DGM,
  and for runs saved before the field existed)."""
  return float(c.dgm.get('distill_weight', 0.0)) if has_dgm(c) else 0.0


def reads_tvl1(c: ml_collections.ConfigDict) -> bool:
  """Whether training needs the clips' TV-L1 onset->apex flows: the model reads them
  (model.motion) or stage 1 distils them into the DGM."""
  return motion_lib.uses_flow(motion_of(c)) or distill_weight(c) > 0


def validate_config(c: ml_collections.ConfigDict) -> None:
  """Raises InputError naming the field when the model config is inconsistent."""
  compute_dtype(c)
  if c.displacement not in ('dgm', 'zero'):
    raise InputError(f"model.displacement must be 'dgm' or 'zero', got {c.displacement!r}")
  if not c.inputs or any(i not in INPUTS for i in c.inputs) or len(set(c.inputs)) != len(c.inputs):
    raise InputError(f'model.inputs must be a non-empty subset of {INPUTS}, got {c.inputs}')
  motion_lib.check_motion(motion_of(c))
  if not motion_lib.token_inputs(motion_of(c), c.inputs):
    raise InputError(f"model.motion 'none' with model.inputs {tuple(c.inputs)} leaves the "
                     "model no input; add 'apex' to model.inputs")
  if c.token_fusion not in ('linear', 'sequence'):
    raise InputError(f"model.token_fusion must be 'linear' or 'sequence', got {c.token_fusion!r}")
  if c.image_size % c.patch_size:
    raise InputError(f'model.image_size {c.image_size} is not a multiple of patch_size '
                     f'{c.patch_size}')
  if c.token_dim % c.num_heads:
    raise InputError(f'model.token_dim {c.token_dim} is not a multiple of num_heads {c.num_heads}')
  regions_lib.partner_permutation(c.regions)  # checks names and mirror partners
  if c.dgm.photometric not in PHOTOMETRIC:
    raise InputError(f"model.dgm.photometric must be one of {list(PHOTOMETRIC)}, got "
                     f"{c.dgm.photometric!r}")


class FRLDGT(nn.Module):
  """FRL-DGT. Build with `build_model(config)`; see the module docstring."""
  config: ml_collections.FrozenConfigDict

  @nn.compact
  def __call__(self, onset, apex, flipped=None, train: bool = False, flow=None,
               displacement=None):
    """Returns (logits [B, num_classes] float32, aux).

    Args:
      onset, apex: [B,S,S,1] grayscale frames in [0, 1].
      flipped: optional bool [B]; True where the data pipeline mirrored the example.
      train: enables dropout (then pass rngs={'dropout': key}).
      flow: [B,S,S,2] TV-L1 flow (dx, dy) onset -> apex (frldgt_jax.motion), required when
        config.motion reads it ('tvl1', 'dgm+tvl1'), ignored otherwise.
      displacement: [B,S,S,2] the DGM's field of this pair computed outside (training with
        config.augment.dgm_on_stored_frames: on the stored pair, then moved with the frames'
        augmentation); None: the DGM computes it here. Ignored without a DGM.
    aux: 'displacement' [B,S,S,2] float32; per-example [B] DGM terms 'photometric',
      'smoothness', 'dgm_loss'; 'region_tokens' [B,K,D] float32 (local-fusion outputs, in the
      order of config.regions).
    """
    c = self.config
    dtype = compute_dtype(c)
    size = c.image_size
    for name, x in (('onset', onset), ('apex', apex)):
      if x.ndim != 4 or x.shape[1:] != (size, size, 1):
        raise InputError(f'FRLDGT: {name} must be [B,{size},{size},1], got {x.shape}')
    batch = onset.shape[0]
    deterministic = not train

    motion = motion_of(c)
    if has_dgm(c):
      if displacement is None:
        displacement = dgm_from_config(c.dgm, dtype, name='dgm')(onset, apex)
      displacement = displacement.astype(jnp.float32)
    else:
      displacement = jnp.zeros(onset.shape[:3] + (2,), jnp.float32)
    terms = dgm_loss_terms(onset, apex, displacement, c.dgm)

    sources = {'displacement': displacement, 'apex': apex.astype(jnp.float32) * 2.0 - 1.0}
    if motion_lib.uses_flow(motion):
      if flow is None or flow.shape != onset.shape[:3] + (2,):
        raise InputError(f"FRLDGT: model.motion {motion!r} needs flow [B,{size},{size},2], got "
                         f"{None if flow is None else flow.shape}")
      sources['flow'] = flow.astype(jnp.float32)
    p, d = c.patch_size, c.token_dim
    grid = size // p
    embeds = []
    for name in motion_lib.token_inputs(motion, c.inputs):
      e = nn.Conv(d, (p, p), strides=(p, p), padding='VALID', dtype=dtype,
                  param_dtype=jnp.float32, name=f'embed_{name}')(sources[name].astype(dtype))
      if flipped is not None:  # mirror flipped examples' token grids back (module docstring)
        e = jnp.where(jnp.asarray(flipped, bool).reshape(batch, 1, 1, 1), e[:, :, ::-1], e)
      embeds.append(e.reshape(batch, grid * grid, d))

    indices, valid = regions_lib.region_patch_indices(grid, c.regions)
    position = self.param('position_embedding', nn.initializers.normal(0.02), (grid * grid, d),
                          jnp.float32).astype(dtype)
    if c.token_fusion == 'linear':
      tokens = LinearTokenFusion(d, dtype, name='token_fusion')(embeds) + position
    else:
      modality = self.param('modality_embedding', nn.initializers.normal(0.02),
                            (len(embeds), d), jnp.float32).astype(dtype)
      tokens = jnp.concatenate([e + position + modality[m] for m, e in enumerate(embeds)], 1)
      n = grid * grid
      indices = np.concatenate([indices + m * n for m in range(len(embeds))], axis=1)
      valid = np.concatenate([valid] * len(embeds), axis=1)

    blocks = dict(num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout,
                  attention_dropout=c.attention_dropout, deterministic=deterministic, dtype=dtype)
    region_tokens = LocalRegionFusion(indices, valid, c.local_depth,
                                      shared_weights=c.local_shared_weights, **blocks,
                                      name='local_fusion')(tokens)
    global_summary = GlobalRegionFusion(c.global_depth, **blocks,
                                        name='global_fusion')(region_tokens)
    full_summary = FullFaceFusion(c.full_depth, **blocks, name='full_face_fusion')(tokens)

    h = jnp.concatenate([jnp.mean(region_tokens, axis=1), global_summary, full_summary], -1)
    h = nn.LayerNorm(dtype=jnp.float32, param_dtype=jnp.float32, name='head_norm')(
        h.astype(jnp.float32))
    h = nn.Dropout(c.dropout, deterministic=deterministic)(h)
    logits = nn.Dense(c.num_classes, dtype=jnp.float32, param_dtype=jnp.float32, name='head')(h)
    aux = dict(terms, displacement=displacement,
               region_tokens=region_tokens.astype(jnp.float32))
    return logits, aux


def build_model(config: ml_collections.ConfigDict) -> FRLDGT:
  """Validates `config` (the `model` section of an FRL-DGT config) and returns the Flax module."""
  validate_config(config)
  return FRLDGT(ml_collections.FrozenConfigDict(config))


def init_variables(model: FRLDGT, rng: jax.Array, batch: int = 1):
  """Initialises the model's variables (jitted) from dummy [batch,S,S,1] zero frames."""
  size = model.config.image_size
  frames = jnp.zeros((batch, size, size, 1), jnp.float32)
  flow = jnp.zeros((batch, size, size, 2), jnp.float32)
  return jax.jit(lambda r: model.init(r, frames, frames, flow=flow))(rng)


def with_pretrained_dgm(variables, dgm_variables):
  """Returns `variables` with the DGM's params replaced by stage-1 `dgm_variables`.

  `dgm_variables` are what DGM.init / dgm.pretrain_loss use ({'params': ...}). Raises if the
  model has no DGM or the shapes differ (a different dgm config).
  """
  params = dict(variables['params'])
  if 'dgm' not in params:
    raise InputError("with_pretrained_dgm: the model has no DGM (config.displacement == 'zero'?)")
  new = dgm_variables['params']
  old_shapes = jax.tree.map(jnp.shape, params['dgm'])
  new_shapes = jax.tree.map(jnp.shape, new)
  if old_shapes != new_shapes:
    raise InputError(f'with_pretrained_dgm: DGM params differ in structure/shape: model '
                     f'{old_shapes} vs given {new_shapes}')
  params['dgm'] = new
  return dict(variables, params=params)
