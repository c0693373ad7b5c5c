"""Planted truth (sat3d.md): the real mask, edit, losses and train step recover known channels.

A stand-in generator whose style channels are known to control distinct image regions (attribute
a's channels paint stripe a of the image, view-dependently; the remaining channels paint a
background stripe nobody measures) and a stand-in measurement with a known meaning per attribute
(a fixed softmax read-out of that attribute's stripe). Trained through `objective.make_train_step`
the learned mask must put each attribute's top-k control probability on its planted channels.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sat3d_jax import objective, qmm, transfer

A, K_CH, BG, GROUPS, PIX = 3, 8, 16, 3, 12
C = A * K_CH + BG
ATTRS = ("hair", "beard", "glasses")


def _stand_ins(seed=0):
  rng = np.random.default_rng(seed)
  paint = rng.normal(size=(A, K_CH, PIX)).astype(np.float32)
  paint_bg = rng.normal(size=(BG, PIX)).astype(np.float32)
  readout = rng.normal(size=(A, GROUPS, PIX)).astype(np.float32)

  def render(frozen, s, views, rng_):
    del frozen, rng_
    gain = 1.0 + 0.2 * jnp.tanh(views[:, :1])  # [N, 1]: the view changes the image
    stripes = [jnp.tanh(s[:, a * K_CH:(a + 1) * K_CH] @ paint[a]) * gain for a in range(A)]
    stripes.append(jnp.tanh(s[:, A * K_CH:] @ paint_bg) * gain)
    return jnp.stack(stripes, axis=1)[:, :, :, None].repeat(3, axis=-1)  # [N, A+1, PIX, 3]

  def measure(frozen, images):
    del frozen
    return {name: jax.nn.softmax(3.0 * images[:, a, :, 0] @ readout[a].T, axis=-1)
            for a, name in enumerate(ATTRS)}

  def styles(frozen, batch):
    del frozen
    return batch["s_src"], batch["s_ref"]

  return objective.Components(attributes=ATTRS, styles=styles, render=render, measure=measure)


def _batch(key, batch_size=16, views=2):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  targets = jax.nn.one_hot(jax.random.randint(k3, (batch_size,), 0, A), A)
  # Sometimes two targets at once, as in the real pipeline.
  second = jax.nn.one_hot(jax.random.randint(k4, (batch_size,), 0, A), A)
  targets = jnp.maximum(targets, second * (jax.random.uniform(k4, (batch_size, 1)) < 0.3))
  return {"s_src": jax.random.normal(k1, (batch_size, C)),
          "s_ref": jax.random.normal(k2, (batch_size, C)),
          "targets": targets,
          "views": 0.3 * jax.random.normal(k3, (batch_size, views, 2))}


@pytest.mark.parametrize("distance", ["sym_kl", "l1"])
def test_learned_mask_finds_planted_channels(distance):
  components = _stand_ins()
  cfg = objective.ObjectiveConfig(distance=qmm.get_distance(distance), temperature=1.0,
                                  sparsity_weight=0.05)
  optimizer = optax.adam(0.05)
  init = objective.make_init_state(A, C, other_logit=1.0, optimizer=optimizer)
  step = jax.jit(objective.make_train_step(components, cfg, optimizer))
  state = init(None)
  losses = []
  for i in range(300):
    state, metrics = step(state, None, _batch(jax.random.key(i)), None)
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
  probabilities = np.asarray(transfer.mask_probabilities(state["mask"], cfg.temperature))
  for a in range(A):
    top = transfer.attribute_channels(probabilities, a, K_CH)
    planted = set(range(a * K_CH, (a + 1) * K_CH))
    precision = len(planted.intersection(top.tolist())) / K_CH
    assert precision >= 0.9, (ATTRS[a], distance, sorted(top.tolist()))
  # Background channels are owned by no attribute.
  assert probabilities[-1, A * K_CH:].mean() > probabilities[:-1, A * K_CH:].max(axis=0).mean()


def test_edit_formula_closed_form():
  p = jnp.array([[0.5, 0.1], [0.2, 0.3], [0.3, 0.6]])  # 2 attributes + other, 2 channels
  m = transfer.target_mask(p, jnp.array([[1.0, 1.0]]))
  np.testing.assert_allclose(m, [[0.7, 0.4]], rtol=1e-6)
  s = transfer.edit_styles(jnp.array([[1.0, 2.0]]), jnp.array([[3.0, -2.0]]), m, delta=0.5)
  np.testing.assert_allclose(s, [[1.0 + 0.5 * 0.7 * 2.0, 2.0 - 0.5 * 0.4 * 4.0]], rtol=1e-6)
  probs = transfer.mask_probabilities(jnp.zeros((3, 5)).at[-1].set(2.0), 1.0)
  np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="unknown attribute 'bread'"):
    transfer.targets_from_names(["bread"], ATTRS)
