"""FRL-DGT model side: warp, DGM, AU regions, fusion model, losses."""
import pathlib

import flax.core
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from scipy import ndimage
from sklearn.metrics import log_loss

from frldgt_jax import dgm as dgm_lib
from frldgt_jax import losses
from frldgt_jax import model as model_lib
from frldgt_jax import regions
from frldgt_jax.warp import warp
from launch.trainer import from_file

REPO = pathlib.Path(__file__).resolve().parents[2]


def _model_config():
  """The `model` section of the FRL-DGT experiment config (every model size is there)."""
  config = from_file(str(REPO / "configs" / "frldgt_composite.py"))
  return config.copy_and_resolve_references().model


def _flip(a):
  return a[:, :, ::-1]


def _key(seed):
  # 'rbg' keys: XLA:CPU compiles parameter initialisation about 4x faster than with threefry.
  return jax.random.key(seed, impl='rbg')


def _smooth_texture(rng, batch, size, sigma=1.5):
  tex = np.stack([ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
                  for _ in range(batch)])
  tex = (tex - tex.min()) / (tex.max() - tex.min())
  return tex[..., None].astype(np.float32)


# ----------------------------------------------------------------------------------- warp


def test_warp_integer_shift_equals_roll_in_interior():
  rng = np.random.default_rng(0)
  image = rng.standard_normal((2, 12, 14, 3)).astype(np.float32)
  flow = np.zeros((2, 12, 14, 2), np.float32)
  flow[..., 0], flow[..., 1] = 2.0, -1.0  # out[y, x] = image[y - 1, x + 2]
  out = np.asarray(warp(jnp.asarray(image), jnp.asarray(flow)))
  expected = np.roll(image, shift=(1, -2), axis=(1, 2))
  np.testing.assert_array_equal(out[:, 1:, :-2], expected[:, 1:, :-2])
  # Outside, coordinates clamp to the border: row -1 reads row 0.
  np.testing.assert_array_equal(out[:, 0, :-2], image[:, 0, 2:])


def test_warp_subpixel_shift_of_linear_ramp_is_exact():
  h, w = 10, 13
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  a, b, c = 0.7, -1.3, 2.0
  ramp = (a * xs + b * ys + c)[None, ..., None].astype(np.float32)
  rng = np.random.default_rng(1)
  flow = rng.uniform(-0.95, 0.95, (1, h, w, 2)).astype(np.float32)
  out = np.asarray(warp(jnp.asarray(ramp), jnp.asarray(flow)))
  expected = a * (xs + flow[0, ..., 0]) + b * (ys + flow[0, ..., 1]) + c
  np.testing.assert_allclose(out[0, 1:-1, 1:-1, 0], expected[1:-1, 1:-1], atol=1e-5)


def test_warp_matches_scipy_map_coordinates_including_border():
  rng = np.random.default_rng(2)
  image = rng.standard_normal((1, 9, 11, 1))
  flow = rng.uniform(-3.0, 3.0, (1, 9, 11, 2))  # many samples fall outside the image
  ys, xs = np.meshgrid(np.arange(9), np.arange(11), indexing='ij')
  coords = np.stack([ys + flow[0, ..., 1], xs + flow[0, ..., 0]])
  expected = ndimage.map_coordinates(image[0, ..., 0], coords, order=1, mode='nearest')
  out = np.asarray(warp(jnp.asarray(image, jnp.float32), jnp.asarray(flow, jnp.float32)))
  np.testing.assert_allclose(out[0, ..., 0], expected, atol=1e-5)


def test_warp_gradient_reaches_flow_with_ramp_slopes():
  h, w = 8, 9
  ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  ramp = jnp.asarray((0.5 * xs - 0.25 * ys)[None, ..., None], jnp.float32)
  flow = jnp.asarray(np.random.default_rng(3).uniform(-0.4, 0.4, (1, h, w, 2)), jnp.float32)
  grad = np.asarray(jax.grad(lambda f: jnp.sum(warp(ramp, f)))(flow))
  np.testing.assert_allclose(grad[0, 1:-1, 1:-1, 0], 0.5, atol=1e-5)
  np.testing.assert_allclose(grad[0, 1:-1, 1:-1, 1], -0.25, atol=1e-5)


