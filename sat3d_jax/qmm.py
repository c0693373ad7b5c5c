"""Quantitative Measurement Module (QMM): CLIP zero-shot distributions over descriptor groups.

Exactly as written in docs/sat3d.md ("The QMM, exactly"):
  t_k    = normalise(mean_j normalise(text_embeds(phrase_jk)))       (CLIP projection outputs)
  q_a(x) = softmax_k(exp(logit_scale) * cos(image_embeds(x), t_k))   over attribute a's K groups,
with x a generator image in [-1, 1] brought to [0, 1], resized with jax.image.resize(bicubic,
antialias) to CLIP's input size and normalised with CLIP's mean and std (see clip_utils.preprocess),
and logit_scale the checkpoint's learned value.

The measurement itself is the pure function `qmm_apply(clip_params, group_embeds, images, spec)`;
`QMM` holds the frozen CLIP parameters and the cached group embeddings for convenience, and its
`apply` / `image_embeddings` attributes are the same pure functions with the static spec bound.

Attribute distances for the losses: `sym_kl` and `l1` on [..., K] distributions.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax import clip_utils
from sat3d_jax.clip_utils import ClipSpec, load_clip, preprocess, tiny_clip
from sat3d_jax.descriptor_sets import Descriptors, load_descriptors, shipped_descriptor_sets
from sat3d_jax.errors import InputError, UnknownNameError

PyTree = Any

__all__ = [
    "QMM", "QMMSpec", "qmm_apply", "image_embeddings", "group_embeddings", "sym_kl", "l1",
    "DISTANCES", "get_distance", "attribute_distances", "load_descriptors",
    "shipped_descriptor_sets", "Descriptors", "preprocess", "tiny_clip", "load_clip",
]


@dataclasses.dataclass(frozen=True, eq=False)
class QMMSpec:
  """Static layout of a QMM: the CLIP spec and each attribute's rows in the group-embedding array.

  Hashed by identity, so it can be a jit static argument; it holds no arrays.
  """
  clip: ClipSpec
  attributes: tuple[str, ...]
  slices: tuple[tuple[int, int], ...]  # [start, stop) rows of group_embeds per attribute
  group_names: tuple[tuple[str, ...], ...]

  @property
  def num_groups(self) -> int:
    return self.slices[-1][1] if self.slices else 0

  def slice_of(self, attribute: str) -> slice:
    """Rows of `group_embeds` (and columns of the logits) that belong to `attribute`."""
    try:
      start, stop = self.slices[self.attributes.index(attribute)]
    except ValueError:
      raise UnknownNameError(f"unknown attribute {attribute!r}; known: "
                             f"{list(self.attributes)}") from None
    return slice(start, stop)


def image_embeddings(clip_params: PyTree, images: jax.Array, spec: QMMSpec | ClipSpec) -> jax.Array:
  """Unit-norm CLIP image embeddings [B, D] of generator images [B, H, H, 3] in [-1, 1].

  Used by the QMM and by the identity loss (cosine of source and edit embeddings).
  """
  clip = spec.clip if isinstance(spec, QMMSpec) else spec
  return clip_utils.image_embeddings(clip_params, images, clip)


def qmm_apply(clip_params: PyTree, group_embeds: jax.Array, images: jax.Array,
              spec: QMMSpec) -> dict[str, jax.Array]:
  """q_a(x) for every attribute: {attribute: [B, K_a] probabilities}. Pure, jittable,
  differentiable.

  Args:
    clip_params: frozen CLIP parameters (a FlaxCLIPModel params tree, incl. 'logit_scale').
    group_embeds: [G_total, D] unit-norm group embeddings (`group_embeddings`), rows per
      `spec.slices`.
    images: [B, H, H, 3] generator images in [-1, 1] (any square size; resized to CLIP's).
    spec: the static layout.
  """
  img = image_embeddings(clip_params, images, spec.clip)
  cos = jnp.matmul(img, group_embeds.T, precision=jax.lax.Precision.HIGHEST)
  logits = jnp.exp(clip_params["logit_scale"]) * cos
  return {name: jax.nn.softmax(logits[:, a:b], axis=-1)
          for name, (a, b) in zip(spec.attributes, spec.slices)}


def group_layout(groups: Mapping[str, Sequence[Sequence[str]]]
                 ) -> tuple[list[str], list[int], tuple[tuple[int, int], ...]]:
  """(every phrase, the group row each belongs to, per-attribute (start, stop) rows)."""
  phrases, owner, slices = [], [], []
  g = 0
  for attr_groups in groups.values():
    start = g
    for group in attr_groups:
      phrases.extend(group)
      owner.extend([g] * len(group))
      g += 1
    slices.append((start, g))
  return phrases, owner, tuple(slices)


def group_embeddings(clip_params: PyTree, clip: ClipSpec,
                     groups: Mapping[str, Sequence[Sequence[str]]]
                     ) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
  """t_k = normalise(mean_j normalise(text_embeds(phrase_jk))) for every group of every attribute.

  Returns ([G_total, D] float32, per-attribute (start, stop) rows), in the order of `groups`.
  All phrases go through the text tower in one pass.
  """
  phrases, owner, slices = group_layout(groups)
  g = slices[-1][1] if slices else 0
  emb = clip_utils.text_embeddings(clip_params, phrases, clip)  # [N, D], unit norm
  owner = np.asarray(owner)
  sums = np.zeros((g, emb.shape[1]), np.float64)
  np.add.at(sums, owner, emb.astype(np.float64))
  means = sums / np.bincount(owner, minlength=g)[:, None]
  t = means / np.linalg.norm(means, axis=-1, keepdims=True)
  return t.astype(np.float32), tuple(slices)


class QMM:
  """A loaded QMM: frozen CLIP params, cached group embeddings, and the pure functions bound.

  Attributes:
    spec: the static `QMMSpec`.
    params: CLIP parameters (pass these explicitly inside training steps).
    group_embeds: [G_total, D] unit-norm group embeddings (a jax array).
    descriptors: the attributes measured; heldout: whether held-out phrasings were used.
    apply: `apply(clip_params, group_embeds, images) -> {attribute: [B, K]}` (pure).
    image_embeddings: `image_embeddings(clip_params, images) -> [B, D]` (pure, unit norm).
  """

  def __init__(self, clip: ClipSpec, params: PyTree, descriptors: Descriptors,
               heldout: bool = False):
    groups = descriptors.phrase_groups(heldout)
    if any(isinstance(p, jax.ShapeDtypeStruct) for p in jax.tree.leaves(params)):
      slices = group_layout(groups)[2]  # shapes only (lowering): no text forward
      embeds = jax.ShapeDtypeStruct((slices[-1][1] if slices else 0, clip.embed_dim),
                                    jnp.float32)
    else:
      embeds, slices = group_embeddings(params, clip, groups)
    self.descriptors = descriptors
    self.heldout = heldout
    self.params = params
    self.group_embeds = embeds if isinstance(embeds, jax.ShapeDtypeStruct) else \
        jnp.asarray(embeds)
    self.spec = QMMSpec(clip=clip, attributes=tuple(groups), slices=slices,
                        group_names=tuple(a.group_names for a in descriptors.attributes))
    self.apply: Callable[..., dict[str, jax.Array]] = functools.partial(qmm_apply, spec=self.spec)
    self.image_embeddings: Callable[..., jax.Array] = functools.partial(image_embeddings,
                                                                        spec=self.spec)
    self._jitted = jax.jit(self.apply)

  @classmethod
  def from_pretrained(cls, clip_dir: str | os.PathLike,
                      descriptors: str | os.PathLike | Mapping[str, Any] | Descriptors = "ffhq",
                      heldout: bool = False, attributes: Sequence[str] | None = None) -> "QMM":
    """Loads CLIP from a local Hugging Face directory (see `clip_utils.load_clip`) and builds the
    QMM over `descriptors` (a shipped set name, a JSON file, or a dict), optionally a subset."""
    clip, params = load_clip(clip_dir)
    return cls(clip, params, load_descriptors(descriptors, attributes), heldout)

  @classmethod
  def tiny(cls, descriptors: str | os.PathLike | Mapping[str, Any] | Descriptors = "ffhq",
           seed: int = 0, heldout: bool = False, **tiny_kwargs) -> "QMM":
    """A QMM on `clip_utils.tiny_clip(seed, **tiny_kwargs)` (random weights; for tests/`:tiny`)."""
    clip, params = tiny_clip(seed, **tiny_kwargs)
    return cls(clip, params, load_descriptors(descriptors), heldout)

  @classmethod
  def random(cls, name: str, descriptors: str | os.PathLike | Mapping[str, Any] | Descriptors
             = "ffhq", seed: int = 0, heldout: bool = False, abstract: bool = False) -> "QMM":
    """A QMM on the random CLIP `name` ('tiny' or 'random-vit-b16', see
    clip_utils.named_random_clip); `abstract`: ShapeDtypeStruct params and group embeddings."""
    clip, params = clip_utils.named_random_clip(name, seed, abstract=abstract)
    return cls(clip, params, load_descriptors(descriptors), heldout)

  def with_descriptors(self, descriptors: str | os.PathLike | Mapping[str, Any] | Descriptors,
                       heldout: bool = False, attributes: Sequence[str] | None = None) -> "QMM":
    """Another QMM on the same CLIP (no reload), e.g. the held-out judge: `with_descriptors(
    qmm.descriptors, heldout=True)`."""
    return QMM(self.spec.clip, self.params, load_descriptors(descriptors, attributes), heldout)

  @property
  def attributes(self) -> tuple[str, ...]:
    return self.spec.attributes

  @property
  def slices(self) -> dict[str, slice]:
    """{attribute: rows of group_embeds}."""
    return {n: self.spec.slice_of(n) for n in self.spec.attributes}

  @property
  def logit_scale(self) -> float:
    """exp of the checkpoint's learned logit_scale (the softmax temperature's inverse)."""
    return float(np.exp(np.asarray(self.params["logit_scale"])))

  @property
  def image_size(self) -> int:
    return self.spec.clip.image_size

  @property
  def mean(self) -> tuple[float, float, float]:
    return self.spec.clip.mean

  @property
  def std(self) -> tuple[float, float, float]:
    return self.spec.clip.std

  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """q_a(images) with this QMM's params (jitted; the batch keeps whatever sharding it has)."""
    return self._jitted(self.params, self.group_embeds, images)


