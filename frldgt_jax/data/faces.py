"""Procedurally drawn faces and action-unit (AU) displacement fields for the synthetic corpus.

A face is drawn once per subject on a canonical canvas whose coordinates are the alignment
template's normalised crop coordinates (`align.TEMPLATE`; x right, y down, the aligned crop is
[0, 1]^2). The canvas covers [-0.25, 1.25] x [-0.25, 1.30] at `PIXELS_PER_UNIT` pixels per unit,
so hair, ears and neck around the crop are drawn too. Per-subject identity (proportions, skin
tone, brows, hair, texture) is random; eyes and mouth sit within about 0.01 units of the template,
as real faces do after a three-point alignment.

Expressions are local smooth warps of that drawing: each AU component is a Gaussian-windowed
translation of one facial region (brows, cheeks, mouth corners, jaw) with a peak displacement
given in pixels of a 128-pixel aligned crop (`AU_PIXELS`). Blinks redraw the eyelids.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import cv2
import numpy as np

PIXELS_PER_UNIT = 256          # canvas resolution: 2x a 128-pixel aligned crop
CANVAS_X = (-0.25, 1.25)       # canvas extent in normalised template units
CANVAS_Y = (-0.25, 1.30)
CANVAS_W = int(round((CANVAS_X[1] - CANVAS_X[0]) * PIXELS_PER_UNIT))
CANVAS_H = int(round((CANVAS_Y[1] - CANVAS_Y[0]) * PIXELS_PER_UNIT))
AU_PIXELS = 128                # AU amplitudes are pixels of a 128 x 128 aligned crop
_SHIFT = 4                     # cv2 drawing: 4 fractional bits of sub-pixel precision


def units_to_canvas(points) -> np.ndarray:
  """Normalised template coordinates -> canvas pixel coordinates (pixel centres at integers)."""
  p = np.asarray(points, dtype=np.float64)
  return (p - np.array([CANVAS_X[0], CANVAS_Y[0]])) * PIXELS_PER_UNIT - 0.5


def canvas_to_units(points) -> np.ndarray:
  """Canvas pixel coordinates -> normalised template coordinates."""
  p = np.asarray(points, dtype=np.float64)
  return (p + 0.5) / PIXELS_PER_UNIT + np.array([CANVAS_X[0], CANVAS_Y[0]])


# ----------------------------------------------------------------------------- identity

@dataclasses.dataclass(frozen=True)
class Identity:
  """One synthetic person: proportions in normalised units, colours as BGR in [0, 1]."""
  seed: int
  skin: tuple[float, float, float]
  hair: tuple[float, float, float]
  lips: tuple[float, float, float]
  iris: tuple[float, float, float]
  face_cx: float
  face_cy: float
  face_ax: float          # face ellipse semi-axes
  face_ay: float
  eye_dx: float           # eye centre = (0.5 -+ eye_dx, eye_y)
  eye_y: float
  eye_w: float            # eye opening semi-axes
  eye_h: float
  iris_r: float
  brow_gap: float         # brow centre height above the eye centre
  brow_len: float         # brow half length
  brow_thick: float
  brow_arch: float
  nose_y: float           # nose tip
  nose_w: float           # half width of the nose wings
  mouth_y: float          # mouth line (the mouth landmark is (0.5, mouth_y))
  mouth_w: float          # half width (corner = (0.5 -+ mouth_w, mouth_y))
  upper_lip: float
  lower_lip: float
  blush: float
  fringe_y: float         # hair line on the forehead
  hair_volume: float
  moles: tuple[tuple[float, float, float], ...]

  @property
  def landmarks(self) -> np.ndarray:
    """True (left eye, right eye, mouth) in normalised units, [3, 2]."""
    return np.array([[0.5 - self.eye_dx, self.eye_y], [0.5 + self.eye_dx, self.eye_y],
                     [0.5, self.mouth_y]])


def random_identity(rng: np.random.Generator) -> Identity:
  """Draws a random identity (all randomness comes from `rng`)."""
  u = rng.uniform
  lightness = u(0.42, 0.82)
  skin = (lightness * u(0.70, 0.80), lightness * u(0.82, 0.90), lightness)
  hair_l = u(0.06, 0.40)
  hair = (hair_l * u(0.75, 0.9), hair_l * u(0.85, 0.95), hair_l)
  lips = (skin[0] * 0.72, skin[1] * 0.70, skin[2] * u(0.80, 0.90))
  iris_l = u(0.12, 0.45)
  iris = (iris_l * u(0.6, 1.3), iris_l * u(0.7, 1.0), iris_l * u(0.6, 0.9))
  moles = tuple((u(0.2, 0.8), u(0.45, 0.9), u(0.004, 0.008)) for _ in range(rng.integers(0, 3)))
  return Identity(
      seed=int(rng.integers(2**31)), skin=skin, hair=hair, lips=lips, iris=iris,
      face_cx=u(0.49, 0.51), face_cy=u(0.49, 0.53), face_ax=u(0.37, 0.42), face_ay=u(0.47, 0.51),
      eye_dx=u(0.172, 0.188), eye_y=u(0.372, 0.388), eye_w=u(0.058, 0.07), eye_h=u(0.022, 0.029),
      iris_r=u(0.021, 0.026), brow_gap=u(0.075, 0.095), brow_len=u(0.068, 0.088),
      brow_thick=u(0.011, 0.022), brow_arch=u(0.008, 0.022), nose_y=u(0.58, 0.62),
      nose_w=u(0.045, 0.062), mouth_y=u(0.768, 0.792), mouth_w=u(0.10, 0.125),
      upper_lip=u(0.016, 0.026), lower_lip=u(0.022, 0.034), blush=u(0.0, 0.12),
      fringe_y=u(0.07, 0.19), hair_volume=u(0.04, 0.11), moles=moles)


# ----------------------------------------------------------------------------- drawing

def _px(value: float) -> float:
  return value * PIXELS_PER_UNIT


def _pt(x: float, y: float) -> tuple[int, int]:
  """A cv2 drawing point with _SHIFT fractional bits."""
  c = units_to_canvas((x, y))
  return int(round(c[0] * (1 << _SHIFT))), int(round(c[1] * (1 << _SHIFT)))


def _axes(ax: float, ay: float) -> tuple[int, int]:
  return int(round(_px(ax) * (1 << _SHIFT))), int(round(_px(ay) * (1 << _SHIFT)))


def _mask(draw, blur: float = 0.0) -> np.ndarray:
  """A float32 [H, W] mask in [0, 1] from a drawing callback on an anti-aliased uint8 canvas."""
  m = np.zeros((CANVAS_H, CANVAS_W), np.uint8)
  draw(m)
  m = m.astype(np.float32) / 255.0
  if blur > 0:
    m = cv2.GaussianBlur(m, (0, 0), _px(blur))
  return m


def _ellipse(cx, cy, ax, ay, angle=0.0, start=0, end=360, thickness=-1):
  def draw(m):
    cv2.ellipse(m, _pt(cx, cy), _axes(ax, ay), angle, start, end, 255,
                -1 if thickness < 0 else max(1, int(round(_px(thickness)))), cv2.LINE_AA, _SHIFT)
  return draw


def _polyline(points, thickness, closed=False, filled=False):
  def draw(m):
    pts = np.array([_pt(x, y) for x, y in points], np.int32).reshape(-1, 1, 2)
    if filled:
      cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, _SHIFT)
    else:
      cv2.polylines(m, [pts], closed, 255, max(1, int(round(_px(thickness)))), cv2.LINE_AA, _SHIFT)
  return draw


def _support(mask: np.ndarray) -> tuple[slice, slice] | None:
  """The bounding box of a mask's non-zero pixels (None if it has none)."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if not len(rows):
    return None
  return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _paint(image: np.ndarray, mask: np.ndarray, colour, strength: float = 1.0) -> None:
  """Blends `colour` into the image with opacity mask * strength."""
  box = _support(mask)
  if box is None:
    return
  a = (mask[box] * strength)[:, :, None]
  image[box] = image[box] * (1.0 - a) + a * np.asarray(colour, np.float32)


