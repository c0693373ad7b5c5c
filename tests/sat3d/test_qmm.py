"""QMM tests on a tiny random CLIP; references are transformers' own CLIP calls, PIL and scipy."""
import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax.traverse_util import flatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from PIL import Image
from safetensors.numpy import load_file, save_file
from skimage import data as skdata
from transformers import CLIPTokenizer

from sat3d_jax import clip_utils, qmm as qmm_lib
from sat3d_jax.descriptor_sets import load_descriptors, shipped_descriptor_sets

REPO = pathlib.Path(__file__).resolve().parents[2]
FACE_EXAMPLES = ("hairstyle", "hair_color", "beard", "eyeglasses", "smile", "age", "gender",
                 "makeup", "eyebrows", "skin_tone")  # the examples listed in sat3d.md


# ------------------------------------------------------------------------------------------------
# Fixtures and the independent reference.


@pytest.fixture(scope="module")
def tiny():
  return clip_utils.tiny_clip(seed=0)


@pytest.fixture(scope="module")
def ffhq_qmm(tiny):
  spec, params = tiny
  return qmm_lib.QMM(spec, params, load_descriptors("ffhq"))


@pytest.fixture(scope="module")
def saved_dirs(tmp_path_factory):
  """The seed-1 tiny CLIP saved with Flax weights and with PyTorch-layout safetensors."""
  root = tmp_path_factory.mktemp("clip")
  flax_dir = clip_utils.save_tiny_clip(root / "flax", seed=1)
  pt_dir = clip_utils.save_tiny_clip(root / "pt", seed=1, weights_format="pytorch")
  return flax_dir, pt_dir


def _images(seed, batch, size):
  return jax.random.uniform(jax.random.PRNGKey(seed), (batch, size, size, 3), minval=-1.0,
                            maxval=1.0)


def _reference_group_embeds(spec, params, groups):
  """t_k from transformers' get_text_features, all phrases in one call (padding to the longest)."""
  phrases = [p for attr_groups in groups.values() for g in attr_groups for p in g]
  enc = spec.tokenizer(phrases, padding=True, return_tensors="np")
  text_fn = jax.jit(lambda p, i, m: spec.model.get_text_features(i, m, params=p))
  f = np.asarray(text_fn(params, enc["input_ids"], enc["attention_mask"]), np.float64)
  f /= np.linalg.norm(f, axis=-1, keepdims=True)
  embeds, i = {}, 0
  for name, attr_groups in groups.items():
    t = []
    for g in attr_groups:
      m = f[i:i + len(g)].mean(0)
      t.append(m / np.linalg.norm(m))
      i += len(g)
    embeds[name] = np.stack(t)
  return embeds


def _reference(spec, params, groups, images):
  """The QMM formula computed from transformers' get_image_features / get_text_features (float64).

  Pixels are this module's preprocessing (checked separately against PIL); text is tokenized with
  transformers' default padding (longest), not the QMM's fixed-length padding.
  """
  pixels = np.asarray(clip_utils.preprocess(images, spec)).transpose(0, 3, 1, 2)  # NCHW for HF
  image_fn = jax.jit(lambda p, x: spec.model.get_image_features(x, params=p))
  img = np.asarray(image_fn(params, pixels), np.float64)
  img /= np.linalg.norm(img, axis=-1, keepdims=True)
  scale = np.exp(np.float64(params["logit_scale"]))
  embeds = _reference_group_embeds(spec, params, groups)
  probs = {}
  for name, t in embeds.items():
    logits = scale * img @ t.T
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs[name] = e / e.sum(-1, keepdims=True)
  return probs, embeds, img


def _max_error(out, ref):
  return max(float(np.abs(np.asarray(out[a], np.float64) - ref[a]).max()) for a in ref)


# ------------------------------------------------------------------------------------------------
# Descriptor sets.


def test_shipped_descriptor_sets_meet_the_spec():
  shipped = shipped_descriptor_sets()
  assert {"ffhq", "afhq_cats", "shapenet_cars"} <= set(shipped)
  ffhq = load_descriptors("ffhq")
  assert len(ffhq.names) >= 10 and set(FACE_EXAMPLES) <= set(ffhq.names)
  for domain in shipped:
    desc = load_descriptors(domain)
    assert len(desc.names) >= 3, domain
    for attr in desc.attributes:
      assert 2 <= len(attr.groups) <= 5, (domain, attr.name)
      assert all(2 <= len(g) <= 4 for g in attr.groups), (domain, attr.name)
      assert attr.heldout is not None and len(attr.heldout) == len(attr.groups)
      assert len(attr.group_names) == len(attr.groups)
      assert len(set(attr.group_names)) == len(attr.group_names)
      train = {p for g in attr.groups for p in g}
      held = {p for g in attr.heldout for p in g}
      assert not train & held, (domain, attr.name, train & held)  # the judge is not the signal


