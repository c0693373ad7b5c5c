"""Transformer fusion of FRL-DGT (docs/frldgt.md): linear token fusion, local, global, full-face.

- LinearTokenFusion: per-modality patch embeddings are concatenated per patch and mixed by one
  linear layer before any attention ("linear fusion before attention"), so the sequence length
  does not grow with the number of inputs.
- LocalRegionFusion: one transformer per AU region over the tokens of the patches inside it
  (a static, padded gather with a key mask, so it jits), masked mean -> one token per region.
- GlobalRegionFusion: a transformer over the K region tokens (plus a learned region embedding).
- FullFaceFusion: a transformer over all patch tokens.
All blocks are pre-LayerNorm; params float32, compute in `dtype` (bfloat16 optional), softmax
in float32.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


class MLP(nn.Module):
  """Dense -> GELU -> dropout -> Dense -> dropout."""
  hidden: int
  dropout: float = 0.0
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    out = x.shape[-1]
    x = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32)(x)
    x = nn.gelu(x)
    x = nn.Dropout(self.dropout, deterministic=self.deterministic)(x)
    x = nn.Dense(out, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return nn.Dropout(self.dropout, deterministic=self.deterministic)(x)


class TransformerBlock(nn.Module):
  """Pre-LN block: x + Attn(LN(x)); x + MLP(LN(x))."""
  num_heads: int
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    """x [..., L, D]; mask broadcastable to [..., heads, L, L], True = may attend."""
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
        dropout_rate=self.attention_dropout, deterministic=self.deterministic,
        force_fp32_for_softmax=True)(y, y, mask=mask)
    x = x + nn.Dropout(self.dropout, deterministic=self.deterministic)(y)
    y = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x + MLP(int(self.mlp_ratio * x.shape[-1]), self.dropout, self.deterministic,
                   self.dtype)(y)


class TransformerStack(nn.Module):
  """`depth` TransformerBlocks followed by a final LayerNorm."""
  depth: int
  num_heads: int
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    for i in range(self.depth):
      x = TransformerBlock(self.num_heads, self.mlp_ratio, self.dropout, self.attention_dropout,
                           self.deterministic, self.dtype, name=f'block_{i}')(x, mask)
    return nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name='norm')(x)


def _masked_mean(x, valid):
  """Mean of x [..., L, D] over the positions where valid [L] (or broadcastable) is True."""
  w = valid.astype(x.dtype)[..., None]
  return jnp.sum(x * w, axis=-2) / jnp.maximum(jnp.sum(w, axis=-2), 1)


class LinearTokenFusion(nn.Module):
  """Concatenates per-patch embeddings of several inputs and mixes them linearly: [B,N,dim]."""
  dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: Sequence[jnp.ndarray]):
    return nn.Dense(self.dim, dtype=self.dtype, param_dtype=jnp.float32)(
        jnp.concatenate(list(tokens), axis=-1))


class _RegionTransformer(nn.Module):
  """One region's transformer: tokens [B,L,D] with valid [L] -> masked-mean token [B,D]."""
  depth: int
  num_heads: int
  mlp_ratio: float
  dropout: float
  attention_dropout: float
  deterministic: bool
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, tokens, valid):
    mask = valid[None, None, None, :]  # padded patches are never attended to
    x = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, self.dropout,
                         self.attention_dropout, self.deterministic, self.dtype)(tokens, mask)
    return _masked_mean(x, valid)


class LocalRegionFusion(nn.Module):
  """Local transformers over the patches of each AU region.

  Attributes:
    indices, valid: the static padded gather from regions.region_patch_indices, [K, L].
    shared_weights: one transformer for all regions (True) or one per region (False).
  Input tokens [B,N,D] (with position embeddings); output region tokens [B,K,D].
  """
  indices: np.ndarray
  valid: np.ndarray
  depth: int
  num_heads: int
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  shared_weights: bool = False
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens):
    gathered = tokens[:, np.asarray(self.indices)]  # [B, K, L, D], a static gather
    per_region = nn.vmap(
        _RegionTransformer, in_axes=(1, 0), out_axes=1,
        variable_axes={'params': None if self.shared_weights else 0},
        split_rngs={'params': not self.shared_weights, 'dropout': True})
    return per_region(self.depth, self.num_heads, self.mlp_ratio, self.dropout,
                      self.attention_dropout, self.deterministic, self.dtype,
                      name='regions')(gathered, jnp.asarray(self.valid))


class GlobalRegionFusion(nn.Module):
  """Transformer over region tokens [B,K,D] + learned region embeddings -> mean [B,D]."""
  depth: int
  num_heads: int
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, region_tokens):
    k, d = region_tokens.shape[-2:]
    embed = self.param('region_embedding', nn.initializers.normal(0.02), (k, d), jnp.float32)
    x = region_tokens + embed.astype(region_tokens.dtype)
    x = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, self.dropout,
                         self.attention_dropout, self.deterministic, self.dtype)(x)
    return jnp.mean(x, axis=-2)


class FullFaceFusion(nn.Module):
  """Transformer over all patch tokens [B,N,D] -> mean [B,D]."""
  depth: int
  num_heads: int
  mlp_ratio: float = 2.0
  dropout: float = 0.0
  attention_dropout: float = 0.0
  deterministic: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens):
    x = TransformerStack(self.depth, self.num_heads, self.mlp_ratio, self.dropout,
                         self.attention_dropout, self.deterministic, self.dtype)(tokens)
    return jnp.mean(x, axis=-2)
