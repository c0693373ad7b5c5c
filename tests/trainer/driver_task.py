"""A small regression task used only to test the generic driver (not a paper task).

Data are step-indexed: the batch of step s is drawn from tf's stateless RNG seeded with
(seed, s), so a resumed run sees the same batches as an uninterrupted one. `nan_at_step` poisons
one batch to test the non-finite guard; `seconds_per_step` slows the input so a test can kill a
run part-way.
"""
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tensorflow as tf

from launch.trainer import InputSpec, Task, base_config

DIM = 16


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  c = base_config()
  c.task = "tests.trainer.driver_task"
  c.total_steps = 40
  c.log_every = 5
  c.checkpoint_every = 10
  c.global_batch_size = 32
  c.learning_rate = 1e-2
  c.nan_at_step = -1
  c.seconds_per_step = 0.0
  c.num_models = 0
  c.model_id = -1  # >= 0: train model `model_id` of the stack alone
  c.tensorboard = False
  return c


def _true_weights():
  return np.linspace(-1.0, 1.0, DIM, dtype=np.float32)[:, None]


def make_task(config) -> Task:
  optimizer = optax.adam(config.learning_rate)

  def init_state(rng):
    k1, k2 = jax.random.split(rng)
    params = {"w1": jax.random.normal(k1, (DIM, 32)) * 0.3, "b1": jnp.zeros(32),
              "w2": jax.random.normal(k2, (32, 1)) * 0.3}
    return {"params": params, "opt": optimizer.init(params)}

  def forward(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]

  def train_step(state, frozen, batch, rng):
    del rng
    def loss_fn(p):
      return jnp.mean((forward(p, batch["x"]) - batch["y"]) ** 2 * frozen["scale"])
    loss, grads = jax.value_and_grad(loss_fn)(state["params"])
    updates, opt = optimizer.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt": opt}, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  def eval_step(state, frozen, batch):
    err = (forward(state["params"], batch["x"]) - batch["y"]) ** 2 * frozen["scale"]
    return {"mse": jnp.sum(err), "count": jnp.asarray(err.size, jnp.float32)}

  def batch_for_step(step, rows):
    step = tf.cast(step, tf.int32)
    x = tf.random.stateless_normal([rows, DIM], seed=tf.stack([config.seed, step]))
    y = tf.matmul(x, _true_weights())
    if config.nan_at_step >= 0:
      x = tf.where(tf.equal(step, config.nan_at_step), x * np.nan, x)
    return {"x": x, "y": y}

  def input_pipeline(spec: InputSpec):
    models = config.num_models
    def make(step):
      if models:
        b = batch_for_step(step, models * config.global_batch_size)
        return {k: tf.reshape(v, [models, config.global_batch_size, -1]) for k, v in b.items()}
      if config.model_id >= 0:  # the rows model `model_id` gets in the stacked layout
        b = batch_for_step(step, (config.model_id + 1) * config.global_batch_size)
        return {k: v[-config.global_batch_size:] for k, v in b.items()}
      return batch_for_step(step, config.global_batch_size)
    ds = tf.data.Dataset.range(spec.start_step, config.total_steps).map(make)
    for batch in ds.as_numpy_iterator():
      if config.seconds_per_step:
        time.sleep(config.seconds_per_step)
      axis_len = batch["x"].shape[spec.split_axis]
      index = [slice(None)] * batch["x"].ndim
      index[spec.split_axis] = spec.process_slice(axis_len)
      yield {k: v[tuple(index[:v.ndim])] for k, v in batch.items()}

  def eval_pipeline(spec: InputSpec):
    for step in range(10_000, 10_002):
      batch = {k: v.numpy() for k, v in batch_for_step(step, config.global_batch_size).items()}
      yield {k: v[spec.process_slice(config.global_batch_size)] for k, v in batch.items()}

  def summaries(state, frozen, rng):
    del frozen, rng
    w = state["params"]["w1"]
    img = (w - w.min()) / (w.max() - w.min() + 1e-6)
    return {"w1": img[None, :, :, None]}

  return Task(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
              frozen=lambda: {"scale": jnp.float32(1.0)},
              eval_step=eval_step if not config.num_models else None,
              eval_pipeline=eval_pipeline,
              summaries=summaries if not config.num_models else None,
              num_models=config.num_models,
              model_ids=(config.model_id,) if config.model_id >= 0 else None)
