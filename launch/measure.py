"""Measure images with the QMM: each attribute's distribution over its descriptor groups.

  python launch/measure.py --clip weights/clip-vit-base-patch32 photo1.png photo2.jpg
  python launch/measure.py --clip DIR --descriptors afhq_cats --heldout --json out/q.json cat.png

--clip is a local Hugging Face CLIP directory (nothing is downloaded). --descriptors is a shipped
set (ffhq, afhq_cats, shapenet_cars) or a JSON file; --heldout uses the held-out phrasings (the
evaluation judge). Images are centre-cropped to a square and mapped to [-1, 1]; the QMM then
resizes them to CLIP's input size exactly as in training.
"""
from launch.common import cli  # first: it quiets TensorFlow's start-up logging

# isort: split
import json
import pathlib

import numpy as np
from absl import app, flags

from sat3d_jax import image_file

_CLIP = flags.DEFINE_string("clip", None, "Local Hugging Face CLIP directory.", required=True)
_DESCRIPTORS = flags.DEFINE_string(
    "descriptors", "ffhq", "Shipped descriptor set (ffhq, afhq_cats, shapenet_cars) or JSON file.")
_HELDOUT = flags.DEFINE_bool("heldout", False, "Use the held-out phrasings of every group.")
_ATTRIBUTES = flags.DEFINE_list("attributes", None, "Only these attributes (comma-separated).")
_JSON = flags.DEFINE_string("json", None, "Also write the distributions to this JSON file.")
_BAR = 20  # characters of the probability bar at p = 1


def load_image(path: pathlib.Path) -> np.ndarray:
  """An image file -> [S, S, 3] float32 in [-1, 1], centre-cropped to its shorter side."""
  rgb = image_file.read_rgb(path).astype(np.float32)
  h, w = rgb.shape[:2]
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  return rgb[top:top + s, left:left + s] / 127.5 - 1.0


def format_table(name: str, size: int, probs: dict, attributes, group_names) -> str:
  """One image's table: attribute, group, probability and a bar; '*' marks the most likely group."""
  width = max(len(g) for names in group_names for g in names)
  width = min(max(width, 5), 48)
  attr_width = max(max(len(a) for a in attributes), 9)
  lines = [f"{name} ({size}x{size})",
           f"  {'attribute':<{attr_width}}  {'group':<{width}} {'p':>7}"]
  for attr, names in zip(attributes, group_names):
    p = np.asarray(probs[attr], np.float64)
    best = int(np.argmax(p))
    for k, (g, pk) in enumerate(zip(names, p)):
      label = attr if k == 0 else ""
      mark = "*" if k == best else " "
      g = g if len(g) <= width else g[:width - 3] + "..."
      lines.append(f"  {label:<{attr_width}}  {g:<{width}} {mark}{pk:6.3f}  "
                   f"{'#' * round(pk * _BAR)}")
  return "\n".join(lines)


def main(argv):
  paths = [pathlib.Path(p) for p in argv[1:]]
  if not paths:
    raise app.UsageError("give one or more image files after the flags")
  # After flag parsing: importing transformers takes seconds.
  import transformers  # pylint: disable=g-import-not-at-top

  from sat3d_jax import qmm as qmm_lib  # pylint: disable=g-import-not-at-top
  # Hides transformers' notice that its Flax classes end in v5 (the project pins <5); the QMM's
  # own warnings (e.g. a missing preprocessor config) go through `warnings` and still show.
  transformers.logging.set_verbosity_error()

  print(f"loading CLIP from {_CLIP.value} and descriptors {_DESCRIPTORS.value!r}"
        f"{' (held-out phrasings)' if _HELDOUT.value else ''}")
  images = [load_image(p) for p in paths]
  qmm = qmm_lib.QMM.from_pretrained(_CLIP.value, _DESCRIPTORS.value, heldout=_HELDOUT.value,
                                    attributes=_ATTRIBUTES.value)
  clip = qmm.spec.clip
  print(f"CLIP {clip.source}: input {clip.image_size}px, logit scale {qmm.logit_scale:.2f}, "
        f"mean/std from {clip.mean_std_source}")
  print(f"{len(qmm.attributes)} attributes, {qmm.spec.num_groups} groups; measuring "
        f"{len(paths)} image(s)\n")
  results = {}
  by_size = {}
  for i, im in enumerate(images):
    by_size.setdefault(im.shape[0], []).append(i)
  probs = [None] * len(images)
  for indices in by_size.values():  # one batch (one compile) per image size
    out = qmm(np.stack([images[i] for i in indices]))
    for row, i in enumerate(indices):
      probs[i] = {a: np.asarray(out[a][row]) for a in qmm.attributes}
  for path, im, p in zip(paths, images, probs):
    print(format_table(str(path), im.shape[0], p, qmm.attributes, qmm.spec.group_names) + "\n")
    results[str(path)] = {a: dict(zip(names, map(float, p[a])))
                          for a, names in zip(qmm.attributes, qmm.spec.group_names)}
  if _JSON.value:
    out_path = pathlib.Path(_JSON.value)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_path}")
  else:
    print("done (tables above; --json FILE saves them)")


if __name__ == "__main__":
  cli.run(main)