def test_warp_mirror_symmetry_negates_dx():
  rng = np.random.default_rng(4)
  image = jnp.asarray(rng.standard_normal((2, 8, 10, 1)), jnp.float32)
  flow = jnp.asarray(rng.uniform(-2, 2, (2, 8, 10, 2)), jnp.float32)
  mirrored_flow = _flip(flow) * jnp.array([-1.0, 1.0])
  np.testing.assert_allclose(warp(_flip(image), mirrored_flow), _flip(warp(image, flow)),
                             atol=1e-5)


def test_warp_rejects_bad_shapes():
  with pytest.raises(ValueError, match='flow'):
    warp(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 3)))
  with pytest.raises(ValueError, match='differ'):
    warp(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 5, 2)))


# ------------------------------------------------------------------------------------ DGM


def _dgm_config(**overrides):
  c = _model_config().dgm
  c.update(overrides)
  return c


def test_dgm_starts_at_zero_displacement_and_checks_sizes():
  dgm = dgm_lib.DGM(widths=(4, 8), input_stride=2)
  x = jnp.ones((2, 16, 16, 1)) * 0.3
  variables = jax.jit(dgm.init)(_key(0), x, x)
  flow = jax.jit(dgm.apply)(variables, x, 0.5 * x)
  assert flow.shape == (2, 16, 16, 2) and flow.dtype == jnp.float32
  np.testing.assert_array_equal(flow, 0.0)
  with pytest.raises(ValueError, match='divisible by 4'):
    dgm.init(jax.random.key(0), jnp.zeros((1, 18, 18, 1)), jnp.zeros((1, 18, 18, 1)))


def test_smoothness_and_photometric_closed_forms():
  h, w = 6, 7
  xs = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
  flow = np.zeros((1, h, w, 2), np.float32)
  flow[0, ..., 0] = 0.1 * xs  # d(dx)/dx = 0.1 everywhere, all other differences 0
  image = np.zeros((1, h, w, 1), np.float32)
  got = dgm_lib.smoothness_penalty(jnp.asarray(flow), jnp.asarray(image), edge_alpha=0.0)
  np.testing.assert_allclose(got, [0.5 * (0.1 / 2 + 0.0)], rtol=1e-5)
  image[0, :, 3:, 0] = 1.0  # one vertical edge: the difference across it is weighted exp(-alpha)
  got = dgm_lib.smoothness_penalty(jnp.asarray(flow), jnp.asarray(image), edge_alpha=2.0)
  weights = np.ones(w - 1)
  weights[2] = np.exp(-2.0)
  np.testing.assert_allclose(got, [0.5 * (0.1 * weights.mean() / 2)], rtol=1e-5)
  r = jnp.array([-0.5, 0.0, 0.2])
  np.testing.assert_allclose(dgm_lib.photometric_penalty(r, 'l1'), [0.5, 0.0, 0.2])
  np.testing.assert_allclose(dgm_lib.photometric_penalty(r, 'charbonnier', 1e-3, 0.45),
                             (np.asarray(r) ** 2 + 1e-6) ** 0.45, rtol=1e-6)
  with pytest.raises(ValueError, match='photometric'):
    dgm_lib.photometric_penalty(r, 'l2')


@pytest.mark.parametrize('photometric', ['l1', 'census'])
def test_dgm_pretraining_recovers_known_subpixel_displacement(photometric):
  size, batch = 32, 3
  rng = np.random.default_rng(0)
  onset = jnp.asarray(_smooth_texture(rng, batch, size))
  ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  fields = []
  for k in range(batch):  # smooth sub-pixel fields, |d| up to about 1 px
    dx = 0.8 * np.sin(2 * np.pi * ys / size + 1.3 * k) + 0.2
    dy = 0.6 * np.cos(2 * np.pi * xs / size + 1.3 * k)
    fields.append(np.stack([dx, dy], -1))
  true_flow = jnp.asarray(np.stack(fields), jnp.float32)
  target = warp(onset, true_flow)  # so warp(onset, true_flow) == target exactly
  config = _dgm_config(photometric=photometric, smooth_weight=0.05)
  dgm = dgm_lib.DGM(widths=(16, 32), input_stride=2)
  params = jax.jit(dgm.init)(_key(0), onset, target)
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state):
    grads, terms = jax.grad(dgm_lib.pretrain_loss, has_aux=True)(params, dgm, onset, target,
                                                                 config)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, terms

  @jax.jit
  def evaluate_arrays(params):
    flow = dgm.apply(params, onset, target)
    interior = slice(4, size - 4)
    error = jnp.mean(jnp.abs(flow - true_flow)[:, interior, interior])
    photometric = jnp.mean(jnp.abs(warp(onset, flow) - target))
    return error, photometric

  def evaluate(params):
    return tuple(float(x) for x in evaluate_arrays(params))

  error0, photometric0 = evaluate(params)
  for _ in range(60):
    params, opt_state, _ = step(params, opt_state)
  error, photometric = evaluate(params)
  assert photometric < 0.35 * photometric0, (photometric0, photometric)
  assert error < 0.35 * error0, (error0, error)  # error0 = mean |true displacement|