def test_descriptors_from_dict_file_and_subset(tmp_path):
  groups = {"mood": [["a happy face", "a joyful face"], ["a sad face"]],
            "light": {"groups": [["a bright photo"], ["a dark photo"]],
                      "heldout": [["a well-lit picture"], ["a dim picture"]],
                      "names": ["bright", "dark"]}}
  from_dict = load_descriptors(groups)
  assert from_dict.names == ("mood", "light")
  assert from_dict["mood"].group_names == ("a happy face", "a sad face")  # first phrases
  path = tmp_path / "mine.json"
  path.write_text(json.dumps(groups))
  from_file = load_descriptors(str(path), attributes=["light"])
  assert from_file.names == ("light",)
  assert from_file.phrase_groups(heldout=True) == {"light": (("a well-lit picture",),
                                                             ("a dim picture",))}
  with pytest.raises(ValueError, match="no held-out"):
    from_dict["mood"].phrases(heldout=True)
  with pytest.raises(KeyError, match="hairstyle"):
    load_descriptors("ffhq", attributes=["hairstyle", "wings"])


@pytest.mark.parametrize("bad, message", [
    ({"mood": [["a happy face"]]}, "at least 2 groups"),
    ({"mood": [["a happy face"], ["  "]]}, "group 1: phrases must be non-empty"),
    ({"mood": [["a happy face"], "a sad face"]}, "group 1: expected a non-empty list"),
    ({"Mood Swing": [["a"], ["b"]]}, "must be lowercase"),
    ({"mood": {"groups": [["a"], ["b"]], "heldout": [["c"], ["d"], ["e"]]}},
     "'heldout' has 3 groups"),
    ({"mood": {"groups": [["a"], ["b"]], "names": ["x"]}}, "'names' must be 2"),
    ({"mood": {"groups": [["a"], ["b"]], "phrasing": []}}, "unknown keys"),
])
def test_bad_descriptor_files_name_the_file_and_attribute(tmp_path, bad, message):
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(bad))
  with pytest.raises(ValueError, match=message) as info:
    load_descriptors(str(path))
  assert str(path) in str(info.value)


def test_unknown_or_malformed_descriptor_source(tmp_path):
  with pytest.raises(FileNotFoundError, match="neither a file nor a shipped set"):
    load_descriptors("dogs")
  path = tmp_path / "broken.json"
  path.write_text("{\"mood\": [")
  with pytest.raises(ValueError, match="not valid JSON"):
    load_descriptors(str(path))


# ------------------------------------------------------------------------------------------------
# Tiny CLIP and its tokenizer.


def test_tiny_tokenizer_encodes_every_shipped_phrase_byte_by_byte(tiny, tmp_path):
  spec, _ = tiny
  clip_utils.tiny_tokenizer_files(tmp_path)
  slow = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
  bos = spec.tokenizer.convert_tokens_to_ids(clip_utils.START_TOKEN)
  eos = spec.tokenizer.convert_tokens_to_ids(clip_utils.END_TOKEN)
  assert eos == len(spec.tokenizer) - 1 == spec.model.config.text_config.eos_token_id
  phrases = [p for domain in shipped_descriptor_sets()
             for attr in load_descriptors(domain).attributes
             for groups in (attr.groups, attr.heldout) for g in groups for p in g]
  assert len(phrases) > 300
  fast_ids = spec.tokenizer(phrases)["input_ids"]
  assert fast_ids == slow(phrases)["input_ids"]  # transformers' Python BPE agrees
  for phrase, ids in zip(phrases, fast_ids):
    assert ids[0] == bos and ids[-1] == eos and eos not in ids[1:-1], phrase  # no unknowns
    assert len(ids) - 2 == len(phrase.lower().replace(" ", "").encode()), phrase  # one per byte
    assert len(ids) <= spec.max_text_length


def test_tiny_clip_is_deterministic(tiny):
  spec, params = tiny
  _, again = clip_utils.tiny_clip(seed=0)
  _, other = clip_utils.tiny_clip(seed=1)
  flat, flat_again, flat_other = map(flatten_dict, (params, again, other))
  assert set(flat) == set(flatten_dict(spec.model.params_shape_tree))
  assert all(np.array_equal(flat[k], flat_again[k]) for k in flat)
  assert not np.array_equal(flat[("visual_projection", "kernel")],
                            flat_other[("visual_projection", "kernel")])
  assert spec.image_size == 32 and spec.embed_dim == 16


