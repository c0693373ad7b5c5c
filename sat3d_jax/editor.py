"""Attribute transfer for people: faces from seeds, latent files or style files, edited with a
trained mask and rendered from any camera, the tri-planes of each face computed once.

    editor = Editor.from_workdir("workdirs/sat3d_ffhq_tiny")   # or Editor.from_mask_file(path)
    src, ref = editor.face("12"), editor.face("out/inv/latent.npz", index=1)
    result = editor.edit(src, ref, {"hairstyle": 1.2, "beard": 0.8})
    planes = editor.planes(src.params, np.concatenate([src.styles, result.styles]))
    images = editor.render(src.params, planes, flats, face_index=[0, 1], cams=...)

launch/transfer.py and the studio (launch/studio_app) both go through this class, so the same
inputs give them the same pixels. The edit with a strength delta_a per ticked attribute a is
    s_edit = s_src + (sum_a delta_a P[a]) * (s_ref - s_src)
(sat3d_jax/transfer.py with delta * m_T generalised to one delta per attribute; with equal
strengths it is SAT3D's edit). Only the generator is loaded: no CLIP is needed to edit.
Seeds are mapped as launch/generate.py and the evaluation do (numpy RandomState(seed), frontal
conditioning camera, the run's truncation cutoff) with a truncation psi that may differ per call.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import zipfile
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sat3d_jax import latent_file, mask_file, run_io, style_file, transfer
from sat3d_jax.eg3d import camera, generator as eg3d_generator, rendering
from sat3d_jax.errors import InputError
from sat3d_jax.fingerprint import generator_fingerprint


@dataclasses.dataclass
class Face:
  """A face ready to edit and render: flat styles [1, C], the generator params that render it,
  the camera [25] its photo was taken from (None for seeds), where pivotal-tuned params came
  from (None: the run's generator) and what it is, for people."""
  styles: np.ndarray
  params: Mapping[str, jax.Array]
  camera: Optional[np.ndarray]
  tuned_generator: Optional[str]
  label: str


@functools.partial(jax.jit, static_argnames=("arch", "cutoff"))
def _seed_styles(params, z, c, psi, arch, cutoff):
  ws = eg3d_generator.apply_mapping(params, arch, z, c, psi, cutoff)
  return rendering.flat_styles(params, arch, ws)


@jax.jit
def _edit(s_src, s_ref, probabilities, strengths, editable):
  mask = transfer.target_mask(probabilities, strengths[None])[0]
  full = mask if editable is None else \
      jnp.zeros(s_src.shape[-1], mask.dtype).at[editable].set(mask)
  return transfer.edit_styles(s_src, s_ref, full[None], 1.0)


def editable_channels(generator, include_torgb: bool) -> Optional[np.ndarray]:
  """Indices of the flat style channels a mask covers: None (all) with toRGB, else all but the
  toRGB layers' (the column order of the mask logits)."""
  if include_torgb:
    return None
  return np.concatenate([np.arange(s.start, s.stop)
                         for name, s in generator.style_slices(True).items()
                         if not name.endswith(".torgb")]).astype(np.int32)


class Editor:
  """A generator and a trained mask (module docstring)."""

  def __init__(self, generator, mask: mask_file.MaskFile, source: str):
    self.generator = generator
    self.mask = mask
    self.source = source
    self.editable = editable_channels(generator, mask.include_torgb)
    width = generator.num_style_channels if self.editable is None else len(self.editable)
    if mask.mask_logits.shape[1] != width:
      raise InputError(f"{source}: the mask covers {mask.mask_logits.shape[1]} style channels, "
                       f"the generator {mask.generator} has {width} editable ones")
    rk = generator.rendering_kwargs
    self.pivot = tuple(float(x) for x in rk.get("avg_camera_pivot", (0.0, 0.0, 0.2)))
    self.radius = float(rk.get("avg_camera_radius", 2.7))
    self._probabilities = np.asarray(transfer.mask_probabilities(
        jnp.asarray(mask.mask_logits), mask.temperature))

  # --- Construction ----------------------------------------------------------------------------
  @classmethod
  def from_workdir(cls, workdir, step: Optional[int] = None, generator=None) -> "Editor":
    """The run in `workdir` (its config.json and newest or `step` checkpoint mask)."""
    from sat3d_jax import model as model_lib  # pylint: disable=g-import-not-at-top
    workdir = pathlib.Path(workdir)
    config = run_io.load_config(workdir)
    attributes = run_io.recorded_attributes(workdir)
    step, logits = run_io.load_mask(workdir, step)
    if attributes is None:  # an older run without task.json: the QMM knows them
      attributes = model_lib.build_qmm(config).attributes
    generator = generator or model_lib.build_generator(config)
    if logits.shape[0] != len(attributes) + 1:
      raise InputError(f"{workdir}: checkpoint step {step} has a mask for "
                       f"{logits.shape[0] - 1} attributes, the run measured {len(attributes)}")
    mask = mask_file.MaskFile(
        attributes=tuple(attributes), mask_logits=logits,
        temperature=float(config.objective.temperature),
        include_torgb=bool(config.include_torgb), generator=str(config.generator),
        generator_seed=int(config.seed), generator_fingerprint=generator_fingerprint(generator),
        truncation_psi=float(config.truncation_psi),
        truncation_cutoff=int(config.truncation_cutoff or 0), step=step)
    return cls(generator, mask, f"{workdir} step {step}")

  @classmethod
  def from_mask_file(cls, path, generator=None, **options) -> "Editor":
    """The mask in a mask file with its generator (`generator`, or the one the file names,
    loaded with `options`: modconv, dtype, ray_chunk); the fingerprints must agree."""
    mask = mask_file.read_mask_file(path)
    if generator is None:
      spec = mask.generator
      if not spec.startswith("preset:") and not pathlib.Path(spec).exists():
        raise InputError(f"{path}: its generator {spec!r} does not exist here; give the "
                         "generator's path as well (--generator)")
      generator = eg3d_generator.generator_from_spec(spec, seed=mask.generator_seed, **options)
    found = generator_fingerprint(generator)
    if found != mask.generator_fingerprint:
      raise InputError(f"{path}: the mask was learned on generator {mask.generator_fingerprint}"
                       f" ({mask.generator}), these weights are {found}")
    return cls(generator, mask, str(path))

  @classmethod
  def plain(cls, generator, spec: str, seed: int = 0, truncation_psi: float = 0.7,
            truncation_cutoff: int = 14) -> "Editor":
    """A generator without a trained mask (no attributes: a generation and orbit viewer);
    seeds mapped as launch/generate.py does."""
    width = generator.num_style_channels
    mask = mask_file.MaskFile(
        attributes=(), mask_logits=np.zeros((1, width), np.float32), temperature=1.0,
        include_torgb=True, generator=spec, generator_seed=seed,
        generator_fingerprint=generator_fingerprint(generator), truncation_psi=truncation_psi,
        truncation_cutoff=truncation_cutoff, step=0)
    return cls(generator, mask, spec)

  # --- The mask -------------------------------------------------------------------------------
  @property
  def attributes(self) -> tuple[str, ...]:
    return self.mask.attributes

  @property
  def fingerprint(self) -> str:
    return self.mask.generator_fingerprint

  def probabilities(self) -> np.ndarray:
    """P = softmax(M / tau) [A + 1, C_editable]."""
    return self._probabilities

  def mask_by_layer(self) -> tuple[list[str], np.ndarray]:
    """(layer names, [A, L] expected channels): sum over each layer's editable channels of
    P[a, c], the channels attribute a controls there."""
    columns = np.arange(self.generator.num_style_channels) if self.editable is None else \
        self.editable
    names, sums = [], []
    for name, part in self.generator.style_slices(True).items():
      inside = (columns >= part.start) & (columns < part.stop)
      if inside.any():
        names.append(name)
        sums.append(self._probabilities[:-1, inside].sum(axis=1))
    return names, np.stack(sums, axis=1)

  def strength_row(self, strengths: Mapping[str, float]) -> np.ndarray:
    """[A] strengths (0 for attributes not named); an unknown name is an InputError."""
    row = transfer.targets_from_names(list(strengths), self.attributes)
    for name, value in strengths.items():
      row[self.attributes.index(name)] = float(value)
    return row

  def edit(self, source: Face, reference: Face, strengths: Mapping[str, float]) -> Face:
    """The source with the reference's named attributes, strength delta_a each (module
    docstring); rendered with the source's params."""
    if not strengths:
      raise InputError("pick at least one attribute to transfer")
    row = self.strength_row(strengths)
    styles = np.asarray(_edit(jnp.asarray(source.styles), jnp.asarray(reference.styles),
                              jnp.asarray(self._probabilities), jnp.asarray(row),
                              None if self.editable is None else jnp.asarray(self.editable)))
    label = ", ".join(f"{a} {v:g}" for a, v in strengths.items())
    return Face(styles, source.params, None, source.tuned_generator,
                f"{source.label} with {label} of {reference.label}")

  # --- Faces ----------------------------------------------------------------------------------
  def seed_face(self, seed: int, psi: Optional[float] = None) -> Face:
    """The face of an integer seed, truncation `psi` (default: the run's)."""
    g = self.generator
    psi = self.mask.truncation_psi if psi is None else float(psi)
    z = np.random.RandomState(int(seed)).randn(1, g.z_dim).astype(np.float32)
    styles = _seed_styles(g.params, jnp.asarray(z), self.frontal(), jnp.float32(psi), g.arch,
                          self.mask.truncation_cutoff or None)
    return Face(np.asarray(styles), g.params, None, None, f"seed {seed} (psi {psi:g})")

  def face(self, text: str, index: int = 0, psi: Optional[float] = None, role: str = "source"
           ) -> Face:
    """A face from an integer seed, a latent file (launch/invert.py) or a style file (this
    module's outputs), row `index` of a file."""
    try:
      return self.seed_face(int(text), psi)
    except ValueError:
      pass
    path = pathlib.Path(text)
    if not path.is_file():
      raise InputError(f"{role} {text!r} is neither an integer seed nor an existing latent or "
                       "style file")
    if not zipfile.is_zipfile(path):
      raise InputError(f"{path}: not a latent or style .npz file")
    try:
      with np.load(path, allow_pickle=False) as f:  # which of the two formats
        is_styles = "styles" in f.files
    except (OSError, ValueError, EOFError) as e:
      raise InputError(f"{path}: not a latent or style .npz file ({e})") from None
    if is_styles:
      return self.style_file_face(path, index, role)
    return self.latent_file_face(path, index, role)

  def latent_file_face(self, path: pathlib.Path, index: int, role: str = "source") -> Face:
    """Row `index` of a latent file; its pivotal-tuned generator (if any) renders it."""
    g = self.generator
    latents = latent_file.read_latent_file(str(path))
    ws_all = latents["ws"]
    self._check_row(path, index, len(ws_all), role)
    if ws_all.shape[1:] != (g.num_ws, g.w_dim):
      raise InputError(
          f"{path}: its 'ws' rows are (num_ws, w_dim) = {tuple(ws_all.shape[1:])}, but the "
          f"run's generator {self.mask.generator} needs {(g.num_ws, g.w_dim)}: the latent was "
          "written for another generator. Invert with the run's generator (launch/invert.py "
          "--generator ...), or train on the generator the latent came from "
          "(--config.generator=...).")
    params, tuned = self._tuned_params(path, latents.get("generator"))
    c = latents["c"][index] if "c" in latents else None
    return self.latent_face(ws_all[index:index + 1], c, f"{path} row {index}", params, tuned)

  def latent_face(self, ws: np.ndarray, c: Optional[np.ndarray], label: str, params=None,
                  tuned: Optional[str] = None) -> Face:
    """The face of ws [1, num_ws, w_dim] (e.g. an inverted photo, its camera c [25])."""
    params = self.generator.params if params is None else params
    styles = np.asarray(rendering.jit_flat_styles(params, self.generator.arch,
                                                  jnp.asarray(ws, jnp.float32)))
    return Face(styles, params, c, tuned, label)

  def style_file_face(self, path: pathlib.Path, index: int, role: str = "source") -> Face:
    """Row `index` of a style file written for this generator (or its pivotal-tuned copy)."""
    data = style_file.read_style_file(path)
    self._check_row(path, index, len(data["styles"]), role)
    if list(data["layers"]) != list(self.generator.style_layers):
      raise InputError(f"{path}: its style layers do not match the generator "
                       f"{self.mask.generator} ({len(data['layers'])} layers, "
                       f"{data['styles'].shape[1]} channels; the generator has "
                       f"{self.generator.num_style_channels})")
    params, tuned = self._tuned_params(path, data["generator"])
    expected = self.face_fingerprint(Face(data["styles"], params, None, tuned, ""))
    if data["generator_fingerprint"] != expected:
      raise InputError(f"{path}: the styles were made with generator "
                       f"{data['generator_fingerprint']}, not with {expected} "
                       f"({tuned or self.mask.generator})")
    label = data["labels"][index] if index < len(data["labels"]) else f"row {index}"
    return Face(data["styles"][index:index + 1], params, None, tuned, f"{path} {label}")

  def _check_row(self, path, index: int, rows: int, role: str) -> None:
    if not 0 <= index < rows:
      raise InputError(f"{path}: {role} row {index} out of range (the file has {rows} rows)")

  def _tuned_params(self, path: pathlib.Path, tuned: Optional[str]):
    """(params, absolute path) of the pivotal-tuned params a latent or style file names (its
    reader has made the path absolute and checked it: latent_file.generator_path), or the
    generator's own (params, None)."""
    if not tuned:
      return self.generator.params, None
    tuned_path = pathlib.Path(tuned)
    options = self.generator.options
    try:
      tuned_gen = eg3d_generator.load_generator(tuned_path, modconv=options.modconv,
                                                dtype=options.dtype,
                                                ray_chunk=options.ray_chunk)
    except (OSError, ValueError) as e:
      raise InputError(f"{path}: cannot load its pivotal-tuned generator {tuned!r}: {e}"
                       ) from None
    if tuned_gen.arch != self.generator.arch:
      raise InputError(f"{path}: its generator {tuned_path} has another architecture than "
                       f"{self.mask.generator}")
    return tuned_gen.params, str(tuned_path.absolute())

  # --- Cameras and rendering ------------------------------------------------------------------
  def cameras(self, views) -> np.ndarray:
    """Rendering labels [N, 25] for (yaw, pitch) offsets [N, 2] (radians) from frontal."""
    views = jnp.asarray(views, jnp.float32)
    return np.asarray(camera.orbit_labels(views[:, 0], views[:, 1], self.pivot, self.radius))

  def frontal(self) -> jax.Array:
    return camera.orbit_labels(jnp.zeros(1), jnp.zeros(1), self.pivot, self.radius)

  def planes(self, params, flats: np.ndarray) -> jax.Array:
    """Tri-planes [F, 3, R, R, 32] of flat styles [F, C]: all that does not depend on the
    camera, computed once per face."""
    g = self.generator
    return rendering.jit_planes(params, g.arch, jnp.asarray(flats, jnp.float32), g.options)

  def render(self, params, planes: jax.Array, flats: np.ndarray, face_index: Sequence[int],
             cams: np.ndarray, batch: Optional[int] = None, depth: bool = False,
             on_batch=None):
    """Images [N, H, W, 3] in [-1, 1] (and depths [N, r, r, 1] with `depth`) of row r = face
    face_index[r] (planes / flats [F, ...]) from camera cams[r]; `batch` rows per call (the
    last padded, so one compilation serves any N; default all at once)."""
    g = self.generator
    face_index = np.asarray(face_index, np.int32)
    cams = np.asarray(cams, np.float32)
    batch = batch or len(face_index)
    flats = jnp.asarray(flats, jnp.float32)
    images, depths = [], []
    for start in range(0, len(face_index), batch):
      idx, cam = face_index[start:start + batch], cams[start:start + batch]
      n = len(idx)
      if n < batch:
        idx = np.concatenate([idx, np.repeat(idx[-1:], batch - n)])
        cam = np.concatenate([cam, np.repeat(cam[-1:], batch - n, 0)])
      out = rendering.jit_render(params, g.arch, planes, flats, jnp.asarray(cam), g.options,
                                 face_index=jnp.asarray(idx))
      images.append(np.asarray(out["image"])[:n])
      if depth:
        depths.append(np.asarray(out["image_depth"])[:n])
      if on_batch is not None:
        on_batch(n)
    images = np.concatenate(images)
    return (images, np.concatenate(depths)) if depth else images

  def prepare(self, faces: Sequence[Face]) -> list[tuple]:
    """The camera-independent part of rendering `faces`: [(params, member indices, flats,
    planes)], one entry per distinct params (faces sharing params, the usual case, share one
    planes call and render together). Cache it while only the camera changes."""
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
      groups.setdefault(id(f.params), []).append(i)
    prepared = []
    for members in groups.values():
      params = faces[members[0]].params
      flats = np.concatenate([faces[i].styles for i in members])
      prepared.append((params, members, flats, self.planes(params, flats)))
    return prepared

  def render_prepared(self, prepared: list[tuple], cams: np.ndarray,
                      batch: Optional[int] = None) -> np.ndarray:
    """Images [F, V, H, W, 3] of every prepared face from every camera [V, 25]."""
    v = len(cams)
    out = {}
    for params, members, flats, planes in prepared:
      index = np.repeat(np.arange(len(members)), v)
      images = self.render(params, planes, flats, index, np.tile(cams, (len(members), 1)),
                           batch)
      for k, i in enumerate(members):
        out[i] = images[k * v:(k + 1) * v]
    return np.stack([out[i] for i in range(len(out))])

  def render_views(self, prepared: list[tuple], face: int, cams: np.ndarray,
                   batch: Optional[int] = None, on_batch=None) -> np.ndarray:
    """Images [V, H, W, 3] of face number `face` (of those given to prepare) from cams [V, 25]
    (e.g. a turntable: the planes are not computed again)."""
    for params, members, flats, planes in prepared:
      if face in members:
        return self.render(params, planes, flats, np.full(len(cams), members.index(face)), cams,
                           batch, on_batch=on_batch)
    raise IndexError(f"face {face} was not prepared")

  def face_fingerprint(self, face: Face) -> str:
    """The fingerprint of the params a face renders with (the generator's or its tuned
    copy's): what its style file records."""
    if face.params is self.generator.params:
      return self.fingerprint
    return generator_fingerprint(dataclasses.replace(self.generator, params=face.params))

  def render_faces(self, faces: Sequence[Face], cams: np.ndarray, batch: Optional[int] = None
                   ) -> np.ndarray:
    """Images [F, V, H, W, 3] of every face from every camera [V, 25] (prepare, then
    render_prepared)."""
    return self.render_prepared(self.prepare(faces), cams, batch)
