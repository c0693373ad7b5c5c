"""SAT3D's evaluation protocol (docs/sat3d.md, "Evaluation") and the shared rendering / judging
helpers.

Pairs. Pair i has source seed `seed_base + 2i` and reference seed `seed_base + 2i + 1`, each
z = numpy RandomState(seed).randn(z_dim) (as launch/generate.py and launch/transfer.py read a
seed), mapped with the run's truncation and the frontal conditioning camera. Training draws its
z from TensorFlow's stateless Philox stream keyed by (config.seed, step) (sat3d_jax/pairs.py),
a different generator altogether, so evaluation pairs are not training pairs. The channel-swap
baseline estimates its correlations on another seed range, `CORRELATION_SEED_BASE + j`.

Views. Every image is rendered from V cameras on a yaw sweep from +yaw_range to -yaw_range
(pitch 0; the order of launch/generate.py's grids), V = 1 meaning frontal.

Judges. Every metric is measured by a judge that is not the training signal: the run's CLIP
with the held-out phrasings of the descriptor groups, and optionally a second CLIP directory
(also with held-out phrasings). D is the judge's attribute distance (L1 by default: bounded,
symmetric; 'sym_kl' is available).

Metrics, for target attribute a and method m, over all pairs p and views v (edit = the method's
image for the target set {a}; src, ref = the unedited source and reference images):
  transfer      = 1 - sum_{p,v} D(q_a(edit), q_a(ref)) / sum_{p,v} D(q_a(src), q_a(ref))
                  the fraction of the source-to-reference gap in attribute a that the edit
                  closes: 0 for the unedited source (the floor of doing nothing), 1 when the
                  edit measures as the reference, negative when it moves away. Ratio of sums
                  (not mean of ratios), so pairs whose source and reference already agree on a
                  weigh little instead of dividing by ~0. Not clipped.
  preservation  = 1 - sum_{p,v,b != a} D(q_b(edit), q_b(src)) / sum_{p,v,b != a} D(q_b(ref),
                  q_b(src)) over every other measured attribute b: 1 when the edit keeps the
                  source's other attributes, 0 when it imports the reference's as much as a
                  whole-image swap would.
  identity      = mean_{p,v} |desc(edit) - desc(src)|, the Euclidean distance of face
                  descriptors (launch/evaluate.py: dlib's 128-d face-recognition ResNet), over
                  the (p, v) where both images have a face; identity_same_share = the share of
                  those under the descriptor's same-person threshold (dlib: 0.6);
                  identity_not_found = how many (p, v) lacked a face in the edit or the source
                  (never dropped silently). None when no face model applies (cats, cars).
  identity_clip = mean_{p,v} cos(CLIP image embedding(edit), CLIP image embedding(src)), the
                  judge's CLIP.
  multiview_std = mean over pairs and a's groups k of the standard deviation over views of
                  q_a,k(edit) (population std): lower is more consistent across views.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sat3d_jax import baselines, media, qmm as qmm_lib
from sat3d_jax.eg3d import rendering
from sat3d_jax.errors import InputError

EVAL_SEED_BASE = 1_000_000
CORRELATION_SEED_BASE = 2_000_000
DEFAULT_YAW_RANGE = 0.4  # radians; launch/generate.py's grid sweep (gen_samples.py uses +-0.4)
METRICS = ("transfer", "preservation", "identity", "identity_clip", "multiview_std")
METRIC_HELP = {
    "transfer": "fraction of the source-to-reference gap in the attribute closed (0 = source, "
                "1 = reference; higher is better)",
    "preservation": "fraction of the other attributes kept from the source (1 = all kept; "
                    "higher is better)",
    "identity": "face descriptor distance of edit and source (lower = closer; dlib: under "
                "0.6 = same person); n/a without a face model (cats, cars)",
    "identity_clip": "cosine of CLIP image embeddings of edit and source (higher = closer)",
    "multiview_std": "std of the attribute's group probabilities over views (lower = more "
                     "consistent)",
}


# ----------------------------------------------------------------------------------------------
# Seeds and cameras.

def latents_for_seeds(seeds: Iterable[int], z_dim: int) -> np.ndarray:
  """z [N, z_dim]: numpy RandomState(seed).randn(z_dim) per seed (the official scripts' rule)."""
  return np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]).astype(np.float32)