# ------------------------------------------------------------------------------------------------
# Preprocessing.


def test_preprocess_matches_pil_bicubic_on_a_real_photo(tiny):
  spec, _ = tiny
  photo = skdata.astronaut().astype(np.float32) / 255.0  # 512x512 RGB shipped with scikit-image
  out = np.asarray(clip_utils.preprocess(photo[None] * 2.0 - 1.0, spec))[0]
  out = out * np.asarray(spec.std) + np.asarray(spec.mean)  # back to [0, 1]
  # PIL resizes float ('F') images with the same Keys a=-0.5 cubic, antialiased when shrinking.
  ref = np.stack([np.asarray(Image.fromarray(photo[..., c], mode="F").resize(
      (spec.image_size, spec.image_size), Image.BICUBIC)) for c in range(3)], -1)
  np.testing.assert_allclose(out, ref, atol=5e-5)


def test_preprocess_at_native_size_is_affine_and_rejects_non_square(tiny):
  spec, _ = tiny
  x = np.asarray(_images(3, 2, spec.image_size))
  expected = ((x + 1) / 2 - np.asarray(spec.mean)) / np.asarray(spec.std)
  np.testing.assert_allclose(np.asarray(clip_utils.preprocess(x, spec)), expected, atol=1e-5)
  with pytest.raises(ValueError, match="square"):
    clip_utils.preprocess(np.zeros((1, 32, 40, 3), np.float32), spec)


# ------------------------------------------------------------------------------------------------
# The formula.


def test_qmm_equals_transformers_clip_formula(ffhq_qmm):
  qmm = ffhq_qmm
  spec, params = qmm.spec.clip, qmm.params
  images = _images(0, 3, 48)
  groups = qmm.descriptors.phrase_groups()
  ref, ref_embeds, ref_img = _reference(spec, params, groups, images)
  out = qmm(images)
  assert set(out) == set(groups)
  for name in groups:
    assert out[name].shape == (3, len(groups[name]))
    np.testing.assert_allclose(np.asarray(out[name]).sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(qmm.group_embeds[qmm.slices[name]], ref_embeds[name], atol=1e-5)
  assert _max_error(out, ref) < 1e-5  # qmm(...) is jax.jit(qmm.apply) on qmm's params
  np.testing.assert_allclose(jax.jit(qmm.image_embeddings)(params, images), ref_img, atol=1e-5)
  # The distributions are not degenerate (a constant output would pass a sloppy check).
  assert max(float(np.ptp(ref[a])) for a in ref) > 0.1


def test_heldout_judge_uses_the_heldout_phrasings(ffhq_qmm):
  judge = ffhq_qmm.with_descriptors(ffhq_qmm.descriptors, heldout=True)
  assert judge.params is ffhq_qmm.params and judge.attributes == ffhq_qmm.attributes
  ref_embeds = _reference_group_embeds(judge.spec.clip, judge.params,
                                       ffhq_qmm.descriptors.phrase_groups(heldout=True))
  for name, rows in judge.slices.items():
    np.testing.assert_allclose(judge.group_embeds[rows], ref_embeds[name], atol=1e-5)
  assert not np.allclose(judge.group_embeds, ffhq_qmm.group_embeds, atol=1e-3)


def test_gradients_reach_the_image(ffhq_qmm):
  qmm = ffhq_qmm
  images = _images(1, 2, 40)
  target = {a: jnp.full((2, rows.stop - rows.start), 1.0 / (rows.stop - rows.start))
            for a, rows in qmm.slices.items()}

  def loss(x):
    q = qmm.apply(qmm.params, qmm.group_embeds, x)
    return sum(jnp.sum(d) for d in qmm_lib.attribute_distances(q, target, "sym_kl").values())

  value_and_grad = jax.jit(jax.value_and_grad(loss))
  _, grad = value_and_grad(images)
  grad = np.asarray(grad, np.float64)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  # Central difference along the gradient direction: d/dh loss(x + h v) = |grad|.
  v = grad / np.linalg.norm(grad)
  h = 1e-2
  fd = (float(value_and_grad(images + h * v)[0])
        - float(value_and_grad(images - h * v)[0])) / (2 * h)
  assert fd == pytest.approx(np.linalg.norm(grad), rel=2e-2)


def test_sharded_over_eight_devices_equals_unsharded(ffhq_qmm):
  qmm = ffhq_qmm
  devices = jax.devices()
  assert len(devices) == 8, "tests/conftest.py sets 8 fake CPU devices"
  mesh = Mesh(np.array(devices), ("data",))
  images = _images(2, 8, 36)
  replicated = NamedSharding(mesh, P())
  sharded_images = jax.device_put(images, NamedSharding(mesh, P("data")))
  params = jax.device_put(qmm.params, replicated)
  embeds = jax.device_put(qmm.group_embeds, replicated)
  out = jax.jit(qmm.apply)(params, embeds, sharded_images)
  assert len(sharded_images.sharding.device_set) == 8
  expected = qmm(images)  # single-device arrays
  for name in expected:
    np.testing.assert_allclose(out[name], expected[name], atol=1e-6)


def test_custom_descriptor_dict_and_a_real_photo_through_the_pipeline(tiny):
  spec, params = tiny
  groups = {"subject": [["a photo of an astronaut", "a person in a space suit"],
                        ["a photo of a cat"], ["a photo of a car", "a red sports car"]]}
  qmm = qmm_lib.QMM(spec, params, load_descriptors(groups))
  photo = skdata.astronaut().astype(np.float32)[None] / 127.5 - 1.0  # [1, 512, 512, 3]
  out = qmm(photo)
  ref, _, _ = _reference(spec, params, qmm.descriptors.phrase_groups(), photo)
  assert out["subject"].shape == (1, 3)
  assert _max_error(out, ref) < 1e-5


# ------------------------------------------------------------------------------------------------
# Distances.


def test_distances_against_scipy_and_closed_form():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(4), size=5)
  q = rng.dirichlet(np.ones(4), size=5)
  expected = scipy.stats.entropy(p, q, axis=-1) + scipy.stats.entropy(q, p, axis=-1)
  np.testing.assert_allclose(qmm_lib.sym_kl(p, q), expected, rtol=1e-5)
  np.testing.assert_allclose(qmm_lib.l1(p, q), np.abs(p - q).sum(-1), rtol=1e-6)
  np.testing.assert_allclose(qmm_lib.sym_kl(p, p), 0.0, atol=1e-7)
  # A probability that underflowed to 0 keeps the distance and its gradient finite.
  zero = jnp.asarray([[0.0, 0.5, 0.5]])
  other = jnp.asarray([[0.2, 0.3, 0.5]])
  assert np.isfinite(float(qmm_lib.sym_kl(zero, other)[0]))
  grad = jax.grad(lambda a: qmm_lib.sym_kl(a, other).sum())(zero)
  assert np.all(np.isfinite(grad))
  assert qmm_lib.get_distance("l1") is qmm_lib.l1
  with pytest.raises(ValueError, match="sym_kl"):
    qmm_lib.get_distance("kl")
  d = qmm_lib.attribute_distances({"a": p, "b": q}, {"a": q, "b": q}, "sym_kl", ["a"])
  assert set(d) == {"a"} and d["a"].shape == (5,)


