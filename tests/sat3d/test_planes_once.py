"""Tri-planes once per face: the objective renders V views of each face from one backbone pass,
with the same numbers as rendering every view from scratch, and a backbone cost that does not
grow with views.count (FLOPs counted on the training step's jaxpr, forward and backward)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.sat3d_ffhq import get_config
from launch.benchmarks import flops
from launch.tasks import sat3d as sat3d_task
from sat3d_jax import objective
from sat3d_jax.eg3d.generator import SCOPES
from sat3d_jax.model import Sat3dModel


@pytest.fixture(scope="module")
def model():
  config = get_config("tiny")
  return Sat3dModel(config)


def _batch(model, b, v, seed=0):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  z = jax.random.normal(k1, (2, b, model.generator.z_dim))
  targets = jax.nn.one_hot(jax.random.randint(k2, (b,), 0, len(model.attributes)),
                           len(model.attributes))
  return {"z_src": z[0], "z_ref": z[1], "targets": targets,
          "views": 0.3 * jax.random.normal(k3, (b, v, 2))}


def test_planes_once_equals_rendering_every_view(model):
  components = model.components()
  per_view = dataclasses.replace(components, planes=None, render_planes=None)
  batch = _batch(model, 2, 3)
  frozen = model.frozen()
  flat = model.flat_styles(frozen["generator"], model.ws_from_z(frozen["generator"],
                                                                batch["z_src"]))
  run = jax.jit(objective.render_views, static_argnums=0)
  once = run(components, frozen, flat, batch["views"], None)
  every = run(per_view, frozen, flat, batch["views"], None)
  assert once.shape == (6, model.generator.img_resolution, model.generator.img_resolution, 3)
  np.testing.assert_allclose(once, every, atol=1e-5, rtol=0)
  assert float(jnp.std(once[0] - once[1])) > 1e-3  # the views differ: the test can fail


def _step_flops(model, views):
  components = model.components()
  cfg = sat3d_task.objective_config(model.config)
  optimizer = sat3d_task.make_optimizer(model.config)
  step = objective.make_train_step(components, cfg, optimizer)
  state = objective.make_init_state(len(model.attributes), model.num_editable, 2.0,
                                    optimizer)(None)
  count = flops.count_flops(step, state, model.frozen(), _batch(model, 2, views), None,
                            scopes=tuple(SCOPES.values()))
  return count.by_scope


def test_backbone_flops_do_not_grow_with_views(model):
  one, three = _step_flops(model, 1), _step_flops(model, 3)
  backbone = SCOPES["backbone"]
  assert one[backbone] > 0 and one[f"{backbone} (backward)"] > 0
  assert three[backbone] == one[backbone]
  assert three[f"{backbone} (backward)"] == one[f"{backbone} (backward)"]
  # The camera-dependent parts do grow with the views (so the count sees the views).
  assert three[SCOPES["renderer"]] == pytest.approx(3 * one[SCOPES["renderer"]])
  assert three[f"{SCOPES['superres']} (backward)"] == pytest.approx(
      3 * one[f"{SCOPES['superres']} (backward)"])
