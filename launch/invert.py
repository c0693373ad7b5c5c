"""Invert face photographs into EG3D latents, for SAT3D sources and references.

  python launch/invert.py --generator weights/ffhq512-128 --image photo.jpg --out out/inv \
      [--camera label.json] [--w_steps 200] [--wplus_steps 200] [--pti_steps 0] [--clip DIR]
  python launch/invert.py --generator G --image a.jpg --image b.jpg --out out/inv2
  python launch/invert.py --generator G --encoder ENCODER_WORKDIR --image a.jpg --out out/inv3 \
      [--wplus_steps 20]

Per photo: the face is cut out with EG3D's own in-the-wild recipe (sat3d_jax/face_crop.py: 5
landmarks from MTCNN, or from dlib's 68, POS fit to the standard 3D face, 1024 at 300 px per unit,
centre 700 -> the generator's resolution); the camera is read from --camera (a JSON list of 25
numbers), or estimated from dlib's 68 landmarks of the crop (sat3d_jax/head_pose.py: head pose ->
label as EG3D's 3dface2idr_mat.py; --camera_init pose, the default), or searched on a yaw/pitch
grid around the frontal camera (--camera_init grid), or predicted by --encoder (docs/encoder.md,
which also predicts the W+ start); then w and W+ are optimised (pixel L2/L1,
MS-SSIM, and CLIP image features with --clip), optionally followed by pivotal tuning of the
generator (--pti_steps). Face detection needs the extra [faces] (dlib, MTCNN); --aligned with
--camera_init grid (or --camera) does without. Written to --out:
  latent.npz                 ws [N, num_ws, w_dim], c [N, 25] and, after pivotal tuning,
                             `generator` = the absolute path of tuned_generator/ (the latent file
                             format of sat3d_jax/latent_file.py, one row per --image, in order)
  tuned_generator/           params.npz + config.json (load_generator reads it), with --pti_steps
  NAME_aligned.png           the crop that was inverted
  NAME_reconstruction.png    crop | W+ reconstruction (| after pivotal tuning)
  NAME_turntable.mp4         the result from a turntable of cameras
  NAME_loss.png              loss and PSNR per optimisation step
  summary.json               cameras, landmarks, PSNRs, settings
--generator takes what sat3d_jax.eg3d.load_generator accepts, or preset:NAME (random weights).
"""
from __future__ import annotations

from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from tqdm import tqdm

from launch.common import faces, photo_crop
from sat3d_jax import encoder as encoder_lib
from sat3d_jax import eg3d, face_crop, image_file, inversion, latent_file, media
from sat3d_jax.eg3d import camera as camera_lib
from sat3d_jax.errors import InputError

LATENT_FILE = "latent.npz"
TUNED_DIR = "tuned_generator"


def parse_floats(text: str, count: int | None = None) -> tuple[float, ...]:
  """'1,-2.5,3' -> (1.0, -2.5, 3.0); ValueError unless finite numbers (exactly `count` of them
  if given)."""
  try:
    values = tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
  if count is not None and len(values) != count:
    raise ValueError(f"expected {count} numbers, got {len(values)}")
  if not values or not all(math.isfinite(v) for v in values):
    raise ValueError(f"expected finite numbers, got {text!r}")
  return values


class _FloatsParser(flags.ArgumentParser):
  """A flag holding comma-separated finite numbers (a tuple of floats)."""

  def __init__(self, count: int | None = None):
    self.count = count

  def parse(self, argument):
    if isinstance(argument, (tuple, list)):  # a default
      return tuple(float(v) for v in argument)
    return parse_floats(argument, self.count)

  def flag_type(self):
    return "comma-separated numbers"


def _define_floats(name, default, help_text, count=None):
  return flags.DEFINE(_FloatsParser(count), name, default, help_text,
                      serializer=flags.ListSerializer(","))


_D = inversion.InversionConfig()
_GENERATOR = flags.DEFINE_string(
    "generator", None, "Converted dir, .pkl, state-dict .npz (+ .json), or preset:NAME.",
    required=True)
