"""Analytic FLOP count of a JAX function: matmuls and convolutions, read off its jaxpr.

Counts 2 x multiply-accumulates of every `dot_general` and `conv_general_dilated` the function
executes, by the usual convention: a convolution counts every kernel tap of every output
(2 x H_out x W_out x k^2 x C_in/groups x C_out, padding taps included), and an lhs-dilated one
(a transposed convolution, e.g. the input gradient of a strided convolution) counts only the
taps on real input elements, not on the zeros the dilation inserts (which cuDNN and TPUs do not
multiply): the MACs of the equivalent forward convolution. So the gradient of a convolution
costs twice its forward pass, as usually assumed. (XLA's cost analysis skips padding taps too,
so it reads lower than this count on small images with 'SAME' padding.) Everything else
(elementwise ops, reductions, gathers, sorts, FFTs) is not counted: on the workloads benchmarked
here matmuls and convolutions are what the matrix units run, so this is the numerator of the
model-FLOPs utilisation.

Structure is followed exactly:
  * call-like primitives (jit, closed_call, remat, custom_jvp_call, custom_vjp_call, ...) are
    entered once;
  * `scan` bodies count `length` times (XLA's cost analysis counts a loop body once);
  * `cond` counts its most expensive branch;
  * `shard_map` bodies are per-device shards: they count once per device of the manual axes;
  * `while` bodies have no static trip count and Pallas kernels run once per grid point: their
    FLOPs are not added; the count per iteration / grid point is reported under `uncounted` so a
    reader knows the total is a lower bound.
Batch dimensions introduced by vmap are explicit in the jaxpr, so they are counted as such.

  count = count_flops(fn, *args)   # FlopCount(total, by_primitive, uncounted)
  xla = xla_flops(jax.jit(fn).lower(*args).compile())
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import jax
from jax.extend import core as jex_core


@dataclasses.dataclass
class FlopCount:
  """Analytic FLOPs of one call.

  Attributes:
    total: FLOPs (2 x MACs) of all counted matmuls and convolutions.
    by_primitive: {'dot_general': ..., 'conv_general_dilated': ...}.
    uncounted: {description: FLOPs per execution} of parts whose repeat count is unknown
      (while-loop bodies); not included in `total`.
  """
  total: float = 0.0
  by_primitive: dict = dataclasses.field(default_factory=dict)
  uncounted: dict = dataclasses.field(default_factory=dict)
  by_scope: dict = dataclasses.field(default_factory=dict)

  def add(self, primitive: str, flops: float, scope: Optional[str] = None) -> None:
    self.total += flops
    self.by_primitive[primitive] = self.by_primitive.get(primitive, 0.0) + flops
    if scope is not None:
      self.by_scope[scope] = self.by_scope.get(scope, 0.0) + flops

  def merge(self, other: "FlopCount", times: float = 1.0) -> None:
    for name, value in other.by_primitive.items():
      self.add(name, value * times)
    for name, value in other.uncounted.items():
      self.uncounted[name] = self.uncounted.get(name, 0.0) + value * times
    for name, value in other.by_scope.items():
      self.by_scope[name] = self.by_scope.get(name, 0.0) + value * times

  def as_dict(self) -> dict:
    out = {"total": self.total, "by_primitive": dict(self.by_primitive),
           "uncounted": dict(self.uncounted)}
    if self.by_scope:
      out["by_scope"] = dict(self.by_scope)
    return out


def dot_general_flops(lhs_shape, rhs_shape, dimension_numbers) -> float:
  """2 x batch x lhs-free x rhs-free x contracted sizes of a dot_general."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  rhs_free = [d for i, d in enumerate(rhs_shape) if i not in rhs_contract and i not in rhs_batch]
  # Every lhs element meets every rhs-free element once per batch entry.
  return 2.0 * math.prod(lhs_shape) * math.prod(rhs_free)


def conv_flops(out_shape, rhs_shape, dimension_numbers, lhs_dilation=None) -> float:
  """2 x output elements x (input channels per group x kernel window) of a convolution,
  divided by the lhs dilation (the share of taps that land on real input elements).

  The kernel's input-feature dimension already holds C_in / feature_group_count, and with
  batch_group_count each output feature still reads a full kernel, so the count per output
  element is the kernel's size divided by its output-feature dimension in both cases.
  """
  rhs_spec = dimension_numbers.rhs_spec  # (out feature dim, in feature dim, spatial dims...)
  per_output = math.prod(rhs_shape) // rhs_shape[rhs_spec[0]]
  holes = math.prod(lhs_dilation or (1,))
  return 2.0 * math.prod(out_shape) * per_output / holes


def _sub_jaxprs(value) -> list:
  """The jaxprs held by one eqn parameter (a Jaxpr, a ClosedJaxpr, or a tuple of them)."""
  if isinstance(value, jex_core.ClosedJaxpr):
    return [value.jaxpr]
  if isinstance(value, jex_core.Jaxpr):
    return [value]
  if isinstance(value, (tuple, list)):
    return [j for v in value for j in _sub_jaxprs(v)]
  return []