def test_census_distance_ignores_brightness_and_sees_a_subpixel_shift():
  rng = np.random.default_rng(1)
  image = jnp.asarray(_smooth_texture(rng, 2, 32))
  brighter = jnp.clip(image + 0.05, 0, 1)
  shifted = warp(image, jnp.full((2, 32, 32, 2), 0.5, jnp.float32))
  same = float(jnp.mean(dgm_lib.census_distance(image, brighter)))
  moved = float(jnp.mean(dgm_lib.census_distance(image, shifted)))
  assert float(jnp.mean(dgm_lib.census_distance(image, image))) == 0
  assert moved > 20 * max(same, 1e-6)
  # The intensity difference sees the brightness change more than the half-pixel shift.
  assert float(jnp.mean(jnp.abs(brighter - image))) > float(jnp.mean(jnp.abs(shifted - image)))


# -------------------------------------------------------------------------------- regions


@pytest.mark.parametrize('grid', [4, 8, 16, 32])
def test_regions_are_non_empty_and_mirror_partners(grid):
  names = regions.DEFAULT_REGIONS + ('mouth_chin',)
  masks = regions.region_masks(grid, names)
  assert masks.reshape(len(names), -1).sum(1).min() >= 1
  partner = regions.partner_permutation(names)
  for k, name in enumerate(names):
    np.testing.assert_array_equal(masks[k][:, ::-1], masks[partner[k]], err_msg=name)
  indices, valid = regions.region_patch_indices(grid, names)
  perm = regions.mirror_permutation(grid)
  for k in range(len(names)):
    mine = indices[k][valid[k]]
    # Reading a mirrored token grid through region k's indices hits the partner's patches.
    assert sorted(perm[mine].tolist()) == sorted(indices[partner[k]][valid[partner[k]]].tolist())
    assert np.all(indices[k][~valid[k]] == 0)


def test_regions_cover_their_template_landmarks():
  grid = 16
  masks = dict(zip(regions.DEFAULT_REGIONS, regions.region_masks(grid)))
  (lx, ly), (rx, ry), (mx, my) = regions.TEMPLATE

  def patch(x, y):
    return int(y * grid), int(x * grid)

  assert masks['brow_eye_left'][patch(lx, ly)] and masks['brow_eye_right'][patch(rx, ry)]
  assert not masks['brow_eye_left'][patch(rx, ry)]
  assert masks['glabella_nose'][patch(0.5, (ly + my) / 2)]
  assert masks['mouth_corner_left'][patch(mx - 0.12, my)]
  assert masks['mouth_corner_right'][patch(mx + 0.12, my)]
  assert masks['brow_eye_left'][patch(lx, ly - 0.1)]  # the brow above the eye


def test_regions_reject_bad_names():
  with pytest.raises(ValueError, match='unknown'):
    regions.region_masks(8, ('brow_eye_left', 'cheek'))
  with pytest.raises(ValueError, match='mirror partner'):
    regions.region_masks(8, ('brow_eye_left', 'glabella_nose'))


# ---------------------------------------------------------------------------------- model


def _tiny(**overrides):
  c = _model_config()  # a small model at 64 x 64, so each case compiles in seconds
  c.update(dict(image_size=64, token_dim=32, num_heads=2, full_depth=1))
  c.dgm.update(dict(input_stride=2, widths=(8, 16)))
  c.update(overrides)
  return c


