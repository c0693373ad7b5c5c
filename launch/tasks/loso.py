"""The FRL-DGT leave-one-subject-out sweep: train every fold, predict its held-out clips, score.

Every fold trains with the same fixed budget (config.total_steps: DGM pre-training, then end to
end; frldgt_jax/training.py) and nothing is ever selected on the held-out subject: the final
parameters of each fold predict that fold's held-out clips, and all predictions are pooled.

Two modes, same results for the same seeds (launch/tasks/frldgt.py: fold k draws the same batches
and rngs):
  'stacked'   all folds in one driver run, the fold as the leading (vmapped) model axis, sharded
              over the devices with config.model_sharding='models' (padded with dummy folds to
              a multiple of the device count) or replicated with each fold's batch sharded
              ('batch'). Workdir: W/stacked/ (checkpoints: a killed sweep resumes from the newest).
  'per_fold'  one driver run per fold, with num_models=0 and model_ids=(k,). Workdir:
              W/fold_XX/. A fold's predictions are written atomically to
              W/fold_XX/predictions.npz once it has finished; a restarted sweep skips those folds
              and resumes an unfinished one from its checkpoint.
W/trained_units.log records each training start and finish (what a restart redid), and
W/sweep.json the config fingerprint: a workdir never mixes folds trained with different configs.
The outputs (frldgt_jax/results.py) are written to W at the end.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import platform
import time
from typing import Callable, Optional, Sequence

import jax
import ml_collections
import numpy as np

from frldgt_jax import loso_data, training
from frldgt_jax import results as results_lib
from launch import tasks
from launch.tasks import frldgt as task_lib
from launch.trainer import ConfigError, train_and_evaluate

UNIT_FILE = "predictions.npz"
FINAL_DIR = "final"            # W/final/: the model trained on every subject (config.final_model)
FINAL_FILE = "final.json"
LOG_FILE = "trained_units.log"
SWEEP_FILE = "sweep.json"
# Fields that change how a sweep runs or logs, not what it computes.
_NOT_FINGERPRINTED = ("sweep_mode", "folds", "variant", "log_every", "checkpoint_every",
                      "keep_checkpoints", "async_checkpoints", "tensorboard", "summary_every",
                      "eval_every", "eval_batch_size", "num_devices", "model_sharding",
                      "final_model")


class SweepInterrupted(RuntimeError):
  """A fold's training stopped on a signal (its checkpoint is saved; rerun to resume)."""

  def __init__(self, signum: int):
    super().__init__(f"training stopped by signal {signum}; rerun the same command to resume")
    self.signum = signum


def use_compilation_cache(path: str | os.PathLike) -> None:
  """Keeps compiled programs in `path` (JAX's persistent compilation cache).

  Fold-by-fold runs compile the same programs (a fold's identity is an argument, not a
  constant), so with the cache only the first fold compiles; a restarted sweep compiles nothing.
  Takes effect even after earlier compilations in this process.
  """
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  pathlib.Path(path).mkdir(parents=True, exist_ok=True)
  compilation_cache.set_cache_dir(os.fspath(pathlib.Path(path).absolute()))
  compilation_cache.reset_cache()


# Fields added to the FRL-DGT configs after sweeps were made with them, each with the value that
# computes what those sweeps computed. At that value a field is left out of the comparison, so a
# sweep begun before the field existed resumes; at any other value it is a different config.
def _default_corpus() -> dict:
  """data.corpus as a config written before it existed generated it (JSON form)."""
  from frldgt_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  fields = dataclasses.asdict(synthetic.CorpusConfig())
  keep = ("databases", "distractors", "au_amplitude_px", *synthetic.NUISANCES,
          *synthetic.NUISANCES.values())
  return json.loads(json.dumps({k: fields[k] for k in keep}))


ADDED_FIELDS: dict[str, object] = {"optimizer.name": "adamw", "model.motion": "dgm",
                                   "data.corpus": _default_corpus(),
                                   "optimizer.dgm_stage2_lr_scale": 1.0,
                                   "model.dgm.distill_weight": 0.0, "dgm_pairs": "all",
                                   "augment.dgm_on_stored_frames": False}
