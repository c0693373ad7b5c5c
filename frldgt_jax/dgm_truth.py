"""A sweep's DGM field against the generated corpus's true motion, at every kept checkpoint.

The library side of launch/dgm_truth.py (docs/frldgt.md, "Does the DGM learn the motion?"): for
each fold of a sweep on the generated corpus, on its held-out clips (onset = first stored frame,
apex = last, the pair the classifier reads), the DGM's field at every checkpoint the fold kept,
TV-L1's and zero are scored against `synthetic.true_motion` by `flow_eval.flow_errors`.
"""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from frldgt_jax import flow_eval, loso_data, run_io
from frldgt_jax import model as model_lib
from frldgt_jax import motion as motion_lib
from frldgt_jax.data import synthetic
from frldgt_jax.errors import InputError

METHODS = ("dgm", "tvl1", "zero")


def fold_units(workdir: pathlib.Path) -> list[tuple[pathlib.Path, list[int]]]:
  """(unit folder, the real folds it trained) of every trained unit of the sweep in workdir."""
  units = []
  for unit in sorted(p for p in workdir.iterdir() if (p / "task.json").is_file()):
    if unit.name == "final":
      continue  # trained on every subject: nothing held out
    task = json.loads((unit / "task.json").read_text())
    folds = [s["fold"] for s in task.get("folds", []) if not s.get("dummy")]
    if folds and (unit / "checkpoints").is_dir():
      units.append((unit, folds))
  if not units:
    raise InputError(f"{workdir}: no trained fold units (W/fold_XX/ or W/stacked/ with "
                     "checkpoints); run launch/sweep.py first")
  return units


def saved_steps(unit: pathlib.Path) -> list[int]:
  """The checkpoint steps a unit kept, oldest first."""
  return sorted(int(p.name) for p in (unit / "checkpoints").iterdir()
                if p.is_dir() and p.name.isdigit())


def score_sweep(workdir: pathlib.Path, last_only: bool = False) -> tuple[list[dict], dict]:
  """Rows {unit, fold, step, stage, method, <flow_eval measures>} and facts about the sweep."""
  units = fold_units(workdir)
  config = run_io.read_config(units[0][0])
  if not config.data.get("synthetic", False):
    raise InputError(f"{workdir}: not a sweep on the generated corpus (config.data.synthetic is "
                     "False); only the generated corpus knows its true motion")
  alignment, size = config.data.alignment, int(config.data.resolution)
  if alignment not in ("landmarks", "cropped"):
    raise InputError(f"{workdir}: data.alignment {alignment!r}: the true motion is known for "
                     "the alignments 'landmarks' and 'cropped' only")
  data = loso_data.load_loso_data(config)
  corpus, _ = loso_data.synthetic_dirs(config)
  prepared = data.prepared
  brightness = bool(config.data.match_brightness)
  has_dgm = model_lib.has_dgm(config.model)
  outputs = run_io.outputs_fn(model_lib.build_model(config.model), brightness) if has_dgm else None
  pretrain = int(config.dgm_pretrain_steps)
  held_out = np.concatenate([data.folds[k].test_idx for _, folds in units for k in folds])
  truth = synthetic.true_motion(corpus, size, alignment,
                                list(zip(prepared.database[held_out], prepared.sample[held_out])))
  rows = []
  for unit, folds in units:
    steps = saved_steps(unit)
    if last_only:
      steps = steps[-1:]
    slot_of = {k: run_io.slot_of(unit, k) for k in folds}
    params_at = {}
    if has_dgm:
      for step in steps:
        params_at[step] = run_io.restore_params(unit, step)[1]
    for k in folds:
      index = np.asarray(data.folds[k].test_idx)
      keys = list(zip(prepared.database[index], prepared.sample[index]))
      true = np.stack([truth[key].total for key in keys])
      region = flow_eval.au_region(np.stack([truth[key].au for key in keys]))
      frames = prepared.frames[index]
      onset = frames[:, 0].astype(np.float32) / 255.0
      apex = frames[:, -1].astype(np.float32) / 255.0
      base = {"unit": unit.name, "fold": int(k), "subject": data.folds[k].test_subject,
              "clips": int(len(index))}
      fields = {"zero": {None: np.zeros_like(true)},
                "tvl1": {None: motion_lib.clip_flows(frames, brightness)}}
      if has_dgm:
        fields["dgm"] = {}
        for step, params in params_at.items():
          slot = slot_of[k]
          p = params if slot is None else jax.tree.map(lambda a, s=slot: a[s], params)
          # The model reads no flow for its displacement: zeros stand in where it wants one.
          fields["dgm"][step] = np.asarray(outputs(p, onset, apex, np.zeros_like(true))[1])
      for method, by_step in fields.items():
        for step, pred in by_step.items():
          stage = None if step is None else (1 if step <= pretrain else 2)
          rows.append({**base, "method": method, "step": step, "stage": stage,
                       **flow_eval.flow_errors(pred, true, region)})
  facts = {"workdir": str(workdir), "config": config.get("name", ""), "alignment": alignment,
           "resolution": size, "dgm_pretrain_steps": pretrain,
           "total_steps": int(config.total_steps), "folds": sum(len(f) for _, f in units),
           "au_threshold_px": flow_eval.AU_THRESHOLD_PX}
  return rows, facts