BATCH = 4  # one batch size everywhere, so each model compiles once


def _frames(size, seed=0):
  rng = np.random.default_rng(seed)
  onset = _smooth_texture(rng, BATCH, size)
  apex = np.clip(onset + 0.05 * rng.standard_normal(onset.shape), 0, 1).astype(np.float32)
  return jnp.asarray(onset), jnp.asarray(apex)


def _params_like(model, base_params, seed=0):
  """Params for `model`: `base_params` where the path and shape match, else small random values.

  (Compiling an init is the slowest part of these tests on CPU; the structure itself comes from
  the model's own init via jax.eval_shape.)
  """
  size = model.config.image_size
  frames = jnp.zeros((1, size, size, 1))
  shapes = jax.eval_shape(model.init, jax.random.key(0), frames, frames)['params']
  base = traverse_util.flatten_dict(flax.core.unfreeze(base_params))
  rng = np.random.default_rng(seed)
  out = {}
  for path, leaf in traverse_util.flatten_dict(flax.core.unfreeze(shapes)).items():
    if path in base and base[path].shape == leaf.shape:
      out[path] = base[path]
    else:
      out[path] = jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
  return {'params': traverse_util.unflatten_dict(out)}


@pytest.fixture(scope='module')
def tiny_model():
  config = _tiny()
  model = model_lib.build_model(config)
  variables = model_lib.init_variables(model, _key(0))
  return config, model, variables, jax.jit(model.apply, static_argnames='train')


def test_model_shapes_and_init(tiny_model):
  config, model, variables, apply = tiny_model
  onset, apex = _frames(config.image_size)
  logits, aux = apply(variables, onset, apex, jnp.array([False, True, False, True]))
  assert logits.shape == (BATCH, 3) and logits.dtype == jnp.float32
  assert aux['displacement'].shape == (BATCH, 64, 64, 2)
  assert aux['region_tokens'].shape == (BATCH, len(config.regions), config.token_dim)
  for k in ('photometric', 'smoothness', 'dgm_loss'):
    assert aux[k].shape == (BATCH,)
  # Per-region local transformers: params stacked on a leading region axis.
  local = variables['params']['local_fusion']['regions']
  assert all(x.shape[0] == len(config.regions) for x in jax.tree.leaves(local))
  # The zero-initialised DGM head gives the identity warp at init.
  np.testing.assert_array_equal(aux['displacement'], 0.0)
  with pytest.raises(ValueError, match=r'onset must be \[B,64,64,1\]'):
    model.apply(variables, onset[:, :32, :32], apex)


def test_model_gradients_finite_reach_the_dgm_and_dropout_acts(tiny_model):
  config, model, variables, _ = tiny_model
  onset, apex = _frames(config.image_size, seed=1)
  labels = jnp.array([0, 1, 2, 0])
  weights = losses.class_weights(np.array([0, 0, 1, 2]))

  @jax.jit
  @jax.grad
  def loss_grads(params, dgm_weight, dropout_key):
    logits, aux = model.apply({'params': params}, onset, apex, jnp.array([0, 1, 0, 1], bool),
                              train=True, rngs={'dropout': dropout_key})
    return losses.total_loss(logits, labels, aux, dgm_weight, weights)[0]

  grads = loss_grads(variables['params'], config.dgm_weight, _key(0))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads['dgm']['head']['kernel']).max()) > 0
  # L_CE alone reaches the DGM too (through the displacement tokens): end-to-end training.
  ce_grads = loss_grads(variables['params'], 0.0, _key(0))
  assert float(jnp.abs(ce_grads['dgm']['head']['kernel']).max()) > 0
  # Dropout is active in training: another key gives other gradients.
  other = loss_grads(variables['params'], config.dgm_weight, _key(1))
  assert not np.allclose(other['head']['kernel'], grads['head']['kernel'])


def test_model_bfloat16_compute_stays_close_to_float32(tiny_model):
  config, _, variables, apply = tiny_model
  onset, apex = _frames(config.image_size, seed=2)
  flipped = jnp.zeros(BATCH, bool)
  model_bf16 = model_lib.build_model(_tiny(compute_dtype='bfloat16'))
  logits32, aux32 = apply(variables, onset, apex, flipped)
  logits16, aux16 = jax.jit(model_bf16.apply)(variables, onset, apex, flipped)  # same params
  assert logits16.dtype == jnp.float32 and aux16['dgm_loss'].dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits16)))
  scale = float(jnp.abs(logits32).max())
  assert float(jnp.abs(logits16 - logits32).max()) < 0.05 * max(scale, 1.0)
  np.testing.assert_allclose(aux16['dgm_loss'], aux32['dgm_loss'], rtol=1e-5)