# Where a generated corpus is kept is not what it holds (its synthetic_* fields decide that):
# a sweep whose corpus folder moved is the same experiment.
_LOCATIONS = ("data.synthetic_root",)


def config_fingerprint(config: ml_collections.ConfigDict) -> str:
  """A hash of every config field that changes what a fold computes."""
  resolved = json.loads(config.to_json_best_effort())
  for key in _NOT_FINGERPRINTED:
    resolved.pop(key, None)
  return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def _comparable(fields: dict) -> dict:
  """A resolved config as sweeps compare it: without the fields that do not change what a fold
  computes (nor the corpus folder), with today's task name, and without later-added fields at
  their old behaviour."""
  fields = json.loads(json.dumps(fields))
  for key in _NOT_FINGERPRINTED:
    fields.pop(key, None)
  if "task" in fields:
    fields["task"] = tasks.current_task_name(fields["task"])
  # (path, value at which it is dropped; None: whatever its value)
  dropped = list(ADDED_FIELDS.items()) + [(path, None) for path in _LOCATIONS]
  for path, value in dropped:
    *parents, leaf = path.split(".")
    node = fields
    for key in parents:
      node = node.get(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict) and leaf in node and (value is None or node[leaf] == value):
      del node[leaf]
  return fields


def same_experiment(stored: dict, config: ml_collections.ConfigDict) -> bool:
  """Whether a sweep's stored config (sweep.json) computes what `config` computes, allowing for
  renamed task modules, fields added since (ADDED_FIELDS) and a moved corpus folder."""
  return _comparable(stored) == _comparable(json.loads(config.to_json_best_effort()))


@dataclasses.dataclass
class UnitOutput:
  """Held-out predictions of one training unit (a stack of folds or one fold)."""
  folds: np.ndarray        # int64 [R] fold of each row
  index: np.ndarray        # int64 [R] clip index (into LosoData) of each row
  logits: np.ndarray       # float32 [R, C]
  train_wall_s: float      # training (incl. compile) wall time of this unit
  predict_wall_s: float
  fingerprint: str

  def save(self, path: pathlib.Path) -> None:
    """Atomic write: a temporary file renamed over `path` once complete."""
    buffer = io.BytesIO()
    np.savez(buffer, folds=self.folds, index=self.index, logits=self.logits,
             train_wall_s=self.train_wall_s, predict_wall_s=self.predict_wall_s,
             fingerprint=self.fingerprint)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: pathlib.Path) -> "UnitOutput":
    with np.load(path) as z:
      return cls(z["folds"], z["index"], z["logits"], float(z["train_wall_s"]),
                 float(z["predict_wall_s"]), str(z["fingerprint"]))