def _shade(image: np.ndarray, mask: np.ndarray, factor: float) -> None:
  """Multiplies the image by `factor` where mask = 1 (darker < 1 < lighter)."""
  box = _support(mask)
  if box is None:
    return
  image[box] *= (1.0 + (factor - 1.0) * mask[box])[:, :, None]


def _arc(cx, cy, half, rise, n=9):
  xs = np.linspace(cx - half, cx + half, n)
  return [(x, cy - rise * (1 - ((x - cx) / half) ** 2)) for x in xs]


@dataclasses.dataclass(frozen=True)
class Drawing:
  """A drawn face: BGR float32 [H, W, 3] canvas in [0, 1] and the head's alpha [H, W]."""
  image: np.ndarray
  alpha: np.ndarray


def draw_face(identity: Identity) -> Drawing:
  """Draws `identity` with open eyes on the canonical canvas (see module docstring)."""
  idt = identity
  rng = np.random.default_rng(idt.seed)
  img = np.zeros((CANVAS_H, CANVAS_W, 3), np.float32)
  skin, hair = np.array(idt.skin, np.float32), np.array(idt.hair, np.float32)
  ys, xs = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
  ux, uy = canvas_to_units(np.stack([xs, ys], -1)).transpose(2, 0, 1)

  # Back hair, ears, neck, face, in painting order.
  hair_back = _mask(_ellipse(idt.face_cx, idt.face_cy - 0.06, idt.face_ax + idt.hair_volume,
                             idt.face_ay * 0.92 + idt.hair_volume), 0.004)
  neck = _mask(_polyline([(0.5 - 0.17, 0.80), (0.5 + 0.17, 0.80), (0.5 + 0.2, 1.32),
                          (0.5 - 0.2, 1.32)], 0, filled=True), 0.003)
  shirt = _mask(_ellipse(0.5, 1.55, 0.75, 0.36), 0.004)
  ears = sum(_mask(_ellipse(idt.face_cx + s * (idt.face_ax - 0.01), 0.47, 0.045, 0.085), 0.003)
             for s in (-1, 1))
  face = _mask(_ellipse(idt.face_cx, idt.face_cy, idt.face_ax, idt.face_ay), 0.003)
  alpha = np.clip(np.maximum.reduce([hair_back, neck, shirt, np.minimum(ears, 1), face]), 0, 1)
  _paint(img, hair_back, hair)
  _paint(img, np.clip(neck + np.minimum(ears, 1), 0, 1), skin * 0.85)
  _paint(img, shirt, np.array(idt.hair[::-1], np.float32) * 0.5 + 0.15)
  under_chin = _mask(_ellipse(idt.face_cx, idt.face_cy + idt.face_ay * 0.95, idt.face_ax * 0.7,
                              0.06), 0.02)
  _shade(img, under_chin * neck, 0.75)
  # Face with radial shading (darker towards the outline: a cheap 3-D look).
  r2 = ((ux - idt.face_cx) / idt.face_ax) ** 2 + ((uy - idt.face_cy) / idt.face_ay) ** 2
  shading = np.clip(1.05 - 0.28 * r2 ** 2, 0.6, 1.05).astype(np.float32)
  _paint(img, face, skin)
  img *= (1 + (shading - 1) * face)[:, :, None]

  # Skin texture: fine and coarse blurred noise, so optical flow has something to follow.
  fine = cv2.GaussianBlur(rng.standard_normal((CANVAS_H, CANVAS_W)).astype(np.float32), (0, 0), 1.2)
  coarse = cv2.GaussianBlur(rng.standard_normal((CANVAS_H, CANVAS_W)).astype(np.float32), (0, 0), 9)
  texture = 1 + 0.022 * fine / (fine.std() + 1e-6) + 0.03 * coarse / (coarse.std() + 1e-6)
  skin_area = np.clip(face + neck + ears, 0, 1)
  img *= (1 + (texture - 1) * skin_area)[:, :, None]
  for mx, my, mr in idt.moles:
    _shade(img, _mask(_ellipse(mx, my, mr, mr), 0.001) * face, 0.55)

  # Cheeks (blush) and eye sockets.
  for s in (-1, 1):
    ex = 0.5 + s * idt.eye_dx
    cheek = _mask(_ellipse(0.5 + s * (idt.eye_dx + 0.01), idt.eye_y + 0.17, 0.075, 0.05), 0.03)
    _paint(img, cheek * face, skin * np.array([0.85, 0.85, 1.05], np.float32), idt.blush * 4)
    _shade(img, cheek * face, 1.05)
    socket = _mask(_ellipse(ex, idt.eye_y - 0.012, idt.eye_w * 1.45, idt.eye_h * 2.6), 0.02)
    _shade(img, socket * face, 0.82)
    # Lower-lid fold and cheek crease: edges the cheek raiser (AU6) visibly lifts.
    _shade(img, _mask(_polyline(_arc(ex, idt.eye_y + idt.eye_h + 0.03, idt.eye_w * 0.9,
                                     -0.012), 0.006), 0.004) * face, 0.8)

  # Brows: arched strokes tapering to the outer end.
  brow_y = idt.eye_y - idt.brow_gap
  for s in (-1, 1):
    bx = 0.5 + s * idt.eye_dx
    pts = _arc(bx, brow_y, idt.brow_len, idt.brow_arch, n=11)
    for (x0, y0), (x1, y1), k in zip(pts[:-1], pts[1:], range(10)):
      outer = k / 9 if s > 0 else 1 - k / 9
      thick = idt.brow_thick * (1.15 - 0.55 * outer)
      _paint(img, _mask(_polyline([(x0, y0), (x1, y1)], thick), 0.002), hair * 0.9, 0.92)

  # Nose: bright ridge, side shadows, tip, nostrils, wings.
  _shade(img, _mask(_polyline([(0.5, idt.eye_y), (0.5, idt.nose_y - 0.03)], 0.03), 0.012), 1.08)
  for s in (-1, 1):
    _shade(img, _mask(_polyline([(0.5 + s * 0.035, idt.eye_y + 0.03),
                                 (0.5 + s * 0.04, idt.nose_y - 0.01)], 0.02), 0.012), 0.9)
    _shade(img, _mask(_ellipse(0.5 + s * idt.nose_w * 0.55, idt.nose_y + 0.022, 0.014, 0.008,
                               s * 20), 0.002), 0.45)
    _shade(img, _mask(_ellipse(0.5 + s * idt.nose_w, idt.nose_y + 0.01, 0.018, 0.026, 0, 0, 360,
                               0.005), 0.003), 0.8)
  _shade(img, _mask(_ellipse(0.5, idt.nose_y - 0.005, 0.028, 0.02), 0.01), 1.06)
  _shade(img, _mask(_ellipse(0.5, idt.nose_y + 0.035, 0.05, 0.012), 0.01), 0.9)

  # Nasolabial folds: from the nose wings towards the mouth corners.
  for s in (-1, 1):
    fold = [(0.5 + s * (idt.nose_w + 0.01), idt.nose_y + 0.01),
            (0.5 + s * (idt.mouth_w + 0.03), idt.mouth_y - 0.05),
            (0.5 + s * (idt.mouth_w + 0.035), idt.mouth_y + 0.01)]
    _shade(img, _mask(_polyline(fold, 0.008), 0.006), 0.82)

  # Mouth: lips, the dark line between them, corner dimples, shadow under the lower lip.
  my, mw = idt.mouth_y, idt.mouth_w
  upper = [(0.5 - mw, my), (0.5 - mw * 0.5, my - idt.upper_lip), (0.5 - 0.012, my - idt.upper_lip
          * 0.9), (0.5, my - idt.upper_lip * 0.75), (0.5 + 0.012, my - idt.upper_lip * 0.9),
           (0.5 + mw * 0.5, my - idt.upper_lip), (0.5 + mw, my)]
  lower = [(0.5 + mw, my), (0.5 + mw * 0.5, my + idt.lower_lip), (0.5, my + idt.lower_lip * 1.1),
           (0.5 - mw * 0.5, my + idt.lower_lip)]
  _paint(img, _mask(_polyline(upper + lower, 0, filled=True), 0.002), idt.lips)
  _shade(img, _mask(_polyline(upper[1:-1], 0.003), 0.002), 0.85)
  _shade(img, _mask(_polyline([(0.5 - mw, my), (0.5 - mw * 0.4, my + 0.002), (0.5, my + 0.003),
                               (0.5 + mw * 0.4, my + 0.002), (0.5 + mw, my)], 0.005), 0.0015), 0.4)
  for s in (-1, 1):
    _shade(img, _mask(_ellipse(0.5 + s * (mw + 0.006), my, 0.006, 0.006), 0.003), 0.7)
  _shade(img, _mask(_ellipse(0.5, my + idt.lower_lip + 0.03, 0.05, 0.013), 0.01), 0.85)
  _shade(img, _mask(_ellipse(idt.face_cx, idt.face_cy + idt.face_ay - 0.07, 0.06, 0.03), 0.02),
         1.05)

  # Eyes (open); blinks are drawn over them by `add_eyelids`.
  for s in (-1, 1):
    ex = 0.5 + s * idt.eye_dx
    opening = _mask(_ellipse(ex, idt.eye_y, idt.eye_w, idt.eye_h), 0.0015)
    _paint(img, opening, (0.86, 0.88, 0.9))
    iris = _mask(_ellipse(ex, idt.eye_y, idt.iris_r, idt.iris_r), 0.0015) * opening
    _paint(img, iris, idt.iris)
    _paint(img, _mask(_ellipse(ex, idt.eye_y, idt.iris_r * 0.45, idt.iris_r * 0.45), 0.001)
           * opening, (0.03, 0.03, 0.03))
    _paint(img, _mask(_ellipse(ex + 0.006, idt.eye_y - 0.007, 0.004, 0.004), 0.001) * opening,
           (0.95, 0.95, 0.95), 0.8)
    # Upper lid line: dark, but lighter than the pupil (which is what marks the eye centre).
    _paint(img, _mask(_ellipse(ex, idt.eye_y, idt.eye_w, idt.eye_h, 0, 180, 360, 0.006), 0.001),
           0.12 + hair * 0.5)
    _shade(img, _mask(_ellipse(ex, idt.eye_y - 0.004, idt.eye_w * 1.05, idt.eye_h * 1.9, 0, 200,
                               340, 0.004), 0.002), 0.8)

  # Fringe: hair over the forehead above a wavy hair line.
  wave = idt.fringe_y + 0.015 * np.sin(ux * 23 + idt.seed % 7)
  forehead_hair = np.clip((wave - uy) * PIXELS_PER_UNIT / 2.0 + 0.5, 0, 1) * hair_back
  _paint(img, forehead_hair.astype(np.float32), hair)
  strands = cv2.GaussianBlur(rng.standard_normal((CANVAS_H, CANVAS_W)).astype(np.float32),
                             (0, 0), 2.0)
  hair_area = np.clip(hair_back * (1 - face) + forehead_hair, 0, 1)
  img *= (1 + 0.12 * strands / (strands.std() + 1e-6) * hair_area)[:, :, None]
  return Drawing(np.clip(img, 0, 1).astype(np.float32), alpha.astype(np.float32))