_IMAGE = flags.DEFINE_multi_string("image", None,
                                   "Photo to invert, one latent row each",
                                   required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_CAMERA = flags.DEFINE_string(
    "camera", None, "JSON camera label: 25 numbers (EG3D's dataset.json layout) for every "
    "image, or one such list per image (default: see --camera_init).")
_CAMERA_INIT = flags.DEFINE_enum(
    "camera_init", "pose", ["pose", "grid"], "Without --camera: 'pose' = the head pose of "
    "dlib's 68 landmarks (sat3d_jax/head_pose.py), fixed; 'grid' = search yaw/pitch offsets "
    "(--camera_yaws, --camera_pitches), refined during the W phase.")
_FACE_DETECTOR = flags.DEFINE_enum(
    "face_detector", "mtcnn", ["mtcnn", "dlib"], "Where the crop's 5 points come from: MTCNN "
    "(EG3D's own) or dlib's 68 landmarks via Deep3DFaceRecon's extract_5p.")
_FACE_INDEX = flags.DEFINE_integer(
    "face_index", None, "Take this face when a photo has several (0 = the detector's first "
    "choice); default: the largest (MTCNN) / best-scored (dlib).", lower_bound=0)
_FACE_MODELS = flags.DEFINE_string(
    "face_models", None, "Folder of dlib's model files (default: the face-recognition-models "
    "package).")
_ALIGNED = flags.DEFINE_bool("aligned", False,
                             "The images are already EG3D-style face crops (only resized).")
_LANDMARKS = _define_floats(
    "landmarks", None, "10 numbers, x,y of the image-left eye, image-right eye, nose tip, "
    "image-left and image-right mouth corner in photo pixels, instead of detecting them (one "
    "image only).", count=10)
# Optimisation.
_W_STEPS = flags.DEFINE_integer("w_steps", _D.w_steps, "Steps of the W phase.", lower_bound=0)
_WPLUS_STEPS = flags.DEFINE_integer("wplus_steps", _D.wplus_steps, "Steps of the W+ phase.",
                                    lower_bound=0)
_W_LR = flags.DEFINE_float("w_lr", _D.w_lr, "Learning rate of the W phase.")
_WPLUS_LR = flags.DEFINE_float("wplus_lr", _D.wplus_lr, "Learning rate of the W+ phase.")
_W_INIT = flags.DEFINE_enum("w_init", _D.w_init, ["w_avg", "mean"],
                            "Start from the mapping's w_avg buffer or the mean of mapped "
                            "random z.")
_CAMERA_YAWS = _define_floats("camera_yaws", _D.camera_yaws,
                              "Yaw offsets (radians) of the camera search grid.")
_CAMERA_PITCHES = _define_floats("camera_pitches", _D.camera_pitches,
                                 "Pitch offsets (radians) of the camera search grid.")
_CAMERA_LR = flags.DEFINE_float("camera_lr", _D.camera_lr,
                                "Learning rate of the camera refinement.")
_PTI_STEPS = flags.DEFINE_integer("pti_steps", _D.pti_steps,
                                  "Pivotal tuning steps after W+ (0 = off).", lower_bound=0)
_PTI_LR = flags.DEFINE_float("pti_lr", _D.pti_lr, "Learning rate of pivotal tuning.")
_L2 = flags.DEFINE_float("l2", _D.weights.l2, "Weight of the pixel MSE.")
_L1 = flags.DEFINE_float("l1", _D.weights.l1, "Weight of the pixel L1.")
_MS_SSIM = flags.DEFINE_float("ms_ssim", _D.weights.ms_ssim, "Weight of 1 - MS-SSIM.")
_CLIP = flags.DEFINE_string("clip", None,
                            "Hugging Face CLIP directory: adds a CLIP image-feature loss.")
_CLIP_WEIGHT = flags.DEFINE_float("clip_weight", 0.1,
                                  "Weight of 1 - cos(CLIP features) when --clip is given.")
_SEED = flags.DEFINE_integer("seed", _D.seed, "Random seed of the optimisation.")
# Outputs.
_FRAMES = flags.DEFINE_integer("frames", 48, "Turntable frames (0 = no video).", lower_bound=0)
_FPS = flags.DEFINE_integer("fps", 24, "Frames per second of the turntable.", lower_bound=1)
_FOV = flags.DEFINE_float("fov", camera_lib.DEFAULT_FOV_DEGREES,
                          "Field of view (degrees) of estimated cameras and the turntable.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars.")
_ENCODER = flags.DEFINE_string(
    "encoder", None, "An encoder's training workdir (configs/encoder_ffhq.py) or encoder file: "
    "its W+ code and camera are the result, or the start of the optimisation when --w_steps / "
    "--wplus_steps are given (with --encoder they default to 0). Without --camera its camera "
    "is used (and refined in the W phase).")


def read_photo(path: pathlib.Path) -> np.ndarray:
  """uint8 RGB [H, W, 3], turned upright by its EXIF orientation (sat3d_jax/image_file.py)."""
  return image_file.read_rgb(path)


def _no_face(e: Exception) -> InputError:
  return InputError(f"{e}; give its 5 points with --landmarks (x,y of the eyes, nose tip and "
                    "mouth corners), or --aligned if it is already an EG3D-style face crop")


def prepare_target(path: pathlib.Path, size: int, aligned: bool, landmarks: tuple | None,
                   want_pose: bool) -> tuple[np.ndarray, dict]:
  """The uint8 crop [size, size, 3] to invert and what was done to get it (with the head pose's
  camera label under 'pose_camera' when `want_pose`)."""
  photo = read_photo(path)
  info: dict = {"photo_size": [photo.shape[1], photo.shape[0]]}
  if aligned:
    crop = image_file.aligned_crop(photo, size, f"{path} (--aligned)")
    info["alignment"] = "given (--aligned)"
    pose_image = photo
  else:
    if landmarks is not None:
      points, source = np.reshape(landmarks, (5, 2)), "--landmarks"
    else:
      try:
        points, source = photo_crop.five_points(photo, str(path), _FACE_DETECTOR.value,
                                                _FACE_INDEX.value)
      except faces.FaceNotFoundError as e:
        raise _no_face(e) from e
      if "; " in source:
        print(f"  {path}: {source.split('; ', 1)[1]}")
    fc = photo_crop.crop(photo, points, size, str(path))
    crop = fc.image
    info.update({"alignment": "eg3d in-the-wild crop (sat3d_jax/face_crop.py)",
                 "five_points": fc.points.round(2).tolist(), "landmark_source": source,
                 "crop_matrix": fc.matrix.round(6).tolist()})
    pose_image = (crop if size == face_crop.OUTPUT_SIZE or not want_pose else
                  photo_crop.crop(photo, points, face_crop.OUTPUT_SIZE, str(path)).image)
  if want_pose:
    try:
      info.update(photo_crop.pose_camera(pose_image, str(path)))
    except InputError as e:
      raise InputError(f"{e}; use --camera_init grid or --camera") from e
  return crop, info


def turntable_labels(rig: inversion.CameraRig, frames: int) -> np.ndarray:
  """[frames, 25] cameras of the official gen_videos.py orbit (sat3d_jax.media.turntable_views)."""
  return np.asarray(rig.labels(jnp.asarray(media.turntable_views(frames))))


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


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]} (give each photo as --image PATH)")
  if _ENCODER.value is not None:  # the encoder alone unless steps are asked for
    for flag in (_W_STEPS, _WPLUS_STEPS):
      if not flags.FLAGS[flag.name].present:
        flags.FLAGS[flag.name].value = 0
  elif _W_STEPS.value + _WPLUS_STEPS.value == 0:
    raise app.UsageError("--w_steps + --wplus_steps must be > 0 (or give --encoder)")
  if _LANDMARKS.value is not None and len(_IMAGE.value) != 1:
    raise app.UsageError("--landmarks needs exactly one --image")
  if _LANDMARKS.value is not None and _ALIGNED.value:
    raise app.UsageError("--landmarks and --aligned exclude each other")
  if _FACE_MODELS.value:
    faces.set_model_dir(_FACE_MODELS.value)
  run()


