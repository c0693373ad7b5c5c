"""What the studio computes, without any web code: one `Studio` per server, one `Session` per
browser session.

A render names its inputs (source, reference, strengths, psi) and a camera (yaw, pitch). When
the inputs are those of the session's last render, only the camera moved: the cached tri-planes
are rendered from the new camera (renderer and super-resolution only). Otherwise the faces,
the edit and their tri-planes are computed first (a new edit). Either way the three images
(source | reference | result; the source alone without a mask) come from the same
Editor.prepare / render_prepared as launch/transfer.py's grid, so they are the same pixels.
"""
from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time
import uuid
from typing import Callable, Optional

import numpy as np

from sat3d_jax import mask_file, media, shapes, style_file
from sat3d_jax.editor import Editor, Face
from sat3d_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Pick:
  """Where a face comes from: kind 'seed' (value: the seed), 'file' (value: a latent or style
  .npz path, row index) or 'photo' (value: the session's inverted photo of that role)."""
  kind: str
  value: object
  index: int = 0


@dataclasses.dataclass
class Session:
  """One browser session's state (kept by the web layer per session, never shared)."""
  directory: pathlib.Path
  key: Optional[tuple] = None
  faces: list = dataclasses.field(default_factory=list)
  prepared: list = dataclasses.field(default_factory=list)
  photos: dict = dataclasses.field(default_factory=dict)
  image: Optional[np.ndarray] = None
  view: tuple = (0.0, 0.0)


@dataclasses.dataclass
class Rendered:
  """A render's row image uint8 [H, F * W, 3], what was done ('camera move' or 'new edit'),
  its seconds, and a caption for people."""
  image: np.ndarray
  kind: str
  seconds: float
  caption: str


