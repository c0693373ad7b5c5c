"""Planted truth (sat3d.md): the real mask, edit, losses and train step recover known channels.

A stand-in generator whose style channels are known to control distinct image regions (attribute
a's channels paint stripe a of the image, view-dependently; the remaining channels paint a
background stripe nobody measures) and a stand-in measurement with a known meaning per attribute
(a fixed softmax read-out of that attribute's stripe). Trained through `objective.make_train_step`
the learned mask must put each attribute's top-k control probability on its planted channels.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sat3d_jax import baselines, objective, qmm, transfer

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
    top = baselines.correlated_channels(probabilities[a], K_CH)  # the K_CH most probable
    planted = set(range(a * K_CH, (a + 1) * K_CH))
    precision = len(planted.intersection(top.tolist())) / K_CH
    assert precision >= 0.9, (ATTRS[a], distance, sorted(top.tolist()))
  # Background channels are owned by no attribute.
  assert probabilities[-1, A * K_CH:].mean() > probabilities[:-1, A * K_CH:].max(axis=0).mean()


def test_driver_run_lowers_train_and_eval_loss(tmp_path, capsys):
  """The planted problem through the training driver (8 devices), with the SAT3D eval step on a
  fixed set: metrics.jsonl shows the training and evaluation losses falling, the evaluation
  before the first step equals the objective averaged one example at a time, and the run ends
  by printing first -> last of both."""
  import json
  from launch.trainer import Task, base_config, train_and_evaluate

  components = _stand_ins()
  cfg = objective.ObjectiveConfig(distance=qmm.get_distance("sym_kl"), sparsity_weight=0.05)
  optimizer = optax.adam(0.05)
  init_state = objective.make_init_state(A, C, other_logit=1.0, optimizer=optimizer)
  eval_keys = [jax.random.key(10_000 + i) for i in range(2)]

  def numpy_batch(key, spec):
    rows = spec.process_slice(16)
    return {k: np.asarray(v)[rows] for k, v in _batch(key).items()}

  def input_pipeline(spec):
    for step in range(spec.start_step, config.total_steps):
      yield numpy_batch(jax.random.key(step), spec)

  def eval_pipeline(spec):
    for key in eval_keys:
      yield numpy_batch(key, spec)

  task = Task(init_state=init_state,
              train_step=objective.make_train_step(components, cfg, optimizer),
              input_pipeline=input_pipeline,
              eval_step=objective.make_eval_step(components, cfg),
              eval_pipeline=eval_pipeline)
  config = base_config()
  config.update(total_steps=60, log_every=10, checkpoint_every=60, eval_every=20,
                tensorboard=False)
  train_and_evaluate(config, tmp_path, task=task)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [r["loss"] for r in records if "loss" in r]
  evals = {r["step"]: r for r in records if "eval/loss" in r}
  assert len(train) == 6 and sorted(evals) == [0, 20, 40, 60]
  assert train[-1] < 0.7 * train[0]
  assert evals[60]["eval/loss"] < 0.7 * evals[0]["eval/loss"]
  assert all(r["eval/count"] == 32 for r in evals.values())

  # Step 0: the objective of the initial mask, example by example, averaged over the set.
  mask = init_state(None)["mask"]
  singles = []
  for key in eval_keys:
    batch = _batch(key)
    for i in range(16):
      one = {k: v[i:i + 1] for k, v in batch.items()}
      terms, _ = objective.edit_and_measure(mask, None, one, None, components, cfg)
      singles.append(float(objective.total_loss(terms, cfg)))
  assert evals[0]["eval/loss"] == pytest.approx(np.mean(singles), rel=1e-4)

  printed = capsys.readouterr().out
  assert f"train loss (mean over each logged interval): {train[0]:.5g} at step 10 -> " \
         f"{train[-1]:.5g} at step 60" in printed
  assert f"eval/loss: {evals[0]['eval/loss']:.5g} at step 0 -> " \
         f"{evals[60]['eval/loss']:.5g} at step 60" in printed


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