class _Sweep:
  """One sweep invocation in one workdir (see the module docstring)."""

  def __init__(self, config, workdir, data, fold_ids, say):
    self.config = config
    self.workdir = pathlib.Path(workdir)
    self.data = data
    self.fold_ids = list(fold_ids)
    self.say = say
    self.fingerprint = config_fingerprint(config)
    # Fingerprints of the same experiment under an earlier version's rules (sweep.json).
    self.accepted = {self.fingerprint}
    model, *_ = training.build(config)
    self.predictor = training.make_predictor(model, config.data.match_brightness)

  def log(self, message: str) -> None:
    if jax.process_index():
      return
    with open(self.workdir / LOG_FILE, "a", encoding="utf-8") as f:
      f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

  def load_unit(self, path: pathlib.Path) -> Optional[UnitOutput]:
    if not path.is_file():
      return None
    unit = UnitOutput.load(path)
    if unit.fingerprint not in self.accepted:
      raise ConfigError(f"{path} was trained with another config (fingerprint "
                        f"{unit.fingerprint}, now {self.fingerprint}); use a new --workdir")
    return unit

  def train_unit(self, unit_dir: pathlib.Path, fold_ids: Sequence[int], stacked: bool,
                 label: str) -> UnitOutput:
    task = task_lib.make_task(self.config, data=self.data, fold_ids=fold_ids, stacked=stacked)
    self.log(f"start {label}")
    start = time.perf_counter()
    result = train_and_evaluate(self.config, unit_dir, task=task)
    if result.stopped_by_signal is not None:
      self.log(f"stopped {label} at step {result.step} (signal {result.stopped_by_signal})")
      raise SweepInterrupted(result.stopped_by_signal)
    jax.block_until_ready(result.state)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    folds, index, logits = training.predict_held_out(
        self.predictor, result.state["params"], result.frozen["frames"], self.data,
        task.slots, self.config.eval_batch_size, stacked, result.frozen.get("flow"))
    unit = UnitOutput(folds, index, logits, trained, time.perf_counter() - start,
                      self.fingerprint)
    if jax.process_index() == 0:
      unit.save(unit_dir / UNIT_FILE)
    self.log(f"finished {label}: step {result.step}, {trained:.1f} s")
    return unit

  def train_final(self) -> pathlib.Path:
    """Trains (or finds) the model on every subject with the folds' budget, in W/final/."""
    unit_dir = self.workdir / FINAL_DIR
    info_file = unit_dir / FINAL_FILE
    if info_file.is_file():
      info = json.loads(info_file.read_text())
      if info.get("fingerprint") not in self.accepted:
        raise ConfigError(f"{unit_dir} was trained with another config (fingerprint "
                          f"{info.get('fingerprint')}, now {self.fingerprint}); use a new "
                          "--workdir")
      self.say(f"final model already trained in {unit_dir}: reusing it")
      return unit_dir
    data, k = loso_data.with_final_fold(self.data)
    self.say(f"final model: training on all {len(data.labels)} clips of every subject in "
             f"{unit_dir} (not an evaluation: no subject is held out)")
    task = task_lib.make_task(self.config, data=data, fold_ids=[k], stacked=False)
    self.log("start final model")
    start = time.perf_counter()
    result = train_and_evaluate(self.config, unit_dir, task=task)
    if result.stopped_by_signal is not None:
      self.log(f"stopped final model at step {result.step} (signal {result.stopped_by_signal})")
      raise SweepInterrupted(result.stopped_by_signal)
    trained = time.perf_counter() - start
    if jax.process_index() == 0:
      info_file.write_text(json.dumps({
          "fingerprint": self.fingerprint, "fold": k, "step": int(result.step),
          "clips": int(len(data.labels)), "subjects": len(self.data.folds),
          "train_wall_s": trained,
          "note": "trained on every subject with the folds' budget: a model to deploy "
                  "(launch/predict.py), not an evaluation"}, indent=1) + "\n")
    self.log(f"finished final model: step {result.step}, {trained:.1f} s")
    return unit_dir

  def run_stacked(self) -> list[UnitOutput]:
    unit_dir = self.workdir / "stacked"
    unit = self.load_unit(unit_dir / UNIT_FILE)
    folds_file = unit_dir / "folds.json"
    if folds_file.is_file() and json.loads(folds_file.read_text()) != self.fold_ids:
      raise ConfigError(f"{unit_dir} holds a stacked run of folds "
                        f"{json.loads(folds_file.read_text())}, not {self.fold_ids}; use a new "
                        "--workdir")
    if unit is not None:
      self.say(f"all {len(self.fold_ids)} folds already trained in {unit_dir}: reusing them")
      return [unit]
    unit_dir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
      folds_file.write_text(json.dumps(self.fold_ids))
    self.say(f"training {len(self.fold_ids)} folds in one program (stacked) in {unit_dir}")
    return [self.train_unit(unit_dir, self.fold_ids, True, f"stacked folds {self.fold_ids}")]

  def run_per_fold(self) -> list[UnitOutput]:
    units = []
    for n, k in enumerate(self.fold_ids, start=1):
      unit_dir = self.workdir / f"fold_{k:02d}"
      subject = self.data.folds[k].test_subject
      unit = self.load_unit(unit_dir / UNIT_FILE)
      if unit is not None:
        self.say(f"fold {k} ({subject}) [{n}/{len(self.fold_ids)}]: finished earlier, skipping")
      else:
        self.say(f"fold {k} ({subject}) [{n}/{len(self.fold_ids)}]: training in {unit_dir}")
        unit = self.train_unit(unit_dir, [k], False, f"fold {k}")
      units.append(unit)
    return units