def pair_seeds(num_pairs: int, seed_base: int = EVAL_SEED_BASE) -> list[tuple[int, int]]:
  """[(source seed, reference seed)] of the evaluation pairs (see module docstring)."""
  return [(seed_base + 2 * i, seed_base + 2 * i + 1) for i in range(num_pairs)]


def yaw_sweep(num_views: int, yaw_range: float = DEFAULT_YAW_RANGE) -> np.ndarray:
  """(yaw, pitch) offsets [V, 2] from frontal: yaw from +yaw_range to -yaw_range, pitch 0."""
  if num_views < 1:
    raise ValueError(f"need at least one view, got {num_views}")
  yaws = np.linspace(yaw_range, -yaw_range, num_views) if num_views > 1 else np.zeros(1)
  return np.stack([yaws, np.zeros(num_views)], -1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Rendering flat styles (sat3d_jax/eg3d/rendering.py) and judging images.

class StyleRenderer:
  """Renders flat styles [M, C] from cameras [V, 25] in fixed-size batches (one compilation).

  The generator params are an argument, so pivotal-tuned params of the same architecture reuse
  the compiled function. Deterministic (constant noise, no stochastic ray sampling).
  """

  def __init__(self, generator, batch: int = 8):
    self.generator = generator
    self.batch = int(batch)
    self._static = dict(arch=generator.arch, options=generator.options)

  def _check(self, flats: np.ndarray) -> None:
    expected = sum(d for _, d in self.generator.arch.style_layers)
    if flats.ndim != 2 or flats.shape[1] != expected:
      raise ValueError(f"need flat styles [N, {expected}], got {flats.shape}")

  def render_rows(self, params, flats: np.ndarray, cams: np.ndarray,
                  on_batch: Optional[Callable[[np.ndarray], None]] = None) -> np.ndarray:
    """Images [N, H, W, 3] for N (flat style, camera) rows; the last batch is padded."""
    flats, cams = np.asarray(flats, np.float32), np.asarray(cams, np.float32)
    self._check(flats)
    if cams.shape != (len(flats), 25):
      raise ValueError(f"need cameras [N, 25] for {len(flats)} styles, got {cams.shape}")
    out = []
    for start in range(0, len(flats), self.batch):
      f, c = flats[start:start + self.batch], cams[start:start + self.batch]
      n = len(f)
      if n < self.batch:
        f = np.concatenate([f, np.repeat(f[-1:], self.batch - n, 0)])
        c = np.concatenate([c, np.repeat(c[-1:], self.batch - n, 0)])
      images = rendering.jit_synthesize(params, styles=jnp.asarray(f), cams=jnp.asarray(c),
                                        **self._static)["image"]
      out.append(np.asarray(images)[:n])
      if on_batch is not None:
        on_batch(out[-1])
    return np.concatenate(out)

  def render(self, params, flats: np.ndarray, cams: np.ndarray) -> np.ndarray:
    """Images [M, V, H, W, 3]: every flat style [M, C] from every camera [V, 25]. Each face's
    tri-planes are computed once and rendered from the V cameras (about `batch` images a call;
    the last faces are padded)."""
    flats, cams = np.asarray(flats, np.float32), np.asarray(cams, np.float32)
    self._check(flats)
    m, v = len(flats), len(cams)
    faces = max(1, self.batch // v)
    out = []
    for start in range(0, m, faces):
      f = flats[start:start + faces]
      n = len(f)
      if n < faces:
        f = np.concatenate([f, np.repeat(f[-1:], faces - n, 0)])
      f = jnp.asarray(f)
      planes = rendering.jit_planes(params, styles=f, **self._static)
      images = np.asarray(rendering.jit_render_views(params, planes=planes, styles=f,
                                                     cams=jnp.asarray(cams),
                                                     **self._static)["image"])
      out.append(images.reshape((faces, v) + images.shape[1:])[:n])
    return np.concatenate(out)


@dataclasses.dataclass
class Judge:
  """A QMM used to judge (held-out phrasings), with its CLIP image embeddings for identity."""
  name: str
  qmm: qmm_lib.QMM

  def __post_init__(self):
    spec = self.qmm.spec

    def judge(params, groups, images):
      # One jit: XLA shares the CLIP image forward between the two outputs.
      return (qmm_lib.qmm_apply(params, groups, images, spec),
              qmm_lib.image_embeddings(params, images, spec))

    self._judge = jax.jit(judge)

  @property
  def attributes(self) -> tuple[str, ...]:
    return self.qmm.attributes

  def __call__(self, images: np.ndarray, batch: int = 16
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({attribute: [N, K] probabilities}, unit-norm embeddings [N, D]) of images [N, H, W, 3]."""
    qs, embs = [], []
    for start in range(0, len(images), batch):
      x = np.asarray(images[start:start + batch], np.float32)
      n = len(x)
      if n < batch:
        x = np.concatenate([x, np.repeat(x[-1:], batch - n, 0)])
      q, e = self._judge(self.qmm.params, self.qmm.group_embeds, jnp.asarray(x))
      qs.append({a: np.asarray(v)[:n] for a, v in q.items()})
      embs.append(np.asarray(e)[:n])
    return ({a: np.concatenate([q[a] for q in qs]) for a in self.attributes},
            np.concatenate(embs))


def heldout_judge(qmm: qmm_lib.QMM, name: str = "heldout_phrasings") -> Judge:
  """The run's CLIP with the held-out phrasings of the same descriptor groups."""
  try:
    return Judge(name, qmm.with_descriptors(qmm.descriptors, heldout=True))
  except ValueError as e:
    raise InputError(f"cannot build the held-out judge from descriptors "
                     f"{qmm.descriptors.source}: {e}") from None


def clip_judge(clip_dir: str, qmm: qmm_lib.QMM) -> Judge:
  """A second CLIP (local Hugging Face directory) with the held-out phrasings of qmm's groups."""
  judge = qmm_lib.QMM.from_pretrained(clip_dir, qmm.descriptors, heldout=True)
  return Judge(f"judge_clip:{clip_dir}", judge)


@dataclasses.dataclass(frozen=True)
class FaceIdentity:
  """A face descriptor for the identity metric (the application supplies it: dlib's ResNet).

  describe(image uint8 [H, W, 3]) -> descriptor [D], or None when the image has no face;
  distances under `threshold` mean the same person.
  """
  name: str
  describe: Callable[[np.ndarray], Optional[np.ndarray]]
  threshold: float


def face_distances(describe: Callable[[int, int], Optional[np.ndarray]], rows: Sequence[int],
                   src_row: int, views: int) -> np.ndarray:
  """[len(rows), V] descriptor distances of each row's views to the source's, NaN where either
  image has no face (describe(row, view) -> descriptor or None)."""
  out = np.full((len(rows), views), np.nan)
  for i, row in enumerate(rows):
    for v in range(views):
      a, b = describe(row, v), describe(src_row, v)
      if a is not None and b is not None:
        out[i, v] = float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
  return out


def identity_scores(distances: Optional[np.ndarray], threshold: float) -> dict:
  """identity / identity_same_share / identity_not_found / identity_measured of distances
  [P, V] (NaN = no face); all None when there is no face model (distances None)."""
  if distances is None:
    return {"identity": None, "identity_same_share": None, "identity_not_found": None,
            "identity_measured": None}
  d = np.asarray(distances, np.float64)
  found = np.isfinite(d)
  measured = int(found.sum())
  return {"identity": float(d[found].mean()) if measured else math.nan,
          "identity_same_share": float(np.mean(d[found] < threshold)) if measured else math.nan,
          "identity_not_found": int(d.size - measured), "identity_measured": measured}


# ----------------------------------------------------------------------------------------------
# Metrics (pure numpy over measurements already taken).

def _total(distance, p: np.ndarray, q: np.ndarray) -> float:
  return float(np.sum(np.asarray(distance(jnp.asarray(p), jnp.asarray(q)), np.float64)))


def score_attribute(attribute: str, q_src: Mapping[str, np.ndarray],
                    q_ref: Mapping[str, np.ndarray], q_edit: Mapping[str, np.ndarray],
                    cosine: np.ndarray, distance: str = "l1") -> dict[str, float]:
  """The four metrics (module docstring) for target `attribute` from measurements over P pairs
  and V views: q_* {attribute: [P, V, K]} for every measured attribute, cosine [P, V] =
  cos(embed(edit), embed(src)). Also returns the mean gaps the ratios are built from.
  """
  fn = qmm_lib.get_distance(distance)
  gap = _total(fn, q_src[attribute], q_ref[attribute])
  left = _total(fn, q_edit[attribute], q_ref[attribute])
  others = [b for b in q_src if b != attribute]
  kept_den = sum(_total(fn, q_ref[b], q_src[b]) for b in others)
  kept_num = sum(_total(fn, q_edit[b], q_src[b]) for b in others)
  count = int(np.prod(q_src[attribute].shape[:2]))
  return {
      "transfer": 1.0 - left / gap if gap > 0 else math.nan,
      "preservation": 1.0 - kept_num / kept_den if kept_den > 0 else math.nan,
      "identity_clip": float(np.mean(np.asarray(cosine, np.float64))),
      "multiview_std": float(np.mean(np.std(np.asarray(q_edit[attribute], np.float64), axis=1))),
      "gap_source_reference": gap / count,
      "gap_edit_reference": left / count,
  }


# ----------------------------------------------------------------------------------------------
# The protocol.

def _describer(face_identity: FaceIdentity, images: np.ndarray):
  """describe(row, view) of images [U, V, H, W, 3] in [-1, 1], each image described once."""
  @functools.cache
  def describe(row: int, view: int):
    return face_identity.describe(media.to_uint8(images[row, view]))
  return describe


def _method_key(method: str, attribute: str) -> tuple[str, Optional[str]]:
  """The flat-style key of a method's image for a target attribute."""
  if method == "source":
    return ("source", None)
  return (method, None) if method.startswith("mix_") else (method, attribute)


def method_names(bands: Iterable[str]) -> tuple[str, ...]:
  return ("sat3d",) + tuple(f"mix_{b}" for b in bands) + ("channel_swap", "source")


def _unique_rows(flats: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
  """Distinct flat style vectors and, per input, the index of its distinct row (exact bytes),
  so identical styles (e.g. the unedited source) are rendered and judged once."""
  seen: dict[bytes, int] = {}
  rows, index = [], []
  for f in flats:
    key = np.ascontiguousarray(f, np.float32).tobytes()
    if key not in seen:
      seen[key] = len(rows)
      rows.append(np.asarray(f, np.float32))
    index.append(seen[key])
  return np.stack(rows), index


def swap_channel_sets(run, attributes: Sequence[str], renderer: StyleRenderer,
                      samples: int, count: int = 0, seed_base: int = CORRELATION_SEED_BASE,
                      progress: bool = False) -> tuple[dict[str, np.ndarray], dict]:
  """The correlated-channel-swap baseline's channels per attribute, and how they were found.

  Correlations are estimated on `samples` seeded samples rendered frontally and measured by the
  run's *training* QMM (the signal SAT3D itself learns from, not the judge). Each attribute
  gets `count` channels, or (count = 0) as many as SAT3D's mask spends on it
  (baselines.mask_channel_budget), among the channels the run may edit.
  """
  model = run.model
  params = model.generator.params
  z = latents_for_seeds(range(seed_base, seed_base + samples), model.generator.z_dim)
  ws = np.asarray(jax.jit(model.ws_from_z)(params, jnp.asarray(z)))
  styles = np.asarray(jax.jit(model.flat_styles)(params, jnp.asarray(ws)))
  cams = np.repeat(np.asarray(model.cameras(jnp.zeros((1, 2)))), samples, axis=0)
  with tqdm(total=samples, desc="correlation samples", unit="image",
            disable=not progress) as bar:
    images = renderer.render_rows(params, styles, cams, on_batch=lambda b: bar.update(len(b)))
  training_judge = Judge("training_qmm", model.qmm)
  q, _ = training_judge(images)
  correlation = baselines.attribute_correlations(styles, {a: q[a] for a in attributes})
  probabilities = run.probabilities()
  allowed = None if model.editable is None else np.asarray(model.editable)
  channels, budgets = {}, {}
  for a in attributes:
    k = count or baselines.mask_channel_budget(probabilities, list(run.attributes).index(a))
    editable_channels = baselines.correlated_channels(correlation[a], k, allowed)
    channels[a] = editable_channels
    budgets[a] = {"channels": int(len(editable_channels)),
                  "max_abs_correlation": float(np.max(correlation[a]))}
  return channels, {"samples": samples, "seed_base": seed_base,
                    "channels_rule": (f"fixed {count}" if count else
                                      "round(sum_c P[a, c]) of the SAT3D mask"),
                    "per_attribute": budgets}


def evaluate(run, judges: Sequence[Judge], num_pairs: int, num_views: int = 2,
             yaw_range: float = DEFAULT_YAW_RANGE, delta: float = 1.0,
             attributes: Optional[Sequence[str]] = None, distance: str = "l1",
             correlation_samples: int = 64, swap_count: int = 0,
             seed_base: int = EVAL_SEED_BASE, batch: int = 8,
             progress: bool = True, face_identity: Optional[FaceIdentity] = None,
             identity_note: str = "") -> dict:
  """Runs the protocol (module docstring) on a `run_io.TrainedRun`; returns the report dict:
  {'protocol': ..., 'results': {judge: {attribute: {method: {metric: value}}}}, ...}.
  face_identity: the descriptor of the identity metric (None: identity is None, and
  `identity_note` says why, e.g. 'not applicable: afhq_cats')."""
  if num_pairs < 1:
    raise ValueError(f"need at least one pair, got {num_pairs}")
  model = run.model
  names = list(attributes) if attributes else list(run.attributes)
  run.targets(names)  # validates the names
  for judge in judges:
    missing = [a for a in run.attributes if a not in judge.attributes]
    if missing:
      raise ValueError(f"judge {judge.name} does not measure {missing}")
  qmm_lib.get_distance(distance)
  if correlation_samples < 2:
    raise ValueError(f"the channel-swap correlations need >= 2 samples, got "
                     f"{correlation_samples}")
  gen = model.generator
  params = gen.params
  bands = baselines.style_mixing_bands(gen.arch)
  methods = method_names(bands)
  views = yaw_sweep(num_views, yaw_range)
  cams = np.asarray(model.cameras(jnp.asarray(views)))
  renderer = StyleRenderer(gen, batch)

  swap, swap_info = swap_channel_sets(run, names, renderer, correlation_samples, swap_count,
                                      progress=progress)

  to_ws = jax.jit(model.ws_from_z)
  to_flat = jax.jit(model.flat_styles)
  seeds = pair_seeds(num_pairs, seed_base)
  measured = list(run.attributes)
  # Per judge: q_src / q_ref {b: [P, V, K]}, q_edit[method][a] {b: [P, V, K]}, cos[method][a].
  store = {j.name: {"src": {b: [] for b in measured}, "ref": {b: [] for b in measured},
                    "edit": {m: {a: {b: [] for b in measured} for a in names} for m in methods},
                    "cos": {m: {a: [] for a in names} for m in methods}} for j in judges}
  face_dist = {m: {a: [] for a in names} for m in methods}  # [V] distances per pair
  for src_seed, ref_seed in tqdm(seeds, desc="pairs", unit="pair", disable=not progress):
    z = latents_for_seeds([src_seed, ref_seed], gen.z_dim)
    ws = np.asarray(to_ws(params, jnp.asarray(z)))
    s_src, s_ref = np.asarray(to_flat(params, jnp.asarray(ws)))
    flats = {("source", None): s_src, ("reference", None): s_ref}
    for band, rng in bands.items():
      mixed = baselines.mix_ws(ws[0], ws[1], rng)
      flats[(f"mix_{band}", None)] = np.asarray(to_flat(params, jnp.asarray(mixed[None])))[0]
    targets = np.stack([run.targets([a]) for a in names])
    edited = np.asarray(run.edit(jnp.asarray(s_src[None]), jnp.asarray(s_ref[None]),
                                 jnp.asarray(targets), delta))
    for a, s_edit in zip(names, edited):
      flats[("sat3d", a)] = s_edit
      flats[("channel_swap", a)] = baselines.swap_channels(s_src, s_ref, swap[a])
    keys = list(flats)
    rows, index = _unique_rows([flats[k] for k in keys])
    images = renderer.render(params, rows, cams)  # [U, V, H, W, 3]
    u, v = images.shape[:2]
    of = {k: index[i] for i, k in enumerate(keys)}
    if face_identity is not None:
      describe = _describer(face_identity, images)
      for m in methods:
        for a in names:
          row = of[_method_key(m, a)]
          face_dist[m][a].append(face_distances(describe, [row], of[("source", None)], v)[0])
    for judge in judges:
      q, emb = judge(images.reshape((u * v,) + images.shape[2:]))
      q = {b: x.reshape(u, v, -1) for b, x in q.items()}
      emb = emb.reshape(u, v, -1)
      st = store[judge.name]
      for b in measured:
        st["src"][b].append(q[b][of[("source", None)]])
        st["ref"][b].append(q[b][of[("reference", None)]])
      e_src = emb[of[("source", None)]]
      for m in methods:
        for a in names:
          row = of[_method_key(m, a)]
          for b in measured:
            st["edit"][m][a][b].append(q[b][row])
          st["cos"][m][a].append(np.sum(emb[row].astype(np.float64) * e_src, -1))

  results = {}
  threshold = face_identity.threshold if face_identity is not None else math.nan
  for judge in judges:
    st = store[judge.name]
    q_src = {b: np.stack(x) for b, x in st["src"].items()}
    q_ref = {b: np.stack(x) for b, x in st["ref"].items()}
    results[judge.name] = {
        a: {m: {**score_attribute(a, q_src, q_ref,
                                  {b: np.stack(x) for b, x in st["edit"][m][a].items()},
                                  np.stack(st["cos"][m][a]), distance),
                **identity_scores(np.stack(face_dist[m][a]) if face_identity else None,
                                  threshold)}
            for m in methods}
        for a in names}

  return {
      "workdir": str(run.workdir), "step": run.step,
      "generator": run.config.generator, "clip": run.config.clip,
      "protocol": {
          "pairs": num_pairs, "seed_base": seed_base,
          "pair_seeds": "source = seed_base + 2i, reference = seed_base + 2i + 1; "
                        "z = numpy RandomState(seed).randn(z_dim)",
          "truncation_psi": float(run.config.truncation_psi),
          "views": np.round(views.astype(np.float64), 6).tolist(), "delta": delta,
          "distance": distance,
          "judges": [j.name for j in judges], "attributes": names,
          "measured_attributes": measured, "methods": list(methods),
          "style_mixing_bands": {b: list(r) for b, r in bands.items()},
          "channel_swap": swap_info, "metrics": METRIC_HELP,
          "identity": ({"descriptor": face_identity.name, "same_person_below": threshold}
                       if face_identity is not None else identity_note or "not measured"),
      },
      "results": results,
  }


# ----------------------------------------------------------------------------------------------
# Reporting.

def _fmt(x: float) -> str:
  return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def markdown_report(report: dict) -> str:
  """The report as Markdown: per judge, a summary table (methods, metrics averaged over the
  evaluated attributes) and the full table (attribute x method)."""
  p = report["protocol"]
  lines = [f"# SAT3D evaluation: {report['workdir']} (step {report['step']})", "",
           f"{p['pairs']} held-out pairs (seeds from {p['seed_base']}), {len(p['views'])} "
           f"views (yaw {', '.join(f'{v[0]:+.2f}' for v in p['views'])} rad), delta "
           f"{p['delta']}, distance {p['distance']}. Judges use held-out phrasings.", ""]
  lines += [f"- **{m}**: {h}" for m, h in p["metrics"].items()]
  header = "| " + " | ".join(METRICS) + " |"
  rule = "|" + "---:|" * len(METRICS)
  for judge, per_attr in report["results"].items():
    lines += ["", f"## Judge: {judge}", "", "Mean over attributes:", "",
              "| method " + header, "|:---" + rule]
    for m in p["methods"]:
      means = []
      for metric in METRICS:
        vals = [per_attr[a][m][metric] for a in per_attr]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        means.append(float(np.mean(vals)) if vals else math.nan)
      lines.append(f"| {m} | " + " | ".join(_fmt(v) for v in means) + " |")
    lines += ["", "Per attribute:", "", "| attribute | method " + header, "|:---|:---" + rule]
    for a, per_method in per_attr.items():
      for m in p["methods"]:
        lines.append(f"| {a} | {m} | " + " | ".join(_fmt(per_method[m][k]) for k in METRICS)
                     + " |")
  return "\n".join(lines) + "\n"