# ------------------------------------------------------------------------------------------------
# Loading Hugging Face directories.


def test_from_pretrained_flax_and_pytorch_safetensors(saved_dirs, tiny, tmp_path):
  flax_dir, pt_dir = saved_dirs
  spec1, want = clip_utils.tiny_clip(seed=1)
  # Flax-layout safetensors, as FlaxPreTrainedModel.save_pretrained(safe_serialization=True) writes.
  flax_st_dir = _copy_dir(flax_dir, tmp_path / "flax_st", {"flax_model.msgpack"})
  spec1.model.save_pretrained(str(flax_st_dir), params=want, safe_serialization=True)
  want = flatten_dict(want)
  for directory in (flax_dir, pt_dir, flax_st_dir):
    spec, params = clip_utils.load_clip(directory)
    got = flatten_dict(params)
    assert set(got) == set(want)
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"{directory}: {k}")
    assert spec.mean_std_source.endswith("preprocessor_config.json")
    assert spec.image_size == 32 and spec.mean == tiny[0].mean and spec.std == tiny[0].std
  assert spec.source.endswith("model.safetensors")
  assert clip_utils._safetensors_format(flax_st_dir / "model.safetensors") == "flax"
  pt_state = load_file(str(pt_dir / "model.safetensors"))
  assert pt_state["text_model.encoder.layers.0.mlp.fc1.weight"].shape == (64, 32)  # [out, in]
  assert pt_state["vision_model.embeddings.patch_embedding.weight"].shape == (32, 3, 8, 8)
  # The whole from_pretrained path on the saved directory equals the in-memory QMM.
  groups = {"subject": [["a photo of a face"], ["a photo of a cat", "a cat"]]}
  loaded = qmm_lib.QMM.from_pretrained(flax_dir, groups)
  in_memory = qmm_lib.QMM(*clip_utils.tiny_clip(seed=1), load_descriptors(groups))
  np.testing.assert_array_equal(loaded.group_embeds, in_memory.group_embeds)
  images = _images(4, 2, 32)
  np.testing.assert_array_equal(loaded(images)["subject"], in_memory(images)["subject"])


