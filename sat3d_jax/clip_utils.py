"""Frozen CLIP for SAT3D: loading, a tiny random stand-in, differentiable preprocessing, embeddings.

Everything here is pure over the CLIP parameters: a `ClipSpec` holds the static parts (the Flax
module, tokenizer, input size, mean and std) and every function takes the parameters as an argument,
so a training step can jit over them (frozen, never donated) and shard batches over devices.

The preprocessing follows docs/sat3d.md ("The QMM, exactly"): generator images in [-1, 1] go to
[0, 1], are resized to CLIP's input size with `jax.image.resize(method='bicubic',
antialias=True)` (square inputs, so no crop) and normalised with the checkpoint's mean and std.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flax.traverse_util import flatten_dict, unflatten_dict
from transformers import AutoTokenizer, CLIPConfig, CLIPTokenizerFast, FlaxCLIPModel
from transformers.models.clip.tokenization_clip import bytes_to_unicode
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from sat3d_jax.errors import InputError

PyTree = Any

CONFIG_FILE = "config.json"
FLAX_WEIGHTS = "flax_model.msgpack"
SAFETENSORS_WEIGHTS = "model.safetensors"
TORCH_WEIGHTS = "pytorch_model.bin"
PREPROCESSOR_FILE = "preprocessor_config.json"
IMAGE_SCOPE = "clip_image"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


@dataclasses.dataclass(frozen=True, eq=False)
class ClipSpec:
  """The static (non-array) half of a CLIP model; hashed by identity so it can be a jit static arg.

  Attributes:
    model: a `FlaxCLIPModel` built with `_do_init=False` (it holds the config and module only;
      parameters always travel separately).
    tokenizer: the checkpoint's tokenizer.
    image_size: CLIP's square input size (from the vision config; position embeddings fix it).
    mean, std: per-channel normalisation of [0, 1] pixels.
    source: the checkpoint directory, or a description of the in-memory model.
    mean_std_source: where mean/std came from (the preprocessor config, or CLIP's standard values).
  """
  model: FlaxCLIPModel
  tokenizer: Any
  image_size: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  source: str
  mean_std_source: str

  @property
  def module(self):
    """The Flax Linen `FlaxCLIPModule` that `apply` runs."""
    return self.model.module

  @property
  def max_text_length(self) -> int:
    """Token positions of the text tower (77 for every released CLIP)."""
    return int(self.model.config.text_config.max_position_embeddings)

  @property
  def embed_dim(self) -> int:
    """Dimension of the joint (projected) embedding space."""
    return int(self.model.config.projection_dim)


# ----------------------------------------------------------------------------------------------
# Preprocessing and embeddings (pure, jittable, differentiable with respect to the images).


def preprocess(images: jax.Array, spec: ClipSpec) -> jax.Array:
  """Generator images [B, H, H, 3] in [-1, 1] -> CLIP pixels [B, S, S, 3] (NHWC), differentiably.

  (x + 1) / 2, bicubic antialiased resize to S = spec.image_size, then (x - mean) / std.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected NHWC RGB images [B, H, W, 3], got shape {images.shape}")
  if images.shape[1] != images.shape[2]:
    raise ValueError(
        f"expected square images (the QMM resizes without cropping), got {images.shape[1]}x"
        f"{images.shape[2]}; centre-crop them first")
  x = (images.astype(jnp.float32) + 1.0) * 0.5
  size = spec.image_size
  x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bicubic", antialias=True)
  mean = jnp.asarray(spec.mean, jnp.float32)
  std = jnp.asarray(spec.std, jnp.float32)
  return (x - mean) / std


def _image_features(module, pixel_values):
  pooled = module.vision_model(pixel_values=pixel_values, deterministic=True)[1]
  return module.visual_projection(pooled)


def _text_features(module, input_ids, attention_mask, position_ids):
  pooled = module.text_model(
      input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
      deterministic=True)[1]
  return module.text_projection(pooled)


def _normalise(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def image_features(clip_params: PyTree, pixel_values: jax.Array, spec: ClipSpec) -> jax.Array:
  """CLIP image projection outputs [B, D] for already preprocessed NHWC pixels (not normalised)."""
  return spec.module.apply({"params": clip_params}, pixel_values, method=_image_features)


def image_embeddings(clip_params: PyTree, images: jax.Array, spec: ClipSpec) -> jax.Array:
  """Unit-norm CLIP image embeddings [B, D] of generator images [B, H, H, 3] in [-1, 1]."""
  with jax.named_scope(IMAGE_SCOPE):  # the QMM's CLIP forward in FLOP breakdowns
    return _normalise(image_features(clip_params, preprocess(images, spec), spec))


def text_features(clip_params: PyTree, input_ids: jax.Array, attention_mask: jax.Array,
                  spec: ClipSpec) -> jax.Array:
  """CLIP text projection outputs [N, D] for token ids [N, L] (not normalised)."""
  position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
  return spec.module.apply({"params": clip_params}, input_ids, attention_mask, position_ids,
                           method=_text_features)


def tokenize(phrases: Sequence[str], spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
  """Token ids and attention mask [N, max_text_length] (int32), padded to the full length.

  A phrase longer than the text tower's positions is truncated (its end token kept) with a warning.
  """
  phrases = list(phrases)
  length = spec.max_text_length
  untruncated = spec.tokenizer(phrases, add_special_tokens=True)["input_ids"]
  for phrase, ids in zip(phrases, untruncated):
    if len(ids) > length:
      warnings.warn(f"descriptor phrase has {len(ids)} tokens, more than CLIP's {length}; "
                    f"truncated: {phrase!r}")
  enc = spec.tokenizer(phrases, padding="max_length", truncation=True, max_length=length,
                       return_tensors="np")
  return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)


_text_features_jit = jax.jit(text_features, static_argnums=3)


def text_embeddings(clip_params: PyTree, phrases: Sequence[str], spec: ClipSpec,
                    batch_size: int = 256) -> np.ndarray:
  """Unit-norm CLIP text embeddings [N, D] (float32 numpy) of phrases, computed in fixed batches."""
  ids, mask = tokenize(phrases, spec)
  n = ids.shape[0]
  batch = min(batch_size, n)
  pad = (-n) % batch  # pad to whole batches so one compiled shape serves every chunk
  ids = np.concatenate([ids, np.repeat(ids[:1], pad, 0)])
  mask = np.concatenate([mask, np.repeat(mask[:1], pad, 0)])
  out = [np.asarray(_text_features_jit(clip_params, ids[i:i + batch], mask[i:i + batch], spec))
         for i in range(0, n + pad, batch)]
  feats = np.concatenate(out)[:n].astype(np.float32)
  return feats / np.linalg.norm(feats, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Loading a Hugging Face CLIP directory.


def _abstract_model(config: CLIPConfig) -> FlaxCLIPModel:
  size = config.vision_config.image_size
  return FlaxCLIPModel(config, input_shape=((1, 1), (1, size, size, 3)), _do_init=False)


def _check_complete(params: PyTree, model: FlaxCLIPModel, weights_file: pathlib.Path) -> PyTree:
  """Keeps the model's parameters from `params`; a missing or mis-shaped one is an error.

  (transformers would silently fill missing weights with random values.)
  """
  expected = flatten_dict(model.params_shape_tree)
  got = flatten_dict(params)
  missing = sorted("/".join(k) for k in expected if k not in got)
  if missing:
    raise InputError(f"{weights_file} is incomplete: {len(missing)} CLIP weights missing, e.g. "
                     f"{missing[:5]}")
  for k, shape in expected.items():
    if tuple(got[k].shape) != tuple(shape.shape):
      raise InputError(f"{weights_file}: weight {'/'.join(k)} has shape {tuple(got[k].shape)}, "
                       f"the config needs {tuple(shape.shape)}")
  return unflatten_dict({k: jnp.asarray(got[k], jnp.float32) for k in expected})


class _ShapeOnlyModel:
  """What transformers' PyTorch->Flax converter reads from a model: its parameter shapes and prefix.

  `FlaxCLIPModel.from_pretrained` only converts PyTorch weights into a randomly initialised model
  (`_do_init=True`), which runs a full eager init and silently fills missing weights with random
  values; feeding the converter the abstract shapes avoids both.
  """

  def __init__(self, model: FlaxCLIPModel):
    self.params = model.params_shape_tree
    self.base_model_prefix = model.base_model_prefix


def _safetensors_format(path: pathlib.Path) -> str:
  from safetensors import safe_open
  with safe_open(str(path), framework="numpy") as f:
    metadata = f.metadata() or {}
  fmt = metadata.get("format")
  if fmt not in ("pt", "flax", "tf"):
    raise InputError(f"{path} has no 'format' metadata (pt/flax); save it with save_pretrained")
  return fmt


def _load_params(directory: pathlib.Path, model: FlaxCLIPModel) -> tuple[PyTree, pathlib.Path]:
  flax_file = directory / FLAX_WEIGHTS
  st_file = directory / SAFETENSORS_WEIGHTS
  if flax_file.is_file() or (st_file.is_file() and _safetensors_format(st_file) == "flax"):
    weights = flax_file if flax_file.is_file() else st_file
    _, params = FlaxCLIPModel.from_pretrained(str(directory), _do_init=False,
                                              local_files_only=True)
    return _check_complete(params, model, weights), weights
  if st_file.is_file():
    if _safetensors_format(st_file) == "tf":
      raise InputError(f"{st_file} holds TensorFlow weights; save Flax or PyTorch weights instead")
    # PyTorch-layout safetensors: transformers' own converter, read through safetensors' flax
    # backend, so torch is not needed.
    from transformers.modeling_flax_pytorch_utils import load_pytorch_checkpoint_in_flax_state_dict
    params = load_pytorch_checkpoint_in_flax_state_dict(_ShapeOnlyModel(model), str(st_file),
                                                        is_sharded=False)
    return _check_complete(params, model, st_file), st_file
  present = sorted(p.name for p in directory.iterdir())
  if (directory / TORCH_WEIGHTS).is_file():
    raise FileNotFoundError(
        f"{directory} has only {TORCH_WEIGHTS}, which needs PyTorch to read (not a dependency of "
        f"this project). Convert it once where PyTorch is installed: "
        f"CLIPModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True) writes "
        f"{SAFETENSORS_WEIGHTS}, which loads without PyTorch.")
  if any(name.endswith(".index.json") for name in present):
    raise FileNotFoundError(f"{directory} holds a sharded checkpoint, which transformers' Flax "
                            f"loader does not read; save it as a single file")
  raise FileNotFoundError(f"{directory} has no CLIP weights ({FLAX_WEIGHTS} or "
                          f"{SAFETENSORS_WEIGHTS}); it holds {present}")


def _load_mean_std(directory: pathlib.Path, image_size: int):
  path = directory / PREPROCESSOR_FILE
  if not path.is_file():
    warnings.warn(f"{directory} has no {PREPROCESSOR_FILE}: using CLIP's standard mean "
                  f"{OPENAI_CLIP_MEAN} and std {OPENAI_CLIP_STD}")
    return tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD), "CLIP standard (no preprocessor config)"
  try:
    cfg = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise InputError(f"{path} is not valid JSON: {e}") from None
  mean, std = cfg.get("image_mean", OPENAI_CLIP_MEAN), cfg.get("image_std", OPENAI_CLIP_STD)
  if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
    raise InputError(f"{path}: image_mean/image_std must be 3 values (std > 0), got {mean}, {std}")
  crop = cfg.get("crop_size")
  crop = crop.get("height") if isinstance(crop, dict) else crop
  if crop is not None and int(crop) != image_size:
    warnings.warn(f"{path}: crop_size {crop} differs from the vision config's image_size "
                  f"{image_size}; using {image_size} (the position embeddings fix it)")
  return tuple(map(float, mean)), tuple(map(float, std)), str(path)


def load_clip(clip_dir: str | os.PathLike) -> tuple[ClipSpec, PyTree]:
  """Loads a local Hugging Face CLIP directory: (spec, float32 params). No network access.

  Weights: flax_model.msgpack, or model.safetensors in Flax or PyTorch layout (PyTorch layout is
  converted with transformers' converter; torch is not needed). pytorch_model.bin needs PyTorch and
  is refused with instructions. Tokenizer: tokenizer.json or vocab.json + merges.txt. Mean/std:
  preprocessor_config.json, else CLIP's standard values (with a warning).
  """
  directory = pathlib.Path(clip_dir).expanduser()
  if not directory.is_dir():
    raise FileNotFoundError(f"CLIP directory {directory} does not exist")
  config_path = directory / CONFIG_FILE
  if not config_path.is_file():
    raise FileNotFoundError(f"{directory} is not a Hugging Face model directory: no {CONFIG_FILE}")
  try:
    model_type = json.loads(config_path.read_text()).get("model_type")
  except json.JSONDecodeError as e:
    raise InputError(f"{config_path} is not valid JSON: {e}") from None
  if model_type != "clip":
    raise InputError(f"{config_path}: model_type is {model_type!r}, expected 'clip' (a full "
                     f"CLIPModel with both towers)")
  has_tokenizer = (directory / "tokenizer.json").is_file() or (
      (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file())
  if not has_tokenizer:
    raise FileNotFoundError(f"{directory} has no CLIP tokenizer (tokenizer.json, or vocab.json "
                            f"and merges.txt)")
  config = CLIPConfig.from_pretrained(str(directory), local_files_only=True)
  model = _abstract_model(config)
  params, weights = _load_params(directory, model)
  tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
  size = int(config.vision_config.image_size)
  mean, std, mean_std_source = _load_mean_std(directory, size)
  spec = ClipSpec(model=model, tokenizer=tokenizer, image_size=size, mean=mean, std=std,
                  source=str(weights), mean_std_source=mean_std_source)
  return spec, params


# ----------------------------------------------------------------------------------------------
# A tiny random CLIP for tests and the `:tiny` configs.


def tiny_tokenizer_files(directory: str | os.PathLike) -> None:
  """Writes vocab.json and merges.txt of a byte-level, character-only CLIP BPE.

  The vocabulary is CLIP's own layout without merges: the 256 byte symbols, the same with the
  end-of-word marker, then the start and end tokens (end last, so it has the highest id as in
  CLIP). Every UTF-8 string is encoded byte by byte, so no phrase ever maps to an unknown token;
  a word costs one token per byte.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  chars = list(bytes_to_unicode().values())
  vocab = chars + [c + "</w>" for c in chars] + [START_TOKEN, END_TOKEN]
  (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
  (directory / "merges.txt").write_text("#version: 0.2\n")


def _tiny_tokenizer() -> CLIPTokenizerFast:
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    tiny_tokenizer_files(tmp)
    return CLIPTokenizerFast(vocab_file=os.path.join(tmp, "vocab.json"),
                             merges_file=os.path.join(tmp, "merges.txt"))


def _tiny_params(model: FlaxCLIPModel, seed: int) -> PyTree:
  """Deterministic random weights drawn with numpy (a jitted Flax init costs seconds to compile)."""
  rng = np.random.default_rng(seed)
  out = {}
  for path, leaf in sorted(flatten_dict(model.params_shape_tree).items()):
    name, shape = path[-1], tuple(leaf.shape)
    if name == "scale":
      value = np.ones(shape)
    elif name == "bias":
      value = np.zeros(shape)
    elif name == "logit_scale":
      value = np.full(shape, model.config.logit_scale_init_value)
    elif name == "kernel":
      value = rng.standard_normal(shape) / math.sqrt(math.prod(shape[:-1]))
    elif name == "embedding":
      value = 0.02 * rng.standard_normal(shape)
    elif name == "class_embedding":
      value = rng.standard_normal(shape) / math.sqrt(shape[-1])
    else:
      raise ValueError(f"tiny_clip: no init rule for parameter {'/'.join(path)}")
    out[path] = jnp.asarray(value, jnp.float32)
  return unflatten_dict(out)


def tiny_clip(seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
              num_heads: int = 2, patch_size: int = 8, image_size: int = 32,
              projection_dim: int = 16) -> tuple[ClipSpec, PyTree]:
  """A tiny randomly initialised FlaxCLIPModel and its character-level tokenizer, in memory.

  Deterministic in `seed`. Uses CLIP's standard mean and std. Returns (spec, params).
  """
  tower = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
               num_hidden_layers=num_layers, num_attention_heads=num_heads)
  return random_clip(seed, text=tower, vision=dict(tower, image_size=image_size,
                                                   patch_size=patch_size),
                     projection_dim=projection_dim, source=f"tiny_clip(seed={seed})")


# The towers of openai/clip-vit-base-patch16 (its config.json): the model SAT3D measures with.
VIT_B16_TEXT = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=8)
VIT_B16_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, image_size=224, patch_size=16)
VIT_B16_PROJECTION = 512
RANDOM_CLIPS = ("tiny", "random-vit-b16")


def random_clip(seed: int = 0, *, text: dict, vision: dict, projection_dim: int,
                source: str, abstract: bool = False) -> tuple[ClipSpec, PyTree]:
  """A randomly initialised FlaxCLIPModel of the given towers (CLIPConfig fields) with the
  character-level tokenizer (no download). `abstract`: params as jax.ShapeDtypeStruct only
  (for lowering without materialising weights). Returns (spec, params)."""
  tokenizer = _tiny_tokenizer()
  end_id = tokenizer.convert_tokens_to_ids(END_TOKEN)
  text = dict(text, vocab_size=len(tokenizer), max_position_embeddings=77,
              bos_token_id=tokenizer.convert_tokens_to_ids(START_TOKEN), eos_token_id=end_id,
              pad_token_id=end_id)
  config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
  model = _abstract_model(config)
  spec = ClipSpec(model=model, tokenizer=tokenizer, image_size=int(vision["image_size"]),
                  mean=tuple(OPENAI_CLIP_MEAN), std=tuple(OPENAI_CLIP_STD),
                  source=source, mean_std_source="CLIP standard")
  if abstract:
    return spec, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32),
                              model.params_shape_tree)
  return spec, _tiny_params(model, seed)


def named_random_clip(name: str, seed: int = 0, abstract: bool = False
                      ) -> tuple[ClipSpec, PyTree]:
  """The random CLIP a config names: 'tiny' or 'random-vit-b16' (ViT-B/16's shapes)."""
  if name == "tiny":
    spec, params = tiny_clip(seed)
    return spec, (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
                  if abstract else params)
  if name == "random-vit-b16":
    return random_clip(seed, text=VIT_B16_TEXT, vision=VIT_B16_VISION,
                       projection_dim=VIT_B16_PROJECTION, abstract=abstract,
                       source=f"random ViT-B/16 CLIP (seed={seed})")
  raise InputError(f"unknown random CLIP {name!r}; known: {', '.join(RANDOM_CLIPS)}")


def flax_to_pytorch_state_dict(params: PyTree) -> dict[str, np.ndarray]:
  """CLIP Flax params -> the PyTorch CLIPModel state dict (numpy), e.g. for PyTorch safetensors.

  The inverse of transformers' renaming: kernel -> weight (dense transposed, conv [kh, kw, in, out]
  -> [out, in, kh, kw]), LayerNorm scale and embedding tables -> weight.
  """
  state = {}
  for path, value in flatten_dict(params).items():
    value, name = np.asarray(value, np.float32), list(path)
    if name[-1] == "kernel":
      name[-1] = "weight"
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    elif name[-1] in ("scale", "embedding"):
      name[-1] = "weight"
    state[".".join(name)] = np.array(value, order="C")  # keeps 0-d arrays 0-d
  return state


def save_clip(directory: str | os.PathLike, spec: ClipSpec, params: PyTree,
              weights_format: str = "flax") -> pathlib.Path:
  """Writes a loadable Hugging Face CLIP directory: config, weights, tokenizer, preprocessor config.

  weights_format: 'flax' (flax_model.msgpack) or 'pytorch' (model.safetensors in PyTorch layout).
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  if weights_format == "flax":
    spec.model.save_pretrained(str(directory), params=params)
  elif weights_format == "pytorch":
    from safetensors.numpy import save_file
    spec.model.config.save_pretrained(str(directory))
    save_file(flax_to_pytorch_state_dict(params), str(directory / SAFETENSORS_WEIGHTS),
              metadata={"format": "pt"})
  else:
    raise InputError(f"weights_format must be 'flax' or 'pytorch', got {weights_format!r}")
  spec.tokenizer.save_pretrained(str(directory))
  size = spec.image_size
  # CLIPImageProcessor's own fields; written directly because importing the processor class pulls
  # in TensorFlow (transformers.image_transforms) when it is installed, which costs seconds.
  processor = {"image_processor_type": "CLIPImageProcessor", "do_resize": True,
               "size": {"shortest_edge": size}, "resample": 3, "do_center_crop": True,
               "crop_size": {"height": size, "width": size}, "do_rescale": True,
               "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(spec.mean),
               "image_std": list(spec.std), "do_convert_rgb": True}
  (directory / PREPROCESSOR_FILE).write_text(json.dumps(processor, indent=2) + "\n")
  return directory


def save_tiny_clip(directory: str | os.PathLike, seed: int = 0, weights_format: str = "flax",
                   **tiny_kwargs) -> pathlib.Path:
  """Writes `tiny_clip(seed, **tiny_kwargs)` as a Hugging Face directory (see `save_clip`)."""
  spec, params = tiny_clip(seed, **tiny_kwargs)
  return save_clip(directory, spec, params, weights_format)
