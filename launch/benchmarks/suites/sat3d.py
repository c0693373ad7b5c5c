"""SAT3D training step throughput (images/s), its views axis and where its time goes.

Quick: configs/sat3d_ffhq.py:tiny; full: configs/sat3d_ffhq.py:bench (random full FFHQ-512 EG3D
and a random ViT-B/16 CLIP). Cases:

  * the training step as launch/train.py runs it (launch/benchmarks/task_step.py) at
    views.count = 1, 2 and 4 (VIEWS): each face's tri-planes are computed once and rendered from
    its views, so an extra view costs rendering, super-resolution and CLIP, not the backbone;
    the suite's summary gives the cost of each extra view;
  * the breakdown of the step at the config's views.count, each part its own compiled program
    on the step's shapes (B faces, V views: source, reference and edit): mapping + styles
    (2B), tri-plane backbone (3B faces), volume renderer (3BV views), super-resolution (3BV),
    the QMM's CLIP forward (3BV images), and the backward pass (the step's vjp, from the
    residuals a forward program saved). Each part's FLOPs and % of peak come with its row; the
    summary checks the parts' sum against the whole step (the rest is the optimiser update,
    the losses and what the parts' programs cannot fuse across).

The edit's styles in the breakdown are the source's (the edit's values do not change the cost).
A config of another task (e.g. the driver's toy task in the tests) is measured as its step alone.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from launch.benchmarks import harness, task_step
from launch.benchmarks.suites import Finish, SuiteOptions

QUICK_CONFIG = "configs/sat3d_ffhq.py:tiny"
FULL_CONFIG = "configs/sat3d_ffhq.py:bench"
VIEWS = (1, 2, 4)
SAT3D_TASK = "launch.tasks.sat3d"
# The sum of the parts is checked against the whole step: outside these bounds the summary
# warns (separate programs cannot fuse across their boundaries, so some gap is expected).
SUM_BOUNDS = (0.7, 1.4)


@dataclasses.dataclass
class _Part:
  """One part of the breakdown: its program, how to make its inputs from earlier outputs."""
  name: str
  fn: Callable
  inputs: Callable[[dict], list]  # {earlier part name: output} -> args
  items: int
  prepared: Optional[harness.Prepared] = None


def _parts(model, frozen, batch, cfg, components) -> list[_Part]:
  """The breakdown's programs (see the module docstring), in the order they feed each other."""
  from sat3d_jax import objective  # pylint: disable=g-import-not-at-top
  from sat3d_jax import eg3d  # pylint: disable=g-import-not-at-top
  gen, arch, options = model.generator, model.generator.arch, model.generator.options
  b, v = batch["views"].shape[:2]
  views3 = jnp.concatenate([batch["views"]] * 3)  # source, reference, edit

  def styles(frozen, batch):
    return components.styles(frozen, batch)

  def backbone(frozen, s):
    return model.planes_flat(frozen["generator"], jnp.concatenate([s[0], s[1], s[0]]))

  def volume(frozen, planes, views):
    n, v = views.shape[:2]
    return eg3d.apply_volume_render(frozen["generator"], arch, jnp.repeat(planes, v, axis=0),
                                    model.cameras(views.reshape(n * v, 2)), options)[0]

  def superres(frozen, feature, s):
    flat = jnp.repeat(jnp.concatenate([s[0], s[1], s[0]]), v, axis=0)
    return eg3d.apply_superresolution(frozen["generator"], arch, feature,
                                      gen.unflatten_styles(flat), options)[0]

  def clip(frozen, images):
    return components.measure(frozen, images)

  def forward(mask, frozen, batch):
    return jax.vjp(lambda m: objective.loss_and_terms(m, frozen, batch, None, components, cfg),
                   mask, has_aux=True)

  def backward(vjp_fn):
    return vjp_fn(jnp.ones((), jnp.float32))

  return [
      _Part("mapping + styles", styles, lambda o: [frozen, batch], 2 * b),
      _Part("tri-plane backbone", backbone, lambda o: [frozen, o["mapping + styles"]], 3 * b),
      _Part("volume renderer", volume,
            lambda o: [frozen, o["tri-plane backbone"], views3], 3 * b * v),
      _Part("super-resolution", superres,
            lambda o: [frozen, o["volume renderer"], o["mapping + styles"]], 3 * b * v),
      _Part("CLIP forward (QMM)", clip, lambda o: [frozen, o["super-resolution"]], 3 * b * v),
      _Part("forward with residuals", forward, lambda o: [o["mask"], frozen, batch], b),
      _Part("backward pass", backward, lambda o: [o["forward with residuals"][1]], b),
  ]