@pytest.mark.parametrize('token_fusion', ['linear', 'sequence'])
def test_flipped_flag_undoes_a_mirror_for_a_mirror_equivariant_tokeniser(tiny_model,
                                                                         token_fusion):
  # With a zero displacement and an apex patch embedding whose kernel is left-right symmetric,
  # the token of a mirrored patch equals the token of the original patch; the documented
  # contract is then model(flip(x), flipped=True) == model(x) exactly, regions included.
  model = model_lib.build_model(_tiny(displacement='zero', token_fusion=token_fusion))
  variables = _params_like(model, tiny_model[2]['params'], seed=3)
  kernel = variables['params']['embed_apex']['kernel']  # [P, P, 1, D]
  variables['params']['embed_apex']['kernel'] = 0.5 * (kernel + kernel[:, ::-1])
  onset, apex = _frames(model.config.image_size, seed=3)
  onset_f, apex_f = _flip(onset), _flip(apex)
  apply = jax.jit(model.apply)
  no, yes = jnp.zeros(BATCH, bool), jnp.ones(BATCH, bool)
  logits, aux = apply(variables, onset, apex, no)
  logits_f, aux_f = apply(variables, onset_f, apex_f, yes)
  np.testing.assert_allclose(logits_f, logits, atol=1e-5)
  np.testing.assert_allclose(aux_f['region_tokens'], aux['region_tokens'], atol=1e-5)
  # Without the flag the mirrored input is a different input: the regions see other patches.
  _, aux_n = apply(variables, onset_f, apex_f, no)
  assert not np.allclose(aux_n['region_tokens'], aux['region_tokens'], atol=1e-3)
  # Mixed batch: the flag acts per example.
  mixed = np.array([False, True, False, True])
  pick = mixed[:, None, None, None]
  logits_m, _ = apply(variables, jnp.where(pick, onset_f, onset), jnp.where(pick, apex_f, apex),
                      jnp.asarray(mixed))
  np.testing.assert_allclose(logits_m, logits, atol=1e-5)


def test_zero_displacement_ablation(tiny_model):
  config, _, variables, apply = tiny_model
  onset, apex = _frames(config.image_size, seed=4)
  flipped = jnp.ones(BATCH, bool)
  zero_model = model_lib.build_model(_tiny(displacement='zero'))
  size = config.image_size
  frames = jnp.zeros((1, size, size, 1))
  zero_shapes = jax.eval_shape(zero_model.init, jax.random.key(0), frames, frames)['params']
  assert 'dgm' not in zero_shapes
  fusion_shapes = {k: v for k, v in jax.tree.map(jnp.shape, variables['params']).items()
                   if k != 'dgm'}
  assert jax.tree.map(lambda s: s.shape, zero_shapes) == fusion_shapes
  zero_vars = {'params': {k: v for k, v in variables['params'].items() if k != 'dgm'}}
  logits, aux = apply(variables, onset, apex, flipped)
  zlogits, zaux = jax.jit(zero_model.apply)(zero_vars, onset, apex, flipped)
  assert zlogits.shape == logits.shape
  assert jax.tree.map(jnp.shape, zaux) == jax.tree.map(jnp.shape, aux)
  np.testing.assert_array_equal(zaux['displacement'], 0.0)
  # Identity-warp DGM terms: the Charbonnier penalty of apex - onset, no smoothness.
  d = np.asarray(apex, np.float64) - np.asarray(onset, np.float64)
  np.testing.assert_allclose(zaux['photometric'], ((d ** 2 + 1e-6) ** 0.45).mean((1, 2, 3)),
                             rtol=1e-5)
  np.testing.assert_array_equal(zaux['smoothness'], 0.0)
  # With the displacement as the only input nothing about the clip remains: equal logits.
  blind = model_lib.build_model(_tiny(displacement='zero', inputs=('displacement',)))
  blind_logits, _ = jax.jit(blind.apply)(_params_like(blind, zero_vars['params']), onset, apex,
                                         flipped)
  np.testing.assert_allclose(blind_logits, jnp.broadcast_to(blind_logits[0], (BATCH, 3)),
                             atol=1e-6)
  assert float(jnp.abs(blind_logits).max()) > 0