class Studio:
  """The server-wide part: the editor (generator + mask), settings and the output folder."""

  def __init__(self, editor: Editor, out_dir: Optional[str] = None, frames: int = 60,
               fps: int = 30, shape_resolution: int = 128, log: Callable[[str], None] = print,
               encoder=None):
    self.editor = editor
    self.encoder = encoder  # a sat3d_jax.encoder.TrainedEncoder for photos, or None
    self.frames, self.fps, self.shape_resolution = frames, fps, shape_resolution
    self.out_dir = pathlib.Path(out_dir or tempfile.mkdtemp(prefix="sat3d_studio_"))
    self.out_dir.mkdir(parents=True, exist_ok=True)
    self.log = log

  @property
  def attributes(self) -> tuple[str, ...]:
    return self.editor.attributes

  @property
  def has_mask(self) -> bool:
    return bool(self.editor.attributes)

  def new_session(self) -> Session:
    directory = self.out_dir / uuid.uuid4().hex[:12]
    directory.mkdir(parents=True)
    return Session(directory)

  # --- Start-up ---------------------------------------------------------------------------------
  def warm_up(self) -> float:
    """Compiles every program a click runs (seed mapping, edit, tri-planes, render at the
    studio's batch, turntable batch, density grid), so no click waits for XLA; seconds."""
    started = time.time()
    session = self.new_session()
    strengths = {self.attributes[0]: 1.0} if self.has_mask else {}
    self.render(session, Pick("seed", 0), Pick("seed", 1), strengths, None, 0.0, 0.0)
    self.render(session, Pick("seed", 0), Pick("seed", 1), strengths, None, 0.1, 0.0)
    if self.frames:
      self.editor.render_views(session.prepared, len(session.faces) - 1,
                               self.editor.cameras(np.zeros((min(self.frames, 8), 2))), 8)
    self.shape(session)
    return time.time() - started

  # --- Faces and renders ------------------------------------------------------------------------
  def face(self, session: Session, role: str, pick: Pick, psi: Optional[float]) -> Face:
    if pick.kind == "seed":
      try:
        seed = int(pick.value)
      except (TypeError, ValueError):
        raise InputError(f"{role}: the seed must be a whole number, got {pick.value!r}"
                         ) from None
      if not 0 <= seed < 2 ** 32:
        raise InputError(f"{role}: the seed must be in [0, 2^32), got {seed}")
      return self.editor.seed_face(seed, psi)
    if pick.kind == "file":
      if not pick.value:
        raise InputError(f"{role}: upload a latent or style .npz file first")
      return self.editor.face(str(pick.value), int(pick.index), psi, role)
    if pick.kind == "photo":
      if role not in session.photos:
        raise InputError(f"{role}: upload a photo and invert it first")
      return session.photos[role]
    raise InputError(f"{role}: unknown input kind {pick.kind!r}")

  def render(self, session: Session, source: Pick, reference: Pick,
             strengths: dict[str, float], psi: Optional[float], yaw: float, pitch: float
             ) -> Rendered:
    """The row source | reference | result from (yaw, pitch); a camera move when only the
    camera changed since the session's last render (module docstring)."""
    started = time.time()
    key = (source, reference if self.has_mask else None, tuple(sorted(strengths.items())), psi)
    kind = "camera move"
    if key != session.key or not session.prepared:
      kind = "new edit"
      faces = [self.face(session, "source", source, psi)]
      if self.has_mask:
        faces.append(self.face(session, "reference", reference, psi))
        faces.append(self.editor.edit(faces[0], faces[1], strengths) if strengths else
                     dataclasses.replace(faces[0], label=f"{faces[0].label} (no attribute)"))
      session.faces, session.key = faces, None
      session.prepared = self.editor.prepare(faces)
      session.key = key
    cams = self.editor.cameras([[yaw, pitch]])
    images = self.editor.render_prepared(session.prepared, cams)[:, 0]
    session.image = media.image_row(media.to_uint8(images))
    session.view = (float(yaw), float(pitch))
    seconds = time.time() - started
    what = ("renderer + super-resolution from cached tri-planes" if kind == "camera move"
            else "styles, edit, tri-planes, renderer + super-resolution")
    caption = (f"{kind}: {seconds * 1000:.0f} ms ({what}) · view yaw {yaw:+.3f}, pitch "
               f"{pitch:+.3f} rad · " + " | ".join(f.label for f in session.faces))
    return Rendered(session.image, kind, seconds, caption)

  # --- Downloads --------------------------------------------------------------------------------
  def _need_render(self, session: Session) -> None:
    if not session.faces:
      raise InputError("render a face first")

  def grid_png(self, session: Session) -> pathlib.Path:
    """The current row image as a PNG."""
    self._need_render(session)
    path = session.directory / "grid.png"
    media.write_png(path, session.image)
    return path

  def orbit_mp4(self, session: Session) -> pathlib.Path:
    """The result on launch/transfer.py's turntable (same frames and fps), planes cached."""
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    self._need_render(session)
    if not self.frames:
      raise InputError("the studio was started with --frames 0 (no orbit video)")
    cams = self.editor.cameras(media.turntable_views(self.frames))
    with tqdm(total=len(cams), desc="orbit", unit="frame") as bar:
      video = self.editor.render_views(session.prepared, len(session.faces) - 1, cams, 8,
                                       on_batch=bar.update)
    path = session.directory / "orbit.mp4"
    media.write_mp4(path, media.to_uint8(video), self.fps)
    return path

  def styles_npz(self, session: Session) -> pathlib.Path:
    """The current faces as a style file (rows source, reference, result): a source again."""
    self._need_render(session)
    path = session.directory / "result_styles.npz"
    labels = ["source", "reference", "result"][:len(session.faces)]
    face = session.faces[-1]
    style_file.write_style_file(path, np.concatenate([f.styles for f in session.faces]),
                                self.editor.generator.style_layers,
                                self.editor.face_fingerprint(face), labels,
                                face.tuned_generator)
    return path

  def mask_npz(self, session: Session) -> pathlib.Path:
    """The run's mask as a mask file (launch/transfer.py --mask, the studio's --mask)."""
    if not self.has_mask:
      raise InputError("this studio has no trained mask (started with --generator only)")
    path = session.directory / "mask.npz"
    mask_file.write_mask_file(path, self.editor.mask)
    return path

  def shape(self, session: Session) -> tuple[pathlib.Path, pathlib.Path, str]:
    """(OBJ for the page's 3D viewer, PLY download, a caption) of the result's shape."""
    self._need_render(session)
    started = time.time()
    face = session.faces[-1]
    planes = self.editor.planes(face.params, face.styles)
    mesh = shapes.face_mesh(self.editor.generator, face.params, planes, self.shape_resolution)
    obj, ply = session.directory / "shape.obj", session.directory / "shape.ply"
    shapes.write_obj(obj, mesh)
    shapes.write_ply(ply, mesh)
    return obj, ply, (f"{len(mesh.vertices)} vertices, {len(mesh.faces)} triangles, density "
                      f"level {mesh.level:g}, {self.shape_resolution}^3 grid, "
                      f"{time.time() - started:.1f} s")