def resolve_mode(mode: str) -> str:
  """'stacked' or 'per_fold'; 'auto' is stacked on accelerators and per_fold on CPU."""
  if mode == "auto":
    return "per_fold" if jax.default_backend() == "cpu" else "stacked"
  if mode not in ("stacked", "per_fold"):
    raise ConfigError(f"sweep mode must be 'auto', 'stacked' or 'per_fold', got {mode!r}")
  return mode


def run_sweep(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
              mode: Optional[str] = None, data: Optional[loso_data.LosoData] = None,
              say: Callable[[str], None] = print) -> dict:
  """Runs (or resumes) the LOSO sweep of `config` in `workdir`; writes and returns results.

  Args:
    config: an FRL-DGT config (configs/frldgt_composite.py).
    workdir: the sweep's folder (module docstring).
    mode: 'stacked', 'per_fold' or 'auto' (default: config.sweep_mode).
    data: preloaded clips and folds (default: task_lib.load_data(config)).
  Raises SweepInterrupted when a signal stopped training (rerun to resume).
  """
  mode = resolve_mode(mode or config.sweep_mode)
  begin = time.perf_counter()
  data = data if data is not None else task_lib.load_data(config)
  fold_ids = loso_data.selected_folds(config, data.folds)
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  sweep = _Sweep(config, workdir, data, fold_ids, say)
  info_file = workdir / SWEEP_FILE
  previous: list[str] = []
  if info_file.is_file():
    info = json.loads(info_file.read_text())
    old = info.get("fingerprint")
    previous = list(info.get("previous_fingerprints", []))
    if old != sweep.fingerprint:
      if not same_experiment(info.get("config", {}), config):
        raise ConfigError(f"{workdir} holds a sweep of another config (fingerprint {old}, now "
                          f"{sweep.fingerprint}); use a new --workdir or delete it")
      say(f"resuming a sweep begun by an earlier version (fingerprint {old}, the same "
          f"experiment as {sweep.fingerprint})")
      previous.append(old)
    sweep.accepted.update(previous)
  if jax.process_index() == 0:
    info_file.write_text(json.dumps({"fingerprint": sweep.fingerprint,
                                     "previous_fingerprints": sorted(set(previous)),
                                     "config": json.loads(config.to_json_best_effort())},
                                    indent=1))
  say(f"LOSO sweep ({mode}): {len(fold_ids)} of {len(data.folds)} folds, {len(data.labels)} "
      f"clips from {data.source}; {config.total_steps} steps per fold "
      f"({config.dgm_pretrain_steps} DGM pre-training); workdir {workdir}")
  units = sweep.run_stacked() if mode == "stacked" else sweep.run_per_fold()

  folds = np.concatenate([u.folds for u in units])
  index = np.concatenate([u.index for u in units])
  logits = np.concatenate([u.logits for u in units])
  loso_data.check_held_out_once(data, fold_ids, folds, index)
  prepared = data.prepared
  predictions = results_lib.Predictions(
      dataset=prepared.database[index], subject=prepared.subject[index],
      sample=prepared.sample[index], label=data.labels[index],
      prediction=np.argmax(logits, -1).astype(np.int64), fold=folds)
  extra = {
      "mode": mode, "config": config.name, "variant": config.variant,
      "dataset": data.source, "num_folds": len(fold_ids), "all_folds": len(data.folds) ==
      len(fold_ids), "steps_per_fold": int(config.total_steps),
      "dgm_pretrain_steps": int(config.dgm_pretrain_steps),
      "wall_time_s": float(sum(u.train_wall_s + u.predict_wall_s for u in units)),
      "train_wall_time_s": float(sum(u.train_wall_s for u in units)),
      "this_run_wall_time_s": time.perf_counter() - begin,
      "machine": machine_description(),
  }
  title = f"{config.name}{':' + config.variant if config.variant else ''} ({mode})"
  if jax.process_index():  # only process 0 writes
    return results_lib.compute_results(predictions, data.class_names, extra)
  results = results_lib.write_all(workdir, predictions, data.class_names, extra, title)
  np.savez(workdir / "logits.npz", folds=folds, index=index, logits=logits)
  unit_dirs = [workdir / "stacked"] if mode == "stacked" else [
      workdir / f"fold_{k:02d}" for k in fold_ids]
  results_lib.write_sweep_plots(workdir, predictions, unit_dirs, title=title)
  say(f"UF1 {results['UF1']:.4f}  UAR {results['UAR']:.4f}  over {results['n']} clips, "
      f"{len(fold_ids)} folds; " + ", ".join(
          f"{k} {v['UF1']:.3f}/{v['UAR']:.3f}" for k, v in results["per_database"].items()))
  if config.final_model:
    sweep.train_final()
  return results