def add_eyelids(drawing: Drawing, identity: Identity, closure: float) -> Drawing:
  """Closes both eyes by `closure` in [0, 1] (0 open, 1 shut): skin lids drawn over the eyes."""
  if closure <= 0:
    return drawing
  idt = identity
  img = drawing.image.copy()
  closure = min(1.0, float(closure))
  for s in (-1, 1):
    ex = 0.5 + s * idt.eye_dx
    top = idt.eye_y - idt.eye_h
    lid_bottom = top + closure * 2 * idt.eye_h * 1.05
    opening = _mask(_ellipse(ex, idt.eye_y, idt.eye_w * 1.04, idt.eye_h * 1.1), 0.001)
    y0 = units_to_canvas((0.0, lid_bottom))[1]
    rows = np.arange(CANVAS_H, dtype=np.float32)[:, None]
    lid = opening * np.clip(y0 - rows + 0.5, 0, 1)
    _paint(img, lid, np.asarray(idt.skin, np.float32) * 0.78)
    lash = _mask(_polyline(_arc(ex, lid_bottom, idt.eye_w * 0.95, -0.004 * closure), 0.005),
                 0.001) * opening
    _paint(img, lash, np.asarray(idt.hair, np.float32) * 0.5)
  return Drawing(img, drawing.alpha)