def run() -> None:
  """Inverts every --image (the flags say how) and writes the outputs to --out."""
  started = time.time()
  progress = not _QUIET.value
  images = [pathlib.Path(p) for p in _IMAGE.value]
  out = pathlib.Path(_OUT.value)
  cameras = None
  if _CAMERA.value is not None:
    cameras = inversion.read_camera_label(_CAMERA.value)
    if len(cameras) not in (1, len(images)):
      raise InputError(f"{_CAMERA.value}: {len(cameras)} camera labels for {len(images)} "
                       "images (give one for all or one per image)")
    cameras = np.broadcast_to(cameras, (len(images), 25))

  print(f"loading generator {_GENERATOR.value}")
  G = eg3d.generator_from_spec(_GENERATOR.value)
  size = G.img_resolution
  rig = inversion.CameraRig.of(G, _FOV.value)
  print(f"  {size} px, {G.num_ws} ws of {G.w_dim}; camera radius {rig.radius}, pivot "
        f"{list(rig.pivot)}")
  enc = None
  if _ENCODER.value is not None:
    print(f"loading encoder {_ENCODER.value}")
    enc = encoder_lib.load_encoder(_ENCODER.value)
    enc.check_generator(G)
    print(f"  step {enc.step}, trained on {enc.generator}, input {enc.spec.input_size} px")

  # Every photo is read and cropped before any long work, so a bad one fails at once.
  stems = unique_stems(images)
  crops, infos = [], []
  want_pose = cameras is None and _CAMERA_INIT.value == "pose" and enc is None
  for path in images:
    crop, info = prepare_target(path, size, _ALIGNED.value, _LANDMARKS.value, want_pose)
    crops.append(crop)
    infos.append(info)
    print(f"  {path}: {info['alignment']}"
          + (f", landmarks from {info['landmark_source']}" if "landmark_source" in info else "")
          + (f", head pose {info['head_pose_degrees']} deg" if want_pose else ""))
  if want_pose:
    cameras = np.stack([np.asarray(info.pop("pose_camera"), np.float32) for info in infos])

  clip_model = None
  weights = inversion.LossWeights(_L2.value, _L1.value, _MS_SSIM.value,
                                  _CLIP_WEIGHT.value if _CLIP.value else 0.0)
  if _CLIP.value is not None:
    from sat3d_jax import clip_utils  # pylint: disable=g-import-not-at-top
    print(f"loading CLIP {_CLIP.value}")
    try:
      clip_model = clip_utils.load_clip(_CLIP.value)
    except OSError as e:  # a tokenizer or weights file transformers cannot read
      raise InputError(f"{_CLIP.value}: {e}") from e
  config = inversion.InversionConfig(  # an unusable combination of settings: InputError
      w_init=_W_INIT.value, w_steps=_W_STEPS.value, w_lr=_W_LR.value,
      wplus_steps=_WPLUS_STEPS.value, wplus_lr=_WPLUS_LR.value,
      camera_yaws=tuple(_CAMERA_YAWS.value), camera_pitches=tuple(_CAMERA_PITCHES.value),
      camera_lr=_CAMERA_LR.value, pti_steps=_PTI_STEPS.value, pti_lr=_PTI_LR.value,
      weights=weights, seed=_SEED.value)

  out.mkdir(parents=True, exist_ok=True)
  targets, clips, results, written = [], [], [], []
  for i, (path, stem, crop) in enumerate(zip(images, stems, crops)):
    print(f"[{i + 1}/{len(images)}] inverting {path}")
    aligned_png = out / f"{stem}_aligned.png"
    media.write_png(aligned_png, crop)
    written.append(aligned_png)
    target = jnp.asarray(crop[None].astype(np.float32) / 127.5 - 1.0)
    clip = inversion.clip_target(clip_model[0], clip_model[1], target) if clip_model else None
    init_ws = init_angles = None
    if enc is not None:
      jax.block_until_ready(enc(target))  # compiled before the clock starts
      tick = time.perf_counter()
      init_ws, init_angles = jax.block_until_ready(enc(target))
      infos[i]["encoder_seconds"] = round(time.perf_counter() - tick, 4)
      init_angles = tuple(float(a) for a in np.asarray(init_angles)[0])
      print(f"  encoder: {infos[i]['encoder_seconds'] * 1000:.1f} ms")
    result = inversion.invert(G, target, camera=None if cameras is None else cameras[i],
                              config=config, clip=clip, rig=rig, progress=progress,
                              init_ws=init_ws, init_angles=init_angles)
    cam = ("head pose" if want_pose else "given" if result.angles is None else
           f"{'encoder' if enc else 'grid'} yaw {result.angles[0]:+.3f}, "
           f"pitch {result.angles[1]:+.3f} rad")
    print(f"  camera {cam}; PSNR {result.psnr:.2f} dB")
    targets.append(target)
    clips.append(clip)
    results.append(result)

  ws = np.concatenate([r.ws for r in results])
  c = np.concatenate([r.c for r in results])
  tuned_params, tuned_dir, pti_history, tuned_images = None, None, [], [None] * len(results)
  if _PTI_STEPS.value:
    print(f"pivotal tuning ({_PTI_STEPS.value} steps, lr {_PTI_LR.value}) on {len(results)} "
          "image(s)")
    tuned_params, pti_history = inversion.pivotal_tuning(
        G, jnp.concatenate(targets), ws, c, config=config, clips=clips, progress=progress)
    note = {"images": [str(p) for p in images], "steps": _PTI_STEPS.value, "lr": _PTI_LR.value,
            "latent_file": str((out / LATENT_FILE).absolute()),
            "base_generator": _GENERATOR.value}
    tuned_dir = inversion.save_generator(out / TUNED_DIR, G, tuned_params, note)
    written.append(tuned_dir)
    tuned_images = [np.asarray(inversion.render(G, ws[i:i + 1], c[i:i + 1], tuned_params))
                    for i in range(len(results))]

  latent = out / LATENT_FILE
  latent_file.write_latent_file(str(latent), ws, c, None if tuned_dir is None else str(tuned_dir))
  written.append(latent)

  summary = {"generator": _GENERATOR.value, "latent_file": str(latent.absolute()),
             "encoder": None if enc is None else {"path": _ENCODER.value, "step": enc.step},
             "tuned_generator": None if tuned_dir is None else str(tuned_dir),
             "config": json.loads(json.dumps(dataclasses.asdict(config))), "images": []}
  for i, (path, stem, result) in enumerate(zip(images, stems, results)):
    panels = [np.asarray(crops[i]), media.to_uint8(result.image[0])]
    psnr_tuned = None
    if tuned_images[i] is not None:
      panels.append(media.to_uint8(tuned_images[i][0]))
      psnr_tuned = float(inversion.psnr(jnp.asarray(tuned_images[i]), targets[i])[0])
    recon_png = out / f"{stem}_reconstruction.png"
    media.write_png(recon_png, media.image_row(panels))
    # Pivotal tuning fits all images at once; its curve is shown when there is one image.
    history = result.history + (pti_history if len(results) == 1 else [])
    loss_png = out / f"{stem}_loss.png"
    plot_history(loss_png, history, f"{path.name}: final PSNR "
                 f"{psnr_tuned if psnr_tuned is not None else result.psnr:.2f} dB", weights)
    written += [recon_png, loss_png]
    if _FRAMES.value:
      labels = turntable_labels(rig, _FRAMES.value)
      frames = [media.to_uint8(np.asarray(inversion.render(G, ws[i:i + 1], labels[k:k + 1],
                                                           tuned_params))[0])
                for k in tqdm(range(_FRAMES.value), desc="turntable", unit="frame",
                              disable=not progress, leave=False)]
      mp4 = out / f"{stem}_turntable.mp4"
      media.write_mp4(mp4, np.stack(frames), _FPS.value)
      written.append(mp4)
    summary["images"].append({
        "image": str(path), "row": i, **infos[i],
        "camera": ("head_pose" if want_pose else "given" if result.angles is None
                   else "encoder" if enc else "grid"),
        "yaw_pitch_offsets": result.angles, "c": c[i].round(6).tolist(),
        "psnr_db": round(result.psnr, 3),
        "psnr_db_after_tuning": None if psnr_tuned is None else round(psnr_tuned, 3),
        "steps": {phase: sum(h["phase"] == phase for h in result.history)
                  for phase in ("w", "w+")}})
  summary["pti_history"] = pti_history
  summary["seconds"] = round(time.time() - started, 1)
  summary_json = out / "summary.json"
  with open(summary_json, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  written.append(summary_json)
  cli.print_outputs(out, written, seconds=summary["seconds"])


if __name__ == "__main__":
  cli.run(main)