def machine_description() -> dict:
  """The machine a timing was taken on."""
  return {"platform": platform.platform(), "processor": platform.processor(),
          "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
          "devices": [d.device_kind for d in jax.devices()]}


def compare_modes(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                  say: Callable[[str], None] = print) -> dict:
  """Runs the sweep both ways (W/stacked_mode, W/per_fold_mode) on this machine and compares.

  Writes W/benchmark.json and W/benchmark.md: wall time of each mode for the same total work,
  the share of identical predictions and the UF1 difference.
  """
  workdir = pathlib.Path(workdir)
  data = task_lib.load_data(config)
  out = {}
  for mode in ("per_fold", "stacked"):
    say(f"=== mode {mode} ===")
    out[mode] = run_sweep(config, workdir / f"{mode}_mode", mode=mode, data=data, say=say)
  a = results_lib.read_predictions_csv(workdir / "stacked_mode" / "predictions.csv",
                                       len(data.class_names))
  b = results_lib.read_predictions_csv(workdir / "per_fold_mode" / "predictions.csv",
                                       len(data.class_names))
  key_a = {(d, s, x): p for d, s, x, p in zip(a.dataset, a.subject, a.sample, a.prediction)}
  same = np.mean([key_a[(d, s, x)] == p
                  for d, s, x, p in zip(b.dataset, b.subject, b.sample, b.prediction)])
  bench = {
      "machine": machine_description(), "folds": out["stacked"]["num_folds"],
      "steps_per_fold": int(config.total_steps), "batch_size": int(config.batch_size),
      "wall_time_s": {m: out[m]["wall_time_s"] for m in out},
      "train_wall_time_s": {m: out[m]["train_wall_time_s"] for m in out},
      "UF1": {m: out[m]["UF1"] for m in out}, "UAR": {m: out[m]["UAR"] for m in out},
      "identical_predictions": float(same),
      "uf1_difference": abs(out["stacked"]["UF1"] - out["per_fold"]["UF1"]),
  }
  (workdir / "benchmark.json").write_text(json.dumps(bench, indent=1) + "\n")
  table = ["| mode | wall time (s) | UF1 | UAR |", "|---|---:|---:|---:|"]
  table += [f"| {m} | {bench['wall_time_s'][m]:.1f} | {bench['UF1'][m]:.4f} | "
            f"{bench['UAR'][m]:.4f} |" for m in ("stacked", "per_fold")]
  table += ["", f"{bench['folds']} folds x {bench['steps_per_fold']} steps on "
            f"{bench['machine']['cpu_count']} CPU cores / {bench['machine']['backend']} "
            f"({', '.join(sorted(set(bench['machine']['devices'])))}); identical predictions "
            f"{100 * same:.1f}%, UF1 difference {bench['uf1_difference']:.4f}"]
  (workdir / "benchmark.md").write_text("\n".join(table) + "\n")
  say("\n".join(table))
  return bench