# ----------------------------------------------------------------------------------------------
# Attribute distances D(p, q) on [..., K] distributions (docs/sat3d.md: both available).

DEFAULT_EPS = 1e-8


def sym_kl(p: jax.Array, q: jax.Array, eps: float = DEFAULT_EPS) -> jax.Array:
  """Symmetric KL, KL(p||q) + KL(q||p) = sum_k (p_k - q_k)(log p_k - log q_k), over the last axis.

  log(. + eps) keeps it finite (and its gradient) when a probability underflows to 0.
  """
  return jnp.sum((p - q) * (jnp.log(p + eps) - jnp.log(q + eps)), axis=-1)


def l1(p: jax.Array, q: jax.Array, eps: float = DEFAULT_EPS) -> jax.Array:
  """L1 distance sum_k |p_k - q_k| over the last axis (eps unused; kept for a common signature)."""
  del eps
  return jnp.sum(jnp.abs(p - q), axis=-1)


DISTANCES: dict[str, Callable[..., jax.Array]] = {"sym_kl": sym_kl, "l1": l1}


def get_distance(name: str) -> Callable[..., jax.Array]:
  """The distance called `name` ('sym_kl' or 'l1')."""
  try:
    return DISTANCES[name]
  except KeyError:
    raise InputError(f"unknown attribute distance {name!r}; choose from "
                     f"{sorted(DISTANCES)}") from None


def attribute_distances(p: Mapping[str, jax.Array], q: Mapping[str, jax.Array],
                        distance: str | Callable[..., jax.Array] = "sym_kl",
                        attributes: Sequence[str] | None = None) -> dict[str, jax.Array]:
  """{attribute: D(p_a, q_a)} (shape [...]) for `attributes` (default: all keys of p)."""
  fn = get_distance(distance) if isinstance(distance, str) else distance
  names = list(p) if attributes is None else list(attributes)
  return {a: fn(p[a], q[a]) for a in names}