def _manual_devices(params: dict) -> int:
  mesh = params.get("mesh")
  axes = params.get("newly_manual_axes", params.get("manual_axes"))
  if mesh is None:
    return 1
  names = list(mesh.axis_names) if axes is None else list(axes)
  return math.prod(dict(zip(mesh.axis_names, mesh.axis_sizes))[a] for a in names)


def scope_of(name_stack: str, scopes: Sequence[str]) -> str:
  """'<scope>' or '<scope> (backward)' of an equation's full name stack: the first of `scopes`
  named in it ('other' if none); backward when the stack is a transpose (reverse mode)."""
  part = next((s for s in scopes if s in name_stack), "other")
  return f"{part} (backward)" if "transpose(" in name_stack else part


def count_jaxpr(jaxpr: jex_core.Jaxpr, scopes: Sequence[str] = (),
                _stack: str = "") -> FlopCount:
  """FlopCount of an (open) jaxpr, recursing into sub-jaxprs as the module docstring says.

  With `scopes` (jax.named_scope names), FLOPs are also split by part in `by_scope` (keys from
  `scope_of`); the name stacks of sub-jaxprs are read below their equation's stack."""
  count = FlopCount()
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    stack = f"{_stack}/{eqn.source_info.name_stack}" if scopes else ""
    scope = scope_of(stack, scopes) if scopes else None
    sub = functools.partial(count_jaxpr, scopes=scopes, _stack=stack)
    if name == "dot_general":
      lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
      count.add(name, dot_general_flops(lhs, rhs, eqn.params["dimension_numbers"]), scope)
    elif name == "conv_general_dilated":
      out = eqn.outvars[0].aval.shape
      rhs = eqn.invars[1].aval.shape
      count.add(name, conv_flops(out, rhs, eqn.params["dimension_numbers"],
                                 eqn.params.get("lhs_dilation")), scope)
    elif name == "scan":
      count.merge(sub(eqn.params["jaxpr"].jaxpr), times=eqn.params["length"])
    elif name == "cond":
      branches = [sub(j) for j in _sub_jaxprs(eqn.params["branches"])]
      if branches:
        count.merge(max(branches, key=lambda c: c.total))
    elif name == "while":
      body = count_jaxpr(eqn.params["body_jaxpr"].jaxpr)
      body.merge(count_jaxpr(eqn.params["cond_jaxpr"].jaxpr))
      if body.total or body.uncounted:
        per_iteration = FlopCount(uncounted={"while body (per iteration)": body.total})
        per_iteration.uncounted.update(body.uncounted)
        count.merge(per_iteration)
    elif name == "pallas_call":  # a kernel body runs once per grid point: count unknown here
      body = count_jaxpr(eqn.params["jaxpr"])
      if body.total:
        count.uncounted["pallas_call kernel (per grid point)"] = (
            count.uncounted.get("pallas_call kernel (per grid point)", 0.0) + body.total)
    elif name == "shard_map":
      count.merge(sub(eqn.params["jaxpr"]), times=_manual_devices(eqn.params))
    else:  # call-like primitives: jit, closed_call, remat, custom_jvp_call, custom_vjp_call...
      for key, value in eqn.params.items():
        if key in ("jvp_jaxpr_fun", "fwd_jaxpr_thunk", "bwd"):
          continue  # rules used only when differentiating; the traced jaxpr already has them
        for inner in _sub_jaxprs(value):
          count.merge(sub(inner))
  return count


def count_flops(fn: Callable, *args, scopes: Sequence[str] = (), **kwargs) -> FlopCount:
  """Analytic matmul + convolution FLOPs of one call fn(*args, **kwargs) (traced, not run);
  with `scopes`, split by part as count_jaxpr does."""
  closed = jax.make_jaxpr(fn)(*args, **kwargs)
  return count_jaxpr(closed.jaxpr, scopes)


def xla_cost(compiled) -> dict:
  """XLA's cost analysis of a compiled executable as one dict ({} when the backend has none)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends raise Unimplemented
    return {}
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def xla_flops(compiled) -> Optional[float]:
  """XLA's 'flops' of a compiled executable (elementwise ops included; loop bodies counted once;
  gathers and sorts not counted), or None when the backend reports none."""
  value = xla_cost(compiled).get("flops")
  return None if value is None or value < 0 else float(value)


def describe(count: FlopCount, xla: Optional[float], devices: int = 1) -> dict[str, Any]:
  """The JSON form of an analytic count next to XLA's figure.

  XLA analyses the partitioned program of ONE device; `xla` is that figure times `devices`
  (exact for data-parallel work, an over-count where every device repeats replicated work such
  as the optimizer update), `xla_per_device` the figure as reported.
  """
  out = count.as_dict()
  out["xla_per_device"] = xla
  out["xla"] = None if xla is None else xla * devices
  out["xla_over_analytic"] = (out["xla"] / count.total) if (xla and count.total) else None
  return out