def test_missing_preprocessor_config_falls_back_to_clip_mean_std(saved_dirs, tmp_path):
  flax_dir, _ = saved_dirs
  for f in flax_dir.iterdir():
    if f.name != "preprocessor_config.json":
      (tmp_path / f.name).write_bytes(f.read_bytes())
  with pytest.warns(UserWarning, match="no preprocessor_config.json"):
    spec, _ = clip_utils.load_clip(tmp_path)
  assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
  assert spec.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))


def _copy_dir(src, dst, skip=()):
  dst.mkdir()
  for f in src.iterdir():
    if f.name not in skip:
      (dst / f.name).write_bytes(f.read_bytes())
  return dst


def test_missing_or_incomplete_directories_give_clear_errors(saved_dirs, tmp_path):
  flax_dir, pt_dir = saved_dirs
  with pytest.raises(FileNotFoundError, match="does not exist"):
    clip_utils.load_clip(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="no config.json"):
    clip_utils.load_clip(_copy_dir(flax_dir, tmp_path / "noconfig", {"config.json"}))
  with pytest.raises(FileNotFoundError, match="no CLIP tokenizer"):
    clip_utils.load_clip(_copy_dir(flax_dir, tmp_path / "notok",
                                   {"vocab.json", "merges.txt", "tokenizer.json"}))
  with pytest.raises(FileNotFoundError, match="no CLIP weights"):
    clip_utils.load_clip(_copy_dir(flax_dir, tmp_path / "noweights", {"flax_model.msgpack"}))
  torch_only = _copy_dir(flax_dir, tmp_path / "torch", {"flax_model.msgpack"})
  (torch_only / "pytorch_model.bin").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="needs PyTorch"):
    clip_utils.load_clip(torch_only)
  vision_only = _copy_dir(flax_dir, tmp_path / "vision")
  cfg = json.loads((vision_only / "config.json").read_text())
  cfg["model_type"] = "clip_vision_model"
  (vision_only / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="expected 'clip'"):
    clip_utils.load_clip(vision_only)
  truncated = _copy_dir(pt_dir, tmp_path / "truncated", {"model.safetensors"})
  state = load_file(str(pt_dir / "model.safetensors"))
  del state["visual_projection.weight"]
  save_file(state, str(truncated / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(ValueError, match="visual_projection/kernel"):
    clip_utils.load_clip(truncated)


# ------------------------------------------------------------------------------------------------
# Command line.


def test_measure_cli_on_a_saved_tiny_clip(saved_dirs, tmp_path):
  flax_dir, _ = saved_dirs
  photo = tmp_path / "astronaut.png"
  Image.fromarray(skdata.astronaut()).save(photo)
  cat = tmp_path / "chelsea.png"
  Image.fromarray(skdata.chelsea()).save(cat)  # 300x451: centre-cropped to 300x300
  out_json = tmp_path / "q.json"
  env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, str(REPO / "launch" / "measure.py"), f"--clip={flax_dir}", "--heldout",
       "--attributes=smile,hairstyle", f"--json={out_json}", str(photo), str(cat)],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "astronaut.png (512x512)" in result.stdout and "chelsea.png (300x300)" in result.stdout
  assert "laughing" in result.stdout and "bald" in result.stdout
  saved = json.loads(out_json.read_text())
  assert list(saved[str(photo)]) == ["smile", "hairstyle"]
  # The CLI's numbers are the held-out QMM's on the same (centre-cropped) pixels.
  judge = qmm_lib.QMM.from_pretrained(flax_dir, "ffhq", heldout=True,
                                      attributes=["smile", "hairstyle"])
  chelsea = skdata.chelsea().astype(np.float32)
  top = (chelsea.shape[1] - 300) // 2
  q = judge(chelsea[None, :, top:top + 300] / 127.5 - 1.0)
  np.testing.assert_allclose(list(saved[str(cat)]["smile"].values()), q["smile"][0], atol=1e-6)

  bad = subprocess.run([sys.executable, str(REPO / "launch" / "measure.py"),
                        f"--clip={tmp_path / 'missing'}", str(photo)],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
  assert bad.returncode == 2 and "error: " in bad.stderr and "does not exist" in bad.stderr
  assert "Traceback" not in bad.stderr
