"""SAT3D's training step, written against pluggable components.

The real task (launch/tasks/sat3d.py, through sat3d_jax/model.py) plugs in EG3D (styles and
multi-view rendering) and the CLIP QMM; the planted-truth test plugs in a stand-in generator
and measurement with known meaning and goes through exactly this code: the mask, the edit,
the losses, the optimiser update.

A batch holds, per example, a source and a reference (seeds or latent-file rows, resolved by
`components.styles`), a multi-hot target set `targets` [B, A] and camera angles `views`
[B, V, 2] (yaw, pitch offsets from frontal, radians). The edit is rendered from every view, and
so are the source and the reference (without gradient), and each view is measured. Where the
components split the generator into tri-planes and rendering (EG3D), each face's planes are
computed once and rendered from its V views.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from sat3d_jax import losses as losses_lib
from sat3d_jax import remat as remat_lib
from sat3d_jax import transfer

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Components:
  """What the objective needs from a generator and a measurement; all pure functions.

  styles(frozen, batch) -> (s_src, s_ref): flat StyleSpace vectors [B, C].
  render(frozen, flat_styles [N, C], views [N, 2], rng) -> images [N, H, W, 3] in [-1, 1].
  measure(frozen, images) -> {attribute: [N, K_a] probabilities}.
  embed(frozen, images) -> unit-norm embeddings [N, D] (optional; for the identity term).
  planes, render_planes (optional, together): the camera-independent part of `render` and the
  rest, so that V views of a face cost one `planes` and V renders:
    planes(frozen, flat [N, C]) -> P (any pytree with leading axis N);
    render_planes(frozen, P, flat [N, C], views [N, V, 2], rng) -> images [N*V, H, W, 3]
    (row n*V + v is face n from view v), equal to render of the styles repeated per view.
  """
  attributes: tuple[str, ...]
  styles: Callable[[PyTree, Mapping[str, jax.Array]], tuple[jax.Array, jax.Array]]
  render: Callable[[PyTree, jax.Array, jax.Array, Optional[jax.Array]], jax.Array]
  measure: Callable[[PyTree, jax.Array], Mapping[str, jax.Array]]
  embed: Optional[Callable[[PyTree, jax.Array], jax.Array]] = None
  # Flat channels the mask may edit (None = all). The others (e.g. toRGB, docs/sat3d.md's option)
  # keep the source's values.
  editable: Optional[jax.Array] = None
  planes: Optional[Callable[[PyTree, jax.Array], PyTree]] = None
  render_planes: Optional[Callable[..., jax.Array]] = None


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Weights and choices of the objective (mirrors config.objective in the SAT3D configs)."""
  distance: Callable[[jax.Array, jax.Array], jax.Array]
  temperature: float = 1.0
  delta: float = 1.0
  target_weight: float = 1.0
  preserve_weight: float = 1.0
  sparsity_weight: float = 0.0
  entropy_weight: float = 0.0
  identity_weight: float = 0.0
  remat: str = "none"  # the edit's rendering's checkpoint policy (sat3d_jax/remat.py)


def _repeat_views(x: jax.Array, views: int) -> jax.Array:
  return jnp.repeat(x, views, axis=0)


def render_views(components: Components, frozen, flat: jax.Array, views: jax.Array, rng,
                 remat: str | bool = "none") -> jax.Array:
  """Images [B*V, H, W, 3] of flat styles [B, C] from views [B, V, 2] (row b*V + v): the
  tri-planes once per face when the components split them off, else `render` per view; under
  the checkpoint policy named `remat` (sat3d_jax/remat.py)."""
  b, v = views.shape[:2]
  if components.planes is not None and components.render_planes is not None:
    render_planes = remat_lib.checkpoint(components.render_planes, remat, part="renderer")

    def run(frozen, flat, views, rng):
      return render_planes(frozen, components.planes(frozen, flat), flat, views, rng)
  else:
    render = remat_lib.checkpoint(components.render, remat, part="renderer")

    def run(frozen, flat, views, rng):
      return render(frozen, _repeat_views(flat, v), views.reshape(b * v, 2), rng)
  return remat_lib.checkpoint(run, remat)(frozen, flat, views, rng)