def test_with_pretrained_dgm_replaces_only_the_dgm(tiny_model):
  config, _, variables, _ = tiny_model
  pretrained = jax.tree.map(lambda x: np.asarray(x) + 1.0, {'params': variables['params']['dgm']})
  loaded = model_lib.with_pretrained_dgm(variables, pretrained)
  jax.tree.map(np.testing.assert_array_equal, loaded['params']['dgm'], pretrained['params'])
  jax.tree.map(np.testing.assert_array_equal, loaded['params']['head'],
               variables['params']['head'])
  frames = jnp.zeros((1, config.image_size, config.image_size, 1))
  other = jax.eval_shape(dgm_lib.DGM(widths=(4, 8), input_stride=2).init, jax.random.key(0),
                         frames, frames)
  with pytest.raises(ValueError, match='differ'):
    model_lib.with_pretrained_dgm(variables, other)
  # The stage-1 DGM built from the same config has exactly the model's DGM structure.
  stage1 = jax.eval_shape(dgm_lib.dgm_from_config(config.dgm).init, jax.random.key(0), frames,
                          frames)
  assert (jax.tree.map(lambda s: s.shape, stage1['params'])
          == jax.tree.map(jnp.shape, variables['params']['dgm']))


def test_config_validation():
  with pytest.raises(ValueError, match='compute_dtype'):
    model_lib.build_model(_tiny(compute_dtype='float16'))
  with pytest.raises(ValueError, match='displacement'):
    model_lib.build_model(_tiny(displacement='flow'))
  with pytest.raises(ValueError, match='inputs'):
    model_lib.build_model(_tiny(inputs=('apex', 'onset')))
  with pytest.raises(ValueError, match='patch_size'):
    model_lib.build_model(_tiny(patch_size=7))


# --------------------------------------------------------------------------------- losses


def test_weighted_cross_entropy_matches_sklearn_log_loss():
  rng = np.random.default_rng(5)
  logits = rng.standard_normal((20, 3)).astype(np.float32) * 2
  labels = rng.integers(0, 3, 20)
  weights = losses.class_weights(labels)
  mask = rng.random(20) < 0.7
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  got, total = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                             weights, jnp.asarray(mask))
  expected = log_loss(labels[mask], probs[mask], sample_weight=weights[labels[mask]],
                      labels=[0, 1, 2])
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(total, weights[labels[mask]].sum(), rtol=1e-6)
  plain, _ = losses.weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(plain, log_loss(labels, probs, labels=[0, 1, 2]), rtol=1e-5)


def test_class_weights_and_total_loss():
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 0])
  w = losses.class_weights(labels, 3)
  np.testing.assert_allclose(w, [8 / (3 * 5), 8 / (3 * 2), 8 / (3 * 1)], rtol=1e-6)
  np.testing.assert_allclose(w[labels].mean(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(losses.class_weights(np.array([0, 0, 2]), 3), [0.75, 0.0, 1.5])
  with pytest.raises(ValueError, match='outside'):
    losses.class_weights(np.array([0, 3]))
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  y = jnp.array([0, 1, 2])
  aux = {'dgm_loss': jnp.array([1.0, 2.0, 9.0]), 'photometric': jnp.array([0.5, 1.0, 9.0]),
         'smoothness': jnp.array([5.0, 10.0, 0.0])}
  mask = jnp.array([True, True, False])
  loss, terms = losses.total_loss(logits, y, aux, 0.1, mask=mask)
  ce = np.mean([np.log(1 + 2 * np.exp(-2.0)), np.log(2 + np.e) - 1.0])
  np.testing.assert_allclose(terms['ce'], ce, rtol=1e-5)
  np.testing.assert_allclose(terms['dgm_loss'], 1.5)
  np.testing.assert_allclose(terms['smoothness'], 7.5)
  np.testing.assert_allclose(loss, ce + 0.15, rtol=1e-5)