def synthetic_batch(config, model, setup) -> dict:
  """A global batch of the task's structure drawn in memory with jax.random (seeded pairs,
  1..max_targets targets, views from the config's clipped normals), laid out on the setup's
  mesh as the driver lays out the input pipeline's: the benchmark path needs no TensorFlow
  (sat3d_jax/pairs.py draws the training batches with tf.data)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from launch.trainer import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  b, v, a = config.global_batch_size, config.views.count, len(model.attributes)
  rng = np.random.default_rng(config.seed)
  c = config.views
  count = rng.integers(1, config.max_targets + 1, b)
  order = np.argsort(rng.random((b, a)), axis=1)
  targets = (np.argsort(order, axis=1) < count[:, None]).astype(np.float32)
  yaw = np.clip(rng.normal(c.yaw_mean, c.yaw_std, (b, v)), c.yaw_mean - c.yaw_limit,
                c.yaw_mean + c.yaw_limit)
  pitch = np.clip(rng.normal(c.pitch_mean, c.pitch_std, (b, v)), c.pitch_mean - c.pitch_limit,
                  c.pitch_mean + c.pitch_limit)
  local = {"z_src": rng.standard_normal((b, model.generator.z_dim), np.float32),
           "z_ref": rng.standard_normal((b, model.generator.z_dim), np.float32),
           "targets": targets, "views": np.stack([yaw, pitch], -1).astype(np.float32)}
  if config.source == "latents":
    n = int(setup.frozen["latents"].shape[0])
    local = {"src_index": rng.integers(0, n, b).astype(np.int32),
             "ref_index": rng.integers(0, n, b).astype(np.int32),
             "targets": local["targets"], "views": local["views"]}
  return mesh_lib.global_batch(local, setup.mesh, setup.split_axis)


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                     sharding=getattr(x, "sharding", None)),
                      tree)


def _prepare_parts(parts: list[_Part], mask, dtype: str, options: SuiteOptions) -> None:
  """Traces each part on abstract inputs (eval_shape of the earlier parts) and hands its
  compilation to the pool."""
  shapes = {"mask": _abstract(mask)}
  for part in parts:
    args = part.inputs(shapes)
    part.prepared = harness.prepare("sat3d", f"breakdown: {part.name}", part.fn, args,
                                    items_per_call=part.items, item="images", batch=part.items,
                                    dtype=dtype, pool=options.compile_pool, log=options.log)
    shapes[part.name] = jax.eval_shape(part.fn, *args)


def _run_parts(parts: list[_Part], mask, options: SuiteOptions) -> list[dict]:
  outputs, cases = {"mask": mask}, []
  for part in parts:
    args = part.inputs(outputs)
    cases.append(harness.run(part.prepared, warmup=options.warmup, runs=options.runs,
                             args=args, peaks=options.peaks, pool=options.compile_pool,
                             log=options.log))
    if part.name != "backward pass":
      outputs[part.name] = harness.block(part.prepared.compiled()(*args))
    part.prepared.args = []
  return cases


def summarise(step: dict, parts: Sequence[dict], views: dict[int, dict]) -> list[str]:
  """The suite's summary lines: the parts' sum against the step, the cost of each extra view."""
  lines = []
  by_name = {c["case"].removeprefix("breakdown: "): c for c in parts if c.get("status") == "ok"}
  if step and step.get("status") == "ok" and by_name:
    counted = [n for n in by_name if n != "forward with residuals"]
    total = sum(by_name[n]["step_s"]["median"] for n in counted)
    whole = step["step_s"]["median"]
    ratio = total / whole
    shares = ", ".join(f"{n} {100 * by_name[n]['step_s']['median'] / whole:.0f}%"
                       for n in counted)
    verdict = ("within" if SUM_BOUNDS[0] <= ratio <= SUM_BOUNDS[1] else "OUTSIDE")
    lines.append(f"breakdown: the parts sum to {1e3 * total:.1f} ms = {ratio:.2f}x the whole "
                 f"step ({1e3 * whole:.1f} ms; {verdict} the expected {SUM_BOUNDS[0]}-"
                 f"{SUM_BOUNDS[1]}x); share of the step: {shares}")
    if "forward with residuals" in by_name:
      fwd = by_name["forward with residuals"]["step_s"]["median"]
      bwd = by_name.get("backward pass", {}).get("step_s", {}).get("median")
      if bwd:
        lines.append(f"backward pass / forward (with residuals): {bwd / fwd:.2f}x")
  ok = {v: c for v, c in views.items() if c.get("status") == "ok"}
  if len(ok) >= 2:
    lo, hi = min(ok), max(ok)
    t_lo, t_hi = ok[lo]["step_s"]["median"], ok[hi]["step_s"]["median"]
    per_view = (t_hi - t_lo) / (hi - lo)
    lines.append(f"views: each extra view costs {1e3 * per_view:.1f} ms per step "
                 f"({100 * per_view / t_lo:.0f}% of the {lo}-view step, "
                 f"{1e3 * t_lo:.1f} ms; {hi} views {1e3 * t_hi:.1f} ms)")
  return lines


def abstract_train_step(config_ref: str, overrides: Optional[dict] = None):
  """(the driver's SAT3D train program, its abstract arguments) for `config_ref`, built on
  parameter shapes only (a preset generator and a random CLIP): enough to lower and compile
  (tests/lowering, memory_analysis), nothing initialised."""
  from launch import trainer  # pylint: disable=g-import-not-at-top
  from launch.tasks import sat3d as sat3d_task  # pylint: disable=g-import-not-at-top
  from sat3d_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  config = task_step.load_config(config_ref, overrides)
  model = model_lib.Sat3dModel(config, generator=model_lib.build_generator(config, True),
                               qmm=model_lib.build_qmm(config, abstract=True))
  programs = trainer.make_programs(sat3d_task.make_task(config, model), 0, config.seed)
  state = jax.eval_shape(programs.init, programs.init_key, programs.model_ids)
  b, v, z = config.global_batch_size, config.views.count, model.generator.z_dim
  f32 = jnp.float32
  batch = {"z_src": jax.ShapeDtypeStruct((b, z), f32), "z_ref": jax.ShapeDtypeStruct((b, z), f32),
           "targets": jax.ShapeDtypeStruct((b, len(model.attributes)), f32),
           "views": jax.ShapeDtypeStruct((b, v, 2), f32)}
  return programs.train, (state, model.frozen(), batch, jnp.int32(0), programs.model_ids)


def memory_analysis(config_ref: str = FULL_CONFIG, remat: Optional[Sequence[str]] = None,
                    log: Callable[[str], None] = print,
                    overrides: Optional[dict] = None) -> list[dict]:
  """XLA's compiled memory analysis of the SAT3D training step of `config_ref` (default the
  FFHQ-512 batch-8 step) under each checkpoint policy of the edit's rendering in `remat`
  (default every one of sat3d_jax/remat.py): compiled for this process's backend (on a CPU, the
  XLA:CPU estimate), never run. `overrides`: other config fields (e.g. ray_chunk)."""
  from sat3d_jax import remat as remat_lib  # pylint: disable=g-import-not-at-top
  out = []
  for r in remat or tuple(remat_lib.POLICIES):
    fn, args = abstract_train_step(config_ref, {**(overrides or {}), "objective.remat": r})
    log(f"  [sat3d] memory analysis of {config_ref} (remat {r}): compiling ...")
    compiled = jax.jit(fn).trace(*args).lower().compile()
    out.append({"config": config_ref, "remat": r, "backend": jax.default_backend(),
                "bytes": harness.executable_bytes(compiled)})
  return out


def memory_lines(analyses: Sequence[dict]) -> list[str]:
  """Summary lines of memory_analysis results."""
  def gib(n):
    return f"{n / 2 ** 30:.2f} GiB"
  lines = []
  for a in analyses:
    m = a["bytes"] or {}
    if not m:
      lines.append(f"memory analysis of {a['config']} (remat {a['remat']}): none from XLA")
      continue
    lines.append(f"XLA:{a['backend'].upper()} memory analysis (an estimate of that compiler, not "
                 f"a device measurement) of the {a['config']} step, remat {a['remat']}: "
                 f"arguments {gib(m['argument'])}, outputs {gib(m['output'])}, temporaries "
                 f"{gib(m['temp'])}, aliased {gib(m['alias'])}; total {gib(m['total'])}")
  return lines


def start_memory(options: SuiteOptions) -> Finish:
  """The 'sat3d_memory' suite: memory_analysis() of the FFHQ-512 batch-8 step under every remat
  policy, compiled (never run) when finished, so a run that orders it last has timed the rest
  first. An analysis that fails is an error of this suite."""
  def finish() -> dict:
    try:
      analyses = memory_analysis(log=options.log)
    except Exception as e:  # pylint: disable=broad-except  # e.g. out of host memory
      options.log(f"  [sat3d_memory] {type(e).__name__}: {e}")
      return {"status": "error", "reason": harness.error_message(e), "cases": []}
    return {"status": "ok", "cases": [], "summary": memory_lines(analyses),
            "memory_analysis": analyses}
  return finish


def start(options: SuiteOptions, config_ref: Optional[str] = None,
          overrides: Optional[dict] = None, views: Sequence[int] = VIEWS,
          breakdown: bool = True, dtypes: Sequence[Optional[str]] = (None,)) -> Finish:
  """Builds the SAT3D training step of `config_ref` (default by options.quick) at the config's
  views count in each compute dtype of `dtypes` (None: the config's own), at each other count of
  `views` in the first dtype, and the breakdown's parts (first dtype), handing the compilations
  to the pool; finish() measures them (suites/__init__.py)."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  reason = task_step.missing_reason(ref)
  if reason:
    return lambda: harness.missing_suite(reason + " (the SAT3D task is not built yet)")
  log = options.log
  try:
    config = task_step.load_config(ref, overrides)
    if config.get("task") != SAT3D_TASK:  # another task's config: its step alone, as any task
      return task_step.start_task_suite("sat3d", ref, item="images", options=options,
                                        overrides=overrides)
    from launch.tasks import sat3d as sat3d_task  # pylint: disable=g-import-not-at-top
    from sat3d_jax.model import Sat3dModel  # pylint: disable=g-import-not-at-top
    model = Sat3dModel(config)
  except Exception as e:  # pylint: disable=broad-except  # reported, never replaced by numbers
    log(f"  [sat3d] {ref}: {type(e).__name__}: {e}")
    message = harness.error_message(e)
    return lambda: {"status": "error", "reason": message, "cases": []}
  name = pathlib.Path(ref).name
  main_views = int(config.views.count)
  counts = sorted(set(views) | {main_views})
  dtypes = list(dtypes) or [None]
  # Measured in this order: the main views count in every dtype first, then the views axis in
  # the first dtype (the larger, when float32 leads).
  keys = [(d, main_views) for d in dtypes] + [(dtypes[0], c) for c in counts if c != main_views]
  main = keys[0]
  models = {None: model}
  steps, setups = {}, {}
  for dtype, count in keys:
    case = step_case(name, count, dtype)
    try:
      extra = {"views.count": count} | ({"compute_dtype": dtype} if dtype else {})
      cfg_v = task_step.load_config(ref, {**(overrides or {}), **extra})
      if dtype not in models:  # the components are built for a compute dtype
        models[dtype] = Sat3dModel(cfg_v)
      frozen = next((s.frozen for (d, _), s in setups.items() if d == dtype), None)
      setup = task_step.prepare_step(cfg_v, task=sat3d_task.make_task(cfg_v, models[dtype]),
                                     frozen=frozen, pool=options.compile_pool)
      steps[dtype, count] = task_step.prepare_task_step(
          cfg_v, suite="sat3d", case=case, item="images", setup=setup,
          pool=options.compile_pool, log=log,
          batch=synthetic_batch(cfg_v, models[dtype], setup),
          notes=["batch drawn in memory (suites/sat3d.py synthetic_batch)"])
      setups[dtype, count] = setup
    except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
      log(f"  [sat3d] {case}: {type(e).__name__}: {e}")
      steps[dtype, count] = harness.error_case("sat3d", case, e)
  parts = []
  if breakdown and main in setups:
    setup = setups[main]
    try:
      parts = _parts(models[main[0]], setup.frozen, steps[main].args[2],
                     sat3d_task.objective_config(config), models[main[0]].components())
      _prepare_parts(parts, setup.state["mask"], main[0] or task_step.config_dtype(config),
                     options)
    except Exception as e:  # pylint: disable=broad-except
      log(f"  [sat3d] breakdown: {type(e).__name__}: {e}")
      parts = [harness.error_case("sat3d", "breakdown", e)]

  def finish() -> dict:
    cases = {}
    for key, p in steps.items():
      if isinstance(p, dict):
        cases[key] = p
        continue
      try:
        cases[key] = task_step.run_task_step(p, setups[key], peaks=options.peaks,
                                             runs=options.runs, warmup=options.warmup,
                                             pool=options.compile_pool, log=log)
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [sat3d] {p.case}: {type(e).__name__}: {e}")
        cases[key] = harness.error_case("sat3d", p.case, e)
    part_cases = []
    if parts and isinstance(parts[0], dict):
      part_cases = parts
    elif parts:
      try:
        part_cases = _run_parts(parts, setups[main].state["mask"], options)
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [sat3d] breakdown: {type(e).__name__}: {e}")
        part_cases = [harness.error_case("sat3d", "breakdown", e)]
    summary = summarise(cases.get(main), part_cases,
                        {c: cases[main[0], c] for c in views if (main[0], c) in cases})
    return {"status": "ok", "cases": [cases[k] for k in keys] + part_cases,
            "summary": summary,
            "setup": {"config": ref, "generator": config.generator, "views": main_views,
                      "step_case": step_case(name, main_views, main[0])},
            "notes": [f"config {ref}" + (f" with {overrides}" if overrides else "")
                      + f" (views.count {main_views}"
                      + (f", {main[0]}" if main[0] else "") + " for the breakdown)"]}
  return finish


def step_case(config_name: str, views: int, dtype: Optional[str] = None) -> str:
  """The name of a training-step case (`dtype` given when the run sets one)."""
  return f"train step ({config_name}), views {views}" + (f", {dtype}" if dtype else "")


def run(options: SuiteOptions, config_ref: Optional[str] = None,
        overrides: Optional[dict] = None, views: Sequence[int] = VIEWS,
        breakdown: bool = True, dtypes: Sequence[Optional[str]] = (None,)) -> dict:
  """Measures the SAT3D training step of `config_ref` (default by options.quick)."""
  return start(options, config_ref, overrides, views, breakdown, dtypes)()
