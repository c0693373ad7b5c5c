"""Invert face photographs into EG3D latents, for SAT3D sources and references.

  python launch/invert.py --generator weights/ffhq512-128 --image photo.jpg --out out/inv \
      [--camera label.json] [--w-steps 200] [--wplus-steps 200] [--pti-steps 0] [--clip DIR]

Per photo: the face is found with OpenCV's bundled detectors and cut out like EG3D's FFHQ crop
(sat3d_jax/face_crop.py says how and where it differs), the camera is read from --camera (a JSON
list of 25 numbers) or estimated (yaw and pitch around the frontal camera), then w and W+ are
optimised (pixel L2/L1, MS-SSIM, and CLIP image features with --clip), optionally followed by
pivotal tuning of the generator (--pti-steps). Written to --out:
  latent.npz                 ws [N, num_ws, w_dim], c [N, 25] and, after pivotal tuning,
                             `generator` = the absolute path of tuned_generator/ (the latent file
                             format of sat3d_jax/pairs.py, one row per --image, in order)
  tuned_generator/           params.npz + config.json (load_generator reads it), with --pti-steps
  NAME_aligned.png           the crop that was inverted
  NAME_reconstruction.png    crop | W+ reconstruction (| after pivotal tuning)
  NAME_turntable.mp4         the result from a turntable of cameras
  NAME_loss.png              loss and PSNR per optimisation step
  summary.json               cameras, landmarks, PSNRs, settings
--generator takes what sat3d_jax.eg3d.load_generator accepts, or preset:NAME (random weights).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from tqdm import tqdm  # noqa: E402

from launch.generate import (VIDEO_PITCH_OFFSET, VIDEO_PITCH_RANGE,  # noqa: E402
                             VIDEO_YAW_RANGE, _write_mp4, make_generator, to_uint8)
from sat3d_jax import face_crop, inversion  # noqa: E402
from sat3d_jax.eg3d import camera as camera_lib  # noqa: E402

LATENT_FILE = "latent.npz"
TUNED_DIR = "tuned_generator"


class InputError(ValueError):
  """A bad photo, camera file or option; the message names it."""


def read_photo(path: pathlib.Path) -> np.ndarray:
  """uint8 RGB [H, W, 3], turned upright by its EXIF orientation."""
  try:
    with Image.open(path) as im:
      return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
  except FileNotFoundError as e:
    raise InputError(f"{path}: no such image") from e
  except OSError as e:
    raise InputError(f"{path}: not a readable image ({e})") from e


def parse_floats(text: str, count: Optional[int] = None, what: str = "values") -> tuple:
  try:
    values = tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got {text!r}")
  if count is not None and len(values) != count:
    raise argparse.ArgumentTypeError(f"{what}: expected {count} numbers, got {len(values)}")
  if not values or not all(math.isfinite(v) for v in values):
    raise argparse.ArgumentTypeError(f"{what}: expected finite numbers, got {text!r}")
  return values


def prepare_target(path: pathlib.Path, size: int, aligned: bool,
                   landmarks: Optional[tuple]) -> tuple[np.ndarray, dict]:
  """The uint8 crop [size, size, 3] to invert and what was done to get it."""
  photo = read_photo(path)
  if aligned:
    h, w = photo.shape[:2]
    if h != w:
      raise InputError(f"{path}: --aligned needs a square crop, got {w}x{h}")
    interp = cv2.INTER_AREA if h > size else cv2.INTER_CUBIC
    crop = photo if h == size else cv2.resize(photo, (size, size), interpolation=interp)
    return crop, {"alignment": "given (--aligned)", "photo_size": [w, h]}
  given = None
  if landmarks is not None:
    given = face_crop.Landmarks.from_array(np.reshape(landmarks, (3, 2)), source="--landmarks")
  try:
    fc = face_crop.crop_face(photo, size, str(path), landmarks=given)
  except face_crop.FaceNotFoundError as e:
    raise InputError(f"{e.args[0].split(';')[0]}; pass its eye and mouth positions with "
                     "--landmarks LX,LY,RX,RY,MX,MY, or --aligned if it is already an "
                     "EG3D-style face crop") from e
  except ValueError as e:  # e.g. landmarks in the wrong order
    raise InputError(f"{path}: {e}") from e
  return fc.image, {"alignment": "eg3d-like crop (sat3d_jax/face_crop.py)",
                    "photo_size": [photo.shape[1], photo.shape[0]],
                    "landmarks": fc.landmarks.as_array().round(2).tolist(),
                    "landmark_source": fc.landmarks.source,
                    "roll_degrees": round(fc.roll_degrees, 3),
                    "crop_matrix": fc.matrix.round(6).tolist()}


def turntable_labels(rig: inversion.CameraRig, frames: int) -> np.ndarray:
  """The official gen_videos.py orbit (as launch/generate.py): [frames, 25]."""
  t = 2 * math.pi * np.arange(frames) / max(frames, 1)
  return np.asarray(rig.labels(jnp.stack(
      [VIDEO_YAW_RANGE * np.sin(t), VIDEO_PITCH_OFFSET + VIDEO_PITCH_RANGE * np.cos(t)], -1)))


def plot_history(path: pathlib.Path, history: list[dict], title: str,
                 weights: inversion.LossWeights) -> None:
  """Loss (log scale; the total and each weighted term's raw value) and PSNR per step, the
  phases shaded."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  steps = np.arange(len(history))
  fig, (ax_loss, ax_psnr) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
  ax_loss.semilogy(steps, [max(h["loss"], 1e-12) for h in history], lw=1.2, label="total")
  for term in inversion.LOSS_TERMS:
    weight = getattr(weights, term)
    if weight:
      ax_loss.semilogy(steps, np.maximum([h[term] for h in history], 1e-12), lw=0.8, alpha=0.7,
                       label=f"{term} (weight {weight:g})")
  ax_psnr.plot(steps, [h["psnr"] for h in history], lw=1.2, color="k")
  colours = {"w": "#dde8f7", "w+": "#e6f4de", "pti": "#f7e6dd"}
  start = 0
  for i in range(1, len(history) + 1):
    if i == len(history) or history[i]["phase"] != history[start]["phase"]:
      phase = history[start]["phase"]
      for ax in (ax_loss, ax_psnr):
        ax.axvspan(start - 0.5, i - 0.5, color=colours.get(phase, "#eeeeee"), lw=0)
      ax_psnr.text((start + i - 1) / 2, 1.02, phase.upper(), ha="center", va="bottom",
                   transform=ax_psnr.get_xaxis_transform(), fontsize=8)
      start = i
  ax_loss.set_ylabel("loss")
  ax_loss.legend(fontsize=8)
  ax_loss.set_title(title, fontsize=10)
  ax_psnr.set_ylabel("PSNR (dB)")
  ax_psnr.set_xlabel("step")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def unique_stems(paths: Sequence[pathlib.Path]) -> list[str]:
  stems, seen = [], {}
  for p in paths:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in p.stem) or "image"
    if stem in seen:
      seen[stem] += 1
      stem = f"{stem}_{seen[stem]}"
    else:
      seen[stem] = 0
    stems.append(stem)
  return stems


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 1)[1])
  p.add_argument("--generator", required=True,
                 help="converted dir, .pkl, state-dict .npz (+ .json), or preset:NAME")
  p.add_argument("--image", required=True, nargs="+", type=pathlib.Path,
                 help="photo(s) to invert; one latent row each")
  p.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
  p.add_argument("--camera", type=pathlib.Path, default=None,
                 help="JSON camera label: a list of 25 numbers (EG3D's dataset.json layout) for "
                      "every image, or one such list per image; default: estimate yaw/pitch")
  p.add_argument("--aligned", action="store_true",
                 help="the images are already EG3D-style face crops (only resized)")
  p.add_argument("--landmarks", type=lambda s: parse_floats(s, 6, "--landmarks"), default=None,
                 help="LX,LY,RX,RY,MX,MY: image-left eye, image-right eye and mouth centre in "
                      "photo pixels, instead of detecting them (one image only)")
  g = p.add_argument_group("optimisation")
  d = inversion.InversionConfig()
  g.add_argument("--w-steps", type=int, default=d.w_steps)
  g.add_argument("--wplus-steps", type=int, default=d.wplus_steps)
  g.add_argument("--w-lr", type=float, default=d.w_lr)
  g.add_argument("--wplus-lr", type=float, default=d.wplus_lr)
  g.add_argument("--w-init", choices=("w_avg", "mean"), default=d.w_init,
                 help="start from the mapping's w_avg buffer or the mean of mapped random z")
  g.add_argument("--camera-yaws", type=lambda s: parse_floats(s, None, "--camera-yaws"),
                 default=d.camera_yaws, help="yaw offsets (radians) of the camera search grid")
  g.add_argument("--camera-pitches", type=lambda s: parse_floats(s, None, "--camera-pitches"),
                 default=d.camera_pitches, help="pitch offsets (radians) of the search grid")
  g.add_argument("--camera-lr", type=float, default=d.camera_lr)
  g.add_argument("--pti-steps", type=int, default=d.pti_steps,
                 help="pivotal tuning steps after W+ (0 = off)")
  g.add_argument("--pti-lr", type=float, default=d.pti_lr)
  g.add_argument("--l2", type=float, default=d.weights.l2, help="weight of the pixel MSE")
  g.add_argument("--l1", type=float, default=d.weights.l1, help="weight of the pixel L1")
  g.add_argument("--ms-ssim", type=float, default=d.weights.ms_ssim,
                 help="weight of 1 - MS-SSIM")
  g.add_argument("--clip", type=pathlib.Path, default=None,
                 help="Hugging Face CLIP directory: adds a CLIP image-feature loss")
  g.add_argument("--clip-weight", type=float, default=0.1,
                 help="weight of 1 - cos(CLIP features) when --clip is given")
  g.add_argument("--seed", type=int, default=d.seed)
  o = p.add_argument_group("outputs")
  o.add_argument("--frames", type=int, default=48, help="turntable frames (0 = no video)")
  o.add_argument("--fps", type=int, default=24)
  o.add_argument("--fov", type=float, default=camera_lib.DEFAULT_FOV_DEGREES,
                 help="field of view (degrees) of estimated cameras and the turntable")
  o.add_argument("--quiet", action="store_true", help="no progress bars")
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  for name in ("w_steps", "wplus_steps", "pti_steps", "frames"):
    if getattr(args, name) < 0:
      parser.error(f"--{name.replace('_', '-')} must be >= 0")
  if args.w_steps + args.wplus_steps == 0:
    parser.error("--w-steps + --wplus-steps must be > 0")
  if args.landmarks is not None and len(args.image) != 1:
    parser.error("--landmarks needs exactly one --image")
  if args.landmarks is not None and args.aligned:
    parser.error("--landmarks and --aligned exclude each other")
  try:
    return run(args)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
  started = time.time()
  progress = not args.quiet
  cameras = None
  if args.camera is not None:
    try:
      cameras = inversion.read_camera_label(args.camera)
    except ValueError as e:
      raise InputError(str(e)) from e
    if len(cameras) not in (1, len(args.image)):
      raise InputError(f"{args.camera}: {len(cameras)} camera labels for {len(args.image)} "
                       "images (give one for all or one per image)")
    cameras = np.broadcast_to(cameras, (len(args.image), 25))

  print(f"loading generator {args.generator}")
  try:
    G = make_generator(args.generator, "nonfused", None)
  except (FileNotFoundError, ValueError) as e:
    raise InputError(str(e)) from e
  size = G.img_resolution
  rig = inversion.CameraRig.of(G, args.fov)
  print(f"  {size} px, {G.num_ws} ws of {G.w_dim}; camera radius {rig.radius}, pivot "
        f"{list(rig.pivot)}")

  # Every photo is read and cropped before any long work, so a bad one fails at once.
  stems = unique_stems(args.image)
  crops, infos = [], []
  for path in args.image:
    crop, info = prepare_target(path, size, args.aligned, args.landmarks)
    crops.append(crop)
    infos.append(info)
    print(f"  {path}: {info['alignment']}" + (f", landmarks from {info['landmark_source']}, "
                                              f"roll {info['roll_degrees']:.1f} deg"
                                              if "landmarks" in info else ""))

  clip_model = None
  weights = inversion.LossWeights(args.l2, args.l1, args.ms_ssim,
                                  args.clip_weight if args.clip else 0.0)
  if args.clip is not None:
    from sat3d_jax import clip_utils  # pylint: disable=g-import-not-at-top
    print(f"loading CLIP {args.clip}")
    try:
      clip_model = clip_utils.load_clip(args.clip)
    except (FileNotFoundError, ValueError, OSError) as e:
      raise InputError(f"{args.clip}: {e}") from e
  config = inversion.InversionConfig(
      w_init=args.w_init, w_steps=args.w_steps, w_lr=args.w_lr, wplus_steps=args.wplus_steps,
      wplus_lr=args.wplus_lr, camera_yaws=tuple(args.camera_yaws),
      camera_pitches=tuple(args.camera_pitches), camera_lr=args.camera_lr,
      pti_steps=args.pti_steps, pti_lr=args.pti_lr, weights=weights, seed=args.seed)

  args.out.mkdir(parents=True, exist_ok=True)
  targets, clips, results, written = [], [], [], []
  for i, (path, stem, crop) in enumerate(zip(args.image, stems, crops)):
    print(f"[{i + 1}/{len(args.image)}] inverting {path}")
    aligned_png = args.out / f"{stem}_aligned.png"
    iio.imwrite(aligned_png, crop)
    written.append(aligned_png)
    target = jnp.asarray(crop[None].astype(np.float32) / 127.5 - 1.0)
    clip = inversion.clip_target(clip_model[0], clip_model[1], target) if clip_model else None
    result = inversion.invert(G, target, camera=None if cameras is None else cameras[i],
                              config=config, clip=clip, rig=rig, progress=progress)
    cam = ("given" if result.angles is None else
           f"estimated yaw {result.angles[0]:+.3f}, pitch {result.angles[1]:+.3f} rad")
    print(f"  camera {cam}; PSNR {result.psnr:.2f} dB")
    targets.append(target)
    clips.append(clip)
    results.append(result)

  ws = np.concatenate([r.ws for r in results])
  c = np.concatenate([r.c for r in results])
  tuned_params, tuned_dir, pti_history, tuned_images = None, None, [], [None] * len(results)
  if args.pti_steps:
    print(f"pivotal tuning ({args.pti_steps} steps, lr {args.pti_lr}) on {len(results)} image(s)")
    tuned_params, pti_history = inversion.pivotal_tuning(
        G, jnp.concatenate(targets), ws, c, config=config, clips=clips, progress=progress)
    note = {"images": [str(p) for p in args.image], "steps": args.pti_steps, "lr": args.pti_lr,
            "latent_file": str((args.out / LATENT_FILE).absolute()),
            "base_generator": args.generator}
    tuned_dir = inversion.save_generator(args.out / TUNED_DIR, G, tuned_params, note)
    written.append(tuned_dir)
    tuned_images = [np.asarray(inversion.render(G, ws[i:i + 1], c[i:i + 1], tuned_params))
                    for i in range(len(results))]

  from sat3d_jax import pairs  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
  latent = args.out / LATENT_FILE
  pairs.write_latent_file(str(latent), ws, c, None if tuned_dir is None else str(tuned_dir))
  written.append(latent)

  summary = {"generator": args.generator, "latent_file": str(latent.absolute()),
             "tuned_generator": None if tuned_dir is None else str(tuned_dir),
             "config": json.loads(json.dumps(dataclasses.asdict(config))), "images": []}
  for i, (path, stem, result) in enumerate(zip(args.image, stems, results)):
    panels = [np.asarray(crops[i]), to_uint8(result.image[0])]
    psnr_tuned = None
    if tuned_images[i] is not None:
      panels.append(to_uint8(tuned_images[i][0]))
      psnr_tuned = float(inversion.psnr(jnp.asarray(tuned_images[i]), targets[i])[0])
    recon_png = args.out / f"{stem}_reconstruction.png"
    iio.imwrite(recon_png, np.concatenate(panels, axis=1))
    # Pivotal tuning fits all images at once; its curve is shown when there is one image.
    history = result.history + (pti_history if len(results) == 1 else [])
    loss_png = args.out / f"{stem}_loss.png"
    plot_history(loss_png, history, f"{path.name}: final PSNR "
                 f"{psnr_tuned if psnr_tuned is not None else result.psnr:.2f} dB", weights)
    written += [recon_png, loss_png]
    if args.frames:
      labels = turntable_labels(rig, args.frames)
      frames = [to_uint8(np.asarray(inversion.render(G, ws[i:i + 1], labels[k:k + 1],
                                                     tuned_params))[0])
                for k in tqdm(range(args.frames), desc="turntable", unit="frame",
                              disable=not progress, leave=False)]
      mp4 = args.out / f"{stem}_turntable.mp4"
      _write_mp4(mp4, np.stack(frames), args.fps)
      written.append(mp4)
    summary["images"].append({
        "image": str(path), "row": i, **infos[i],
        "camera": "given" if result.angles is None else "estimated",
        "yaw_pitch_offsets": result.angles, "c": c[i].round(6).tolist(),
        "psnr_db": round(result.psnr, 3),
        "psnr_db_after_tuning": None if psnr_tuned is None else round(psnr_tuned, 3),
        "steps": {phase: sum(h["phase"] == phase for h in result.history)
                  for phase in ("w", "w+")}})
  summary["pti_history"] = pti_history
  summary["seconds"] = round(time.time() - started, 1)
  summary_json = args.out / "summary.json"
  with open(summary_json, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  written.append(summary_json)
  print(f"wrote {len(written)} outputs to {args.out.resolve()} in {summary['seconds']:.0f} s:")
  for f in written:
    print(f"  {f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
