"""The hot programs lower for the accelerators they are for, with no unexpected library call.

`jax.export` lowers, for the `cuda` and `tpu` platforms (no accelerator needed), the SAT3D
training step at the full FFHQ-512 architecture with the ViT-B/16 CLIP (configs/sat3d_ffhq.py
:bench), the stacked FRL-DGT training step (configs/frldgt_composite.py:synthetic, every fold in
one program) and the inversion step (d loss / d ws at FFHQ-512 with the CLIP feature loss), all
on abstract parameters (jax.ShapeDtypeStruct: nothing is initialised or compiled). The custom-call
targets of each lowered module must equal the checked-in allow-list
(tests/lowering/custom_calls.json): a host callback or a new library call in a hot path fails
here until someone looks at it and updates the list.
"""
import functools
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from launch import trainer
from launch.benchmarks import task_step
from launch.benchmarks.suites import sat3d as sat3d_suite

ALLOW_LIST = pathlib.Path(__file__).with_name("custom_calls.json")
PLATFORMS = ("cuda", "tpu")
_TARGET = re.compile(r'stablehlo\.custom_call @([\w.$-]+)|call_target_name = "([^"]+)"')


def custom_call_targets(mlir_text: str) -> list[str]:
  """The sorted set of custom-call targets in a StableHLO module's text."""
  return sorted({a or b for a, b in _TARGET.findall(mlir_text)})


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), tree)


def _sat3d_step():
  return sat3d_suite.abstract_train_step("configs/sat3d_ffhq.py:bench")


def _frldgt_step():
  from frldgt_jax import training
  config = task_step.load_config("configs/frldgt_composite.py:synthetic")
  folds = 3 * int(config.data.synthetic_subjects)  # one per subject of the three databases
  model, dgm, optimizer, dgm_optimizer = training.build(config)
  init_state, train_step = training.make_train_fns(config, model, dgm, optimizer, dgm_optimizer)
  task = trainer.Task(init_state=init_state, train_step=train_step, input_pipeline=None,
                      num_models=folds, model_ids=tuple(range(folds)))
  programs = trainer.make_programs(task, folds, config.seed)
  state = jax.eval_shape(programs.init, programs.init_key, programs.model_ids)
  clips, s = folds * int(config.data.synthetic_clips_per_subject), int(config.data.resolution)
  frozen = {"frames": jax.ShapeDtypeStruct((clips, int(config.data.frames), s, s, 1),
                                           jnp.uint8)}
  m, n, c = folds, int(config.batch_size), int(config.model.num_classes)
  batch = {"index": jax.ShapeDtypeStruct((m, n), jnp.int32),
           "label": jax.ShapeDtypeStruct((m, n), jnp.int32),
           "class_weights": jax.ShapeDtypeStruct((m, n, c), jnp.float32)}
  return programs.train, (state, frozen, batch, jnp.int32(config.dgm_pretrain_steps),
                          programs.model_ids)


def _inversion_step():
  from sat3d_jax import clip_utils, inversion
  from sat3d_jax.eg3d.generator import generator_from_spec
  gen = generator_from_spec("preset:ffhq512", abstract=True)
  spec, clip_params = clip_utils.named_random_clip("random-vit-b16", abstract=True)
  res, f32 = gen.img_resolution, jnp.float32
  fn = functools.partial(inversion._latent_grads, arch=gen.arch,  # pylint: disable=protected-access
                         options=gen.options, clip_spec=spec)
  args = (gen.params, jax.ShapeDtypeStruct((1, gen.num_ws, gen.w_dim), f32),
          jax.ShapeDtypeStruct((1, 25), f32), jax.ShapeDtypeStruct((1, res, res, 3), f32),
          jax.ShapeDtypeStruct((len(inversion.LOSS_TERMS),), f32), clip_params,
          jax.ShapeDtypeStruct((1, spec.embed_dim), f32))
  return fn, args


PROGRAMS = {"sat3d_train_step_ffhq512": _sat3d_step, "frldgt_stacked_train_step": _frldgt_step,
            "inversion_step_ffhq512": _inversion_step}


def test_custom_call_targets_of_a_module():
  text = ('%0 = stablehlo.custom_call @cusolver_getrf(%a) : ...\n'
          '"stablehlo.custom_call"(%b) {call_target_name = "xla_python_gpu_callback"} : ...\n')
  assert custom_call_targets(text) == ["cusolver_getrf", "xla_python_gpu_callback"]
  fn = jax.jit(lambda x: jax.pure_callback(np.sin, jax.ShapeDtypeStruct((2,), jnp.float32), x))
  # (jax.export refuses host callbacks outright; a plain CPU lowering shows how one looks.)
  lowered = fn.lower(jax.ShapeDtypeStruct((2,), jnp.float32))
  assert any("callback" in t for t in custom_call_targets(lowered.as_text()))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_lowers_for_gpu_and_tpu_with_allowed_custom_calls(name):
  allowed = json.loads(ALLOW_LIST.read_text())
  fn, args = PROGRAMS[name]()
  jitted = fn if hasattr(fn, "trace") else jax.jit(fn)
  for platform in PLATFORMS:
    exported = export.export(jitted, platforms=[platform])(*args)
    assert exported.platforms == (platform,)
    found = custom_call_targets(exported.mlir_module())
    assert found == allowed[platform][name], (
        f"{name} on {platform}: custom calls {found}, allow-list {allowed[platform][name]} "
        f"({ALLOW_LIST}); a new library call or host callback in the hot path? Update the "
        "list only once it is understood")