def edit_and_measure(mask_logits, frozen, batch, rng, components: Components,
                     cfg: ObjectiveConfig):
  """Forward pass: the edit, its renders and every term of the objective (per example)."""
  s_src, s_ref = components.styles(frozen, batch)
  s_src, s_ref = jax.lax.stop_gradient(s_src), jax.lax.stop_gradient(s_ref)
  views = batch["views"]
  v = views.shape[1]
  rngs = (None, None, None) if rng is None else tuple(jax.random.split(rng, 3))

  probabilities = transfer.mask_probabilities(mask_logits, cfg.temperature)
  mask = transfer.target_mask(probabilities, batch["targets"])
  if components.editable is not None:
    mask = jnp.zeros_like(s_src).at[:, components.editable].set(mask)
  s_edit = transfer.edit_styles(s_src, s_ref, mask, cfg.delta)

  x_edit = render_views(components, frozen, s_edit, views, rngs[0], remat=cfg.remat)
  x_src = jax.lax.stop_gradient(render_views(components, frozen, s_src, views, rngs[1]))
  x_ref = jax.lax.stop_gradient(render_views(components, frozen, s_ref, views, rngs[2]))
  q_edit = components.measure(frozen, x_edit)
  q_src = jax.lax.stop_gradient(components.measure(frozen, x_src))
  q_ref = jax.lax.stop_gradient(components.measure(frozen, x_ref))
  targets = _repeat_views(batch["targets"], v)
  l_target, l_preserve = losses_lib.attribute_losses(q_edit, q_src, q_ref, targets,
                                                     components.attributes, cfg.distance)
  terms = {"target": jnp.mean(l_target), "preserve": jnp.mean(l_preserve),
           "sparsity": losses_lib.sparsity(probabilities),
           "entropy": losses_lib.assignment_entropy(probabilities)}
  if cfg.identity_weight and components.embed is not None:
    e_src = jax.lax.stop_gradient(components.embed(frozen, x_src))
    terms["identity"] = jnp.mean(losses_lib.identity_loss(e_src, components.embed(frozen,
                                                                                  x_edit)))
  else:
    terms["identity"] = jnp.zeros(())
  images = {"source": x_src, "reference": x_ref, "edit": x_edit}
  return terms, images


def total_loss(terms: Mapping[str, jax.Array], cfg: ObjectiveConfig) -> jax.Array:
  return (cfg.target_weight * terms["target"] + cfg.preserve_weight * terms["preserve"]
          + cfg.sparsity_weight * terms["sparsity"] + cfg.entropy_weight * terms["entropy"]
          + cfg.identity_weight * terms["identity"])


def loss_and_terms(mask_logits, frozen, batch, rng, components: Components,
                   cfg: ObjectiveConfig) -> tuple[jax.Array, dict]:
  """(the total loss, its terms) of the mask logits: what a training step differentiates."""
  terms, _ = edit_and_measure(mask_logits, frozen, batch, rng, components, cfg)
  return total_loss(terms, cfg), terms


def make_train_step(components: Components, cfg: ObjectiveConfig,
                    optimizer: optax.GradientTransformation, stochastic_render: bool = False):
  """train_step(state, frozen, batch, rng) -> (state, metrics) for the driver; state =
  {'mask': M, 'opt': optimiser state}. Only M is trained."""

  def train_step(state, frozen, batch, rng):
    def loss_fn(mask_logits):
      return loss_and_terms(mask_logits, frozen, batch, rng if stochastic_render else None,
                            components, cfg)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["mask"])
    updates, opt = optimizer.update(grads, state["opt"], state["mask"])
    mask = optax.apply_updates(state["mask"], updates)
    probabilities = transfer.mask_probabilities(mask, cfg.temperature)
    owned = jnp.mean(jnp.argmax(probabilities, axis=0) != probabilities.shape[0] - 1)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "owned_fraction": owned,
               **{f"loss_{k}": v for k, v in terms.items()}}
    return {"mask": mask, "opt": opt}, metrics

  return train_step


def make_eval_step(components: Components, cfg: ObjectiveConfig):
  """eval_step(state, frozen, batch) -> sums for the driver (launch/trainer/task.py): the total
  loss and each term summed over the batch's examples, plus 'count'. The driver divides by the
  count, so eval/loss is the mean objective per example over the whole evaluation set. Renders
  deterministically (no rng), like training without stochastic_render."""

  def eval_step(state, frozen, batch):
    terms, _ = edit_and_measure(state["mask"], frozen, batch, None, components, cfg)
    # Every term is a mean with equal weight per example (over its views; the mask terms do not
    # depend on the example), so mean * B is the per-example sum.
    b = batch["targets"].shape[0]
    sums = {"loss": total_loss(terms, cfg) * b,
            **{f"loss_{k}": v * b for k, v in terms.items()}}
    return sums | {"count": jnp.asarray(b, jnp.float32)}

  return eval_step


def make_init_state(num_attributes: int, num_channels: int, other_logit: float,
                    optimizer: optax.GradientTransformation):
  """init_state(rng) for the driver: the mask logits and the optimiser state."""

  def init_state(rng):
    del rng  # the mask starts deterministic (see transfer.init_mask_logits)
    mask = transfer.init_mask_logits(num_attributes, num_channels, other_logit)
    return {"mask": mask, "opt": optimizer.init(mask)}

  return init_state

