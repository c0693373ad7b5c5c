"""objective.remat: a named checkpoint policy of the edit's rendering (sat3d_jax/remat.py).

Every policy renders the same images with the same gradient as 'none' on the tiny model; what each
recomputes shows in the FLOPs the step executes (the backbone's forward runs again in the
backward under 'full', not under 'renderer'); a typo'd name is refused before anything is built,
and configs written when the field was a bool keep their meaning."""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.sat3d_ffhq import get_config
from launch.benchmarks import flops
from launch.tasks import sat3d as sat3d_task
from sat3d_jax import errors, objective, remat
from sat3d_jax.eg3d.generator import SCOPES
from sat3d_jax.model import Sat3dModel


@pytest.fixture(scope="module")
def model():
  return Sat3dModel(get_config("tiny"))


def _batch(model, b=1, v=2):
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  z = jax.random.normal(k1, (2, b, model.generator.z_dim))
  targets = jax.nn.one_hot(jax.random.randint(k2, (b,), 0, len(model.attributes)),
                           len(model.attributes))
  return {"z_src": z[0], "z_ref": z[1], "targets": targets,
          "views": 0.3 * jax.random.normal(k3, (b, v, 2))}


def _loss_fn(model, policy):
  config = get_config("tiny")
  config.objective.remat = policy
  cfg = sat3d_task.objective_config(config)
  components = model.components()

  def loss(mask_logits, frozen, batch):
    return objective.loss_and_terms(mask_logits, frozen, batch, None, components, cfg)[0]
  return loss


def _mask(model):
  return jax.random.normal(jax.random.key(1), (len(model.attributes) + 1, model.num_editable))


def test_every_policy_gives_the_same_rendering_and_gradient(model):
  """The policies wrap the edit's rendering: its images and the gradient to the styles (what
  the mask's gradient flows through) agree with 'none'; the policies in one compiled program
  (one compilation of the tiny model's rendering, forward and backward, per policy is what
  this test's time goes to)."""
  frozen, batch = model.frozen(), _batch(model, 1, 1)
  flat = model.flat_styles(frozen["generator"], model.ws_from_z(frozen["generator"],
                                                                batch["z_src"]))
  r = model.generator.img_resolution
  weights = jax.random.normal(jax.random.key(2), (1, r, r, 3))
  components = model.components()

  def all_policies(flat):
    def loss(flat, policy):
      images = objective.render_views(components, frozen, flat, batch["views"], None, policy)
      return jnp.sum(images * weights)
    # The policies this project wires itself ('full' and 'renderer' wrap different parts);
    # the 'dots' ones only pass jax's policy on (their FLOPs are checked below).
    return {p: jax.value_and_grad(loss)(flat, p) for p in ("none", "full", "renderer")}

  results = jax.jit(all_policies)(flat)
  loss0, grad0 = results["none"]
  assert float(jnp.abs(grad0).max()) > 0  # the gradient is not trivially zero
  for policy, (loss, grad) in results.items():
    np.testing.assert_allclose(loss, loss0, rtol=1e-5, err_msg=policy)
    np.testing.assert_allclose(grad, grad0, rtol=1e-4, atol=1e-4 * float(jnp.abs(grad0).max()),
                               err_msg=policy)


def _flops(model, policy):
  grad = jax.grad(_loss_fn(model, policy))
  count = flops.count_flops(grad, _mask(model), model.frozen(), _batch(model),
                            scopes=tuple(SCOPES.values()))
  return count.by_scope


def test_policies_recompute_what_they_do_not_save(model):
  none, full, renderer = (_flops(model, p) for p in ("none", "full", "renderer"))
  backbone, rend = SCOPES["backbone"], SCOPES["renderer"]
  assert none.keys() == full.keys() == renderer.keys()
  for part in none:  # the forward pass is the same under every policy
    if not part.endswith("(backward)"):
      assert full[part] == renderer[part] == none[part], part
  # 'full' runs the edit's rendering (1 of the 3 faces rendered: source, reference, edit) again
  # in the backward pass; 'renderer' only its camera-dependent part, not the backbone.
  for part, again in ((backbone, full), (rend, full), (rend, renderer)):
    assert again[f"{part} (backward)"] == pytest.approx(
        none[f"{part} (backward)"] + none[part] / 3), part
  assert renderer[f"{backbone} (backward)"] == none[f"{backbone} (backward)"]


def test_a_typo_is_refused_and_bools_keep_their_meaning(model):
  config = get_config("tiny")
  assert config.objective.remat == "none"  # the field is in the experiment's config file
  config.objective.remat = "ful"
  with pytest.raises(errors.InputError, match=r"config.objective.remat must be one of .*'ful'"):
    sat3d_task.make_task(config, model)
  assert remat.policy_name(True) == "full" and remat.policy_name(False) == "none"


def test_the_config_names_exactly_the_policies_remat_knows():
  """configs/sat3d_ffhq.py's comment on objective.remat lists remat.POLICIES, no other name."""
  text = (pathlib.Path(__file__).resolve().parents[2] / "configs" / "sat3d_ffhq.py").read_text()
  comment = text[text.index("checkpoint policy (sat3d_jax/remat.py)"):text.index('remat="none"')]
  assert set(re.findall(r"'(\w+)'", comment)) == set(remat.POLICIES)