def summary(rows: list[dict]) -> list[dict]:
  """Means over folds per (method, step): TV-L1 and zero once, the DGM per saved step."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault((METHODS.index(r["method"]), r["step"] or 0), []).append(r)
  out = []
  for (m, _), members in sorted(groups.items()):
    entry = {"method": METHODS[m], "step": members[0]["step"], "stage": members[0]["stage"],
             "folds": len(members)}
    for name in (f"{region}_{measure}" for region in flow_eval.REGIONS
                 for measure in flow_eval.MEASURES):
      values = np.array([r[name] for r in members], np.float64)
      values = values[np.isfinite(values)]
      entry[name] = float(values.mean()) if values.size else float("nan")
    out.append(entry)
  return out


def format_table(means: list[dict], facts: dict) -> str:
  lines = [f"Fields against the generated corpus's true onset->apex motion, held-out clips of "
           f"{facts['folds']} fold(s), {facts['resolution']}x{facts['resolution']} "
           f"({facts['alignment']} alignment); stage 1 = steps <= "
           f"{facts['dgm_pretrain_steps']} of {facts['total_steps']}. AU region: AU motion >= "
           f"{facts['au_threshold_px']} px.", "",
           "| method | step | stage | AU EPE (px) | AU cosine | AU gain | outside EPE (px) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  for e in means:
    step = "" if e["step"] is None else str(e["step"])
    stage = "" if e["stage"] is None else str(e["stage"])
    lines.append(f"| {e['method']} | {step} | {stage} | {e['au_epe']:.3f} | "
                 f"{e['au_cosine']:.3f} | {e['au_gain']:.3f} | {e['outside_epe']:.3f} |")
  return "\n".join(lines) + "\n"


def plot(means: list[dict], facts: dict, path: pathlib.Path) -> None:
  from frldgt_jax.results import pyplot  # pylint: disable=g-import-not-at-top
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
  dgm = [e for e in means if e["method"] == "dgm"]
  for ax, measure, label in ((axes[0], "au_epe", "AU-region end-point error (px)"),
                             (axes[1], "au_cosine", "AU-region cosine to the truth")):
    if dgm:
      ax.plot([e["step"] for e in dgm], [e[measure] for e in dgm], marker="o", color="tab:blue",
              label="DGM")
    for e, colour in ((e, c) for e in means for m, c in (("tvl1", "tab:green"),
                                                           ("zero", "tab:grey"))
                      if e["method"] == m):
      ax.axhline(e[measure], color=colour, ls="--", label=e["method"].upper()
                 if e["method"] == "tvl1" else "zero")
    ax.axvline(facts["dgm_pretrain_steps"], color="k", lw=0.8, ls=":")
    ax.set_xlabel("training step (dotted: end of stage 1)")
    ax.set_title(label, fontsize=9)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
