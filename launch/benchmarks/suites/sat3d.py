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


def start(options: SuiteOptions, config_ref: Optional[str] = None,
          overrides: Optional[dict] = None, views: Sequence[int] = VIEWS,
          breakdown: bool = True) -> Finish:
  """Builds the SAT3D training step of `config_ref` (default by options.quick) at each of
  `views`, and the breakdown's parts, handing the compilations to the pool; finish() measures
  them (suites/__init__.py)."""
  ref = config_ref or (QUICK_CONFIG if options.quick else FULL_CONFIG)
  reason = task_step.missing_reason(ref)
  if reason:
    return lambda: harness.missing_suite(reason + " (the SAT3D task is not built yet)")
  log = options.log
  try:
    from launch.tasks import sat3d as sat3d_task  # pylint: disable=g-import-not-at-top
    from sat3d_jax.model import Sat3dModel  # pylint: disable=g-import-not-at-top
    config = task_step.load_config(ref, overrides)
    model = Sat3dModel(config)
  except Exception as e:  # pylint: disable=broad-except  # reported, never replaced by numbers
    log(f"  [sat3d] {ref}: {type(e).__name__}: {e}")
    message = harness.error_case("sat3d", ref, e)["error"]
    return lambda: {"status": "error", "reason": message, "cases": []}
  name = pathlib.Path(ref).name
  main_views = int(config.views.count)
  counts = sorted(set(views) | {main_views})
  steps, setups, frozen = {}, {}, None
  for count in counts:
    case = f"train step ({name}), views {count}"
    try:
      cfg_v = task_step.load_config(ref, {**(overrides or {}), "views.count": count})
      setup = task_step.prepare_step(cfg_v, task=sat3d_task.make_task(cfg_v, model),
                                     frozen=frozen, pool=options.compile_pool)
      frozen = setup.frozen
      steps[count] = task_step.prepare_task_step(
          cfg_v, suite="sat3d", case=case, item="images", setup=setup,
          pool=options.compile_pool, log=log)
      setups[count] = setup
    except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
      log(f"  [sat3d] {case}: {type(e).__name__}: {e}")
      steps[count] = harness.error_case("sat3d", case, e)
  parts = []
  if breakdown and main_views in setups:
    setup = setups[main_views]
    try:
      parts = _parts(model, setup.frozen, steps[main_views].args[2],
                     sat3d_task.objective_config(config), model.components())
      _prepare_parts(parts, setup.state["mask"], task_step.config_dtype(config), options)
    except Exception as e:  # pylint: disable=broad-except
      log(f"  [sat3d] breakdown: {type(e).__name__}: {e}")
      parts = [harness.error_case("sat3d", "breakdown", e)]

  def finish() -> dict:
    cases = {}
    for count, p in steps.items():
      if isinstance(p, dict):
        cases[count] = p
        continue
      try:
        cases[count] = task_step.run_task_step(p, setups[count], peaks=options.peaks,
                                               runs=options.runs, warmup=options.warmup,
                                               pool=options.compile_pool, log=log)
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [sat3d] {p.case}: {type(e).__name__}: {e}")
        cases[count] = harness.error_case("sat3d", p.case, e)
    part_cases = []
    if parts and isinstance(parts[0], dict):
      part_cases = parts
    elif parts:
      try:
        part_cases = _run_parts(parts, setups[main_views].state["mask"], options)
      except Exception as e:  # pylint: disable=broad-except
        log(f"  [sat3d] breakdown: {type(e).__name__}: {e}")
        part_cases = [harness.error_case("sat3d", "breakdown", e)]
    summary = summarise(cases.get(main_views), part_cases,
                        {c: cases[c] for c in views if c in cases})
    return {"status": "ok", "cases": [cases[c] for c in counts] + part_cases,
            "summary": summary,
            "notes": [f"config {ref} (views.count {main_views} for the breakdown)"]}
  return finish


def run(options: SuiteOptions, config_ref: Optional[str] = None,
        overrides: Optional[dict] = None, views: Sequence[int] = VIEWS,
        breakdown: bool = True) -> dict:
  """Measures the SAT3D training step of `config_ref` (default by options.quick)."""
  return start(options, config_ref, overrides, views, breakdown)()
