"""A driver task with a NumPy input pipeline (no TensorFlow anywhere): the stand-in suite the
GPU-run test (test_gpu_run.py) measures where TensorFlow is blocked."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from launch.trainer import InputSpec, Task, base_config

DIM = 8


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  config = base_config()
  config.update(dict(task="tests.benchmarks.numpy_task", total_steps=10, global_batch_size=16,
                     tensorboard=False))
  return config


def make_task(config) -> Task:
  optimizer = optax.sgd(0.1)

  def train_step(state, frozen, batch, rng):
    del frozen, rng
    def loss_fn(w):
      return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(state["w"])
    updates, opt = optimizer.update(grads, state["opt"], state["w"])
    return {"w": optax.apply_updates(state["w"], updates), "opt": opt}, {"loss": loss}

  def input_pipeline(spec: InputSpec):
    for step in range(spec.start_step, config.total_steps):
      rng = np.random.default_rng([config.seed, step])
      x = rng.standard_normal((config.global_batch_size, DIM)).astype(np.float32)
      rows = spec.process_slice(config.global_batch_size)
      yield {"x": x[rows], "y": x[rows].sum(axis=1, keepdims=True)}

  def init_state(rng):
    w = jax.random.normal(rng, (DIM, 1))
    return {"w": w, "opt": optimizer.init(w)}

  return Task(init_state=init_state, train_step=train_step, input_pipeline=input_pipeline,
              global_batch_size=config.global_batch_size)