# ----------------------------------------------------------------------------- AU fields

@dataclasses.dataclass(frozen=True)
class AUComponent:
  """One Gaussian-windowed translation of a facial region.

  centre (normalised units), direction (unit vector, canvas x/y), sigma (normalised units, x and
  y), amplitude = peak displacement in pixels of a 128-pixel aligned crop, and an optional gate:
  the component acts only below the mouth line (jaw and chin movements leave the upper lip).
  """
  au: str
  centre: tuple[float, float]
  direction: tuple[float, float]
  sigma: tuple[float, float]
  amplitude: float
  below_mouth: float | None = None


def _unit(dx: float, dy: float) -> tuple[float, float]:
  n = math.hypot(dx, dy)
  return dx / n, dy / n


# AU patterns (FACS): which region moves where. 'side' components are made per side
# s = -1 (image-left) / +1 (image-right) with their own amplitude (micro-expressions are often
# asymmetric).
def au_components(identity: Identity, au: str, amplitudes: Sequence[float]) -> list[AUComponent]:
  """The components of one AU pattern for `identity`.

  Patterns: 'AU4' brow lowerer (brows down and together), 'AU1+2' brow raiser, 'AU1' inner brow
  raiser, 'AU6' cheek raiser (cheeks and lower lids up), 'AU12' lip-corner puller (corners up and
  out), 'AU15' lip-corner depressor (corners down), 'AU26' jaw drop (lower lip and chin down),
  'AU14' dimpler, 'AU17' chin raiser, 'AU20' lip stretcher. `amplitudes` gives the peak
  displacement per side (image-left, image-right) or one value for centred patterns.
  """
  idt = identity
  brow_y = idt.eye_y - idt.brow_gap
  sides = ((-1, amplitudes[0]), (1, amplitudes[-1]))
  out = []
  if au == "AU4":
    for s, a in sides:
      out.append(AUComponent(au, (0.5 + s * (idt.eye_dx - 0.3 * idt.brow_len), brow_y),
                             _unit(-s * 0.45, 1.0), (0.06, 0.045), a))
  elif au == "AU1+2":
    for s, a in sides:
      out.append(AUComponent(au, (0.5 + s * idt.eye_dx, brow_y), (0.0, -1.0), (0.075, 0.045), a))
  elif au == "AU1":
    for s, a in sides:
      out.append(AUComponent(au, (0.5 + s * (idt.eye_dx - 0.6 * idt.brow_len), brow_y),
                             (0.0, -1.0), (0.045, 0.04), a))
  elif au == "AU6":
    for s, a in sides:
      out.append(AUComponent(au, (0.5 + s * idt.eye_dx, idt.eye_y + 0.13), (0.0, -1.0),
                             (0.075, 0.06), a))
      out.append(AUComponent(au, (0.5 + s * idt.eye_dx, idt.eye_y + idt.eye_h + 0.01),
                             (0.0, -1.0), (0.05, 0.018), 0.5 * a))
  elif au in ("AU12", "AU15", "AU14", "AU20"):
    direction = {"AU12": (0.55, -0.85), "AU15": (0.0, 1.0), "AU14": (1.0, -0.15),
                 "AU20": (1.0, 0.25)}[au]
    for s, a in sides:
      out.append(AUComponent(au, (0.5 + s * idt.mouth_w, idt.mouth_y),
                             _unit(s * direction[0], direction[1]), (0.045, 0.04), a))
  elif au == "AU26":
    out.append(AUComponent(au, (0.5, idt.mouth_y + 0.13), (0.0, 1.0), (0.17, 0.13),
                           float(np.mean(amplitudes)), below_mouth=idt.mouth_y))
  elif au == "AU17":
    out.append(AUComponent(au, (0.5, idt.mouth_y + 0.1), (0.0, -1.0), (0.08, 0.05),
                           float(np.mean(amplitudes)), below_mouth=idt.mouth_y))
  else:
    raise ValueError(f"unknown AU pattern {au!r}")
  return out


def _window(c: AUComponent) -> tuple[int, int, int, int]:
  """Canvas box (x0, y0, x1, y1) outside which a component's displacement is below 0.3%."""
  cx, cy = units_to_canvas(c.centre)
  sx, sy = _px(c.sigma[0]), _px(c.sigma[1])
  return (max(0, int(cx - 3.5 * sx)), max(0, int(cy - 3.5 * sy)),
          min(CANVAS_W, int(cx + 3.5 * sx) + 2), min(CANVAS_H, int(cy + 3.5 * sy) + 2))


def field_box(components: Sequence[AUComponent], margin: int = 8) -> tuple[int, int, int, int]:
  """The canvas box (x0, y0, x1, y1) holding every component's window, plus `margin` pixels."""
  boxes = np.array([_window(c) for c in components]).reshape(-1, 4)
  if not len(boxes):
    return (0, 0, 0, 0)
  return (max(0, int(boxes[:, 0].min()) - margin), max(0, int(boxes[:, 1].min()) - margin),
          min(CANVAS_W, int(boxes[:, 2].max()) + margin),
          min(CANVAS_H, int(boxes[:, 3].max()) + margin))


def displacement_field(components: Sequence[AUComponent], scale: float = 1.0,
                       box: tuple[int, int, int, int] | None = None) -> np.ndarray:
  """Sum of the components' displacements, float32 [h, w, 2] in canvas pixels.

  `scale` multiplies every amplitude (the clip's intensity at one frame: 0 at onset, 1 at apex).
  `box` (x0, y0, x1, y1) restricts the field to that part of the canvas (default: all of it).
  """
  x_lo, y_lo, x_hi, y_hi = box if box is not None else (0, 0, CANVAS_W, CANVAS_H)
  field = np.zeros((y_hi - y_lo, x_hi - x_lo, 2), np.float32)
  to_canvas = PIXELS_PER_UNIT / AU_PIXELS
  for c in components:
    if c.amplitude * scale == 0:
      continue
    cx, cy = units_to_canvas(c.centre)
    sx, sy = _px(c.sigma[0]), _px(c.sigma[1])
    x0, y0, x1, y1 = _window(c)
    x0, y0, x1, y1 = max(x0, x_lo), max(y0, y_lo), min(x1, x_hi), min(y1, y_hi)
    if x1 <= x0 or y1 <= y0:
      continue
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - cx) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - cy) / sy) ** 2)
    if c.below_mouth is not None:
      # Smooth step over ~1.5 canvas pixels just below the lip line.
      line = units_to_canvas((0.0, c.below_mouth))[1] + 1.0
      gy = gy / (1 + np.exp(-(np.arange(y0, y1, dtype=np.float32) - line) / 0.75))
    weight = gy[:, None] * gx[None, :] * (c.amplitude * scale * to_canvas)
    field[y0 - y_lo:y1 - y_lo, x0 - x_lo:x1 - x_lo, 0] += weight * c.direction[0]
    field[y0 - y_lo:y1 - y_lo, x0 - x_lo:x1 - x_lo, 1] += weight * c.direction[1]
  return field


def warp_forward(image: np.ndarray, field: np.ndarray,
                 box: tuple[int, int, int, int] | None = None, iterations: int = 3) -> np.ndarray:
  """Moves the content at p to p + field(p) (bilinear, edges replicated).

  `field` covers `box` (x0, y0, x1, y1) of the image (default: all of it) and is taken as zero
  outside, where the image is left as it is. Backward sampling needs the inverse map q(x) with
  q + field(q) = x; it is found by the fixed-point iteration q <- x - field(q) (a contraction
  while |grad field| < 1; the AU fields here have gradients below 0.3).
  """
  x0, y0, x1, y1 = (int(v) for v in (box if box is not None
                                      else (0, 0, image.shape[1], image.shape[0])))
  if x1 <= x0 or y1 <= y0 or not np.any(field):
    return image
  ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
  qx, qy = xs - field[..., 0], ys - field[..., 1]
  for _ in range(iterations):
    at_q = cv2.remap(field, qx - np.float32(x0), qy - np.float32(y0), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    qx, qy = xs - at_q[..., 0], ys - at_q[..., 1]
  out = image.copy()
  out[y0:y1, x0:x1] = cv2.remap(image, qx, qy, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE).reshape(out[y0:y1, x0:x1].shape)
  return out
