"""README.md's "Use it from Python" section, run as written.

The ```python blocks of that section are executed verbatim, each in a fresh namespace, in a
temporary directory laid out as the README assumes (workdirs/sat3d_ffhq_tiny is the tiny SAT3D
run of tests/fixtures/legacy_ee41ea4). The SAT3D blocks are checked here; the FRL-DGT block needs a
trained fold and is run by tests/frldgt/test_sweep.py
(test_readme_scores_a_clip_with_a_trained_fold).
"""
import contextlib
import io
import os
import pathlib
import re
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Use it from Python"
SAT3D_RUN = REPO / "tests" / "fixtures" / "legacy_ee41ea4" / "sat3d_tiny"
# The blocks in README order: render, measure, edit (SAT3D), score (FRL-DGT).
NUM_BLOCKS = 4


def readme_python_blocks(readme: pathlib.Path = REPO / "README.md") -> list[tuple[int, str]]:
  """[(line number, code)] of the ```python blocks between SECTION and the next '## ' heading."""
  lines = readme.read_text(encoding="utf-8").splitlines()
  starts = [i for i, line in enumerate(lines) if line.strip() == SECTION]
  assert len(starts) == 1, f"README.md has {len(starts)} '{SECTION}' headings"
  end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].startswith("## ")),
             len(lines))
  section = "\n".join(lines[starts[0]:end])
  blocks = []
  for match in re.finditer(r"^```python\n(.*?)^```$", section, re.S | re.M):
    line = starts[0] + section[:match.start()].count("\n") + 2  # 1-based, the code's first line
    blocks.append((line, match.group(1)))
  assert len(blocks) == NUM_BLOCKS, f"expected {NUM_BLOCKS} python blocks, found {len(blocks)}"
  return blocks


def run_block(line: int, code: str, cwd: pathlib.Path) -> tuple[dict, str]:
  """Executes one block in a fresh namespace with `cwd` as the working directory:
  (its namespace, what it printed)."""
  namespace = {"__name__": "__readme__"}
  out = io.StringIO()
  previous = os.getcwd()
  os.chdir(cwd)
  try:
    with contextlib.redirect_stdout(out):
      exec(compile(code, f"README.md:{line}", "exec"), namespace)  # pylint: disable=exec-used
  finally:
    os.chdir(previous)
  return namespace, out.getvalue()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
  """The three SAT3D blocks run in order in one prepared directory: (dir, [(namespace, out)])."""
  root = tmp_path_factory.mktemp("use_from_python")
  shutil.copytree(SAT3D_RUN, root / "workdirs" / "sat3d_ffhq_tiny")
  results = [run_block(line, code, root) for line, code in readme_python_blocks()[:3]]
  return root, results


def to_png_pixels(image) -> np.ndarray:
  """EG3D's gen_samples.py: (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)."""
  return np.clip(np.asarray(image, np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)


def test_the_section_holds_the_four_snippets():
  blocks = [code for _, code in readme_python_blocks()]
  assert "eg3d.random_generator" in blocks[0] and ".save(\"face.png\")" in blocks[0]
  assert "QMM.tiny" in blocks[1]
  assert "run_io.load_run(\"workdirs/sat3d_ffhq_tiny\")" in blocks[2]
  assert "from frldgt_jax import run_io" in blocks[3]


def test_render_writes_the_face_of_the_seed_mapped_as_training_maps_it(ran):
  root, [(ns, _), _, (edit_ns, _)] = ran
  G, image = ns["G"], np.asarray(ns["image"])
  size = G.img_resolution
  assert image.shape == (size, size, 3) and np.isfinite(image).all()
  png = np.asarray(Image.open(root / "face.png"))
  assert png.shape == (size, size, 3) and png.dtype == np.uint8 and png.std() > 1
  np.testing.assert_array_equal(png, to_png_pixels(image))
  # The frontal camera and truncation are the ones SAT3D training uses (Sat3dModel.ws_from_z on
  # the run's own generator, which is this one: preset:micro, seed 0).
  model = edit_ns["run"].model
  np.testing.assert_allclose(ns["frontal"], model.frontal(1), atol=1e-6)
  assert sorted(G.params) == sorted(model.generator.params)
  for name in list(G.params)[:3]:
    np.testing.assert_array_equal(G.params[name], model.generator.params[name])
  np.testing.assert_allclose(ns["ws"], model.ws_from_z(G.params, ns["z"]), atol=1e-5)
  # The side camera was used: it is not the frontal rendering.
  frontal_image = np.asarray(G.synthesis(ns["ws"], ns["frontal"])["image"][0])
  assert np.abs(frontal_image - image).mean() > 1e-3


def test_measure_gives_one_distribution_per_attribute(ran):
  _, [_, (ns, printed), _] = ran
  qmm, probabilities = ns["qmm"], ns["probabilities"]
  assert sorted(probabilities) == sorted(qmm.attributes) and "hairstyle" in qmm.attributes
  assert ns["face"].shape[-1] == 3 and -1 <= ns["face"].min() and ns["face"].max() <= 1
  for attribute, groups in zip(qmm.attributes, qmm.spec.group_names):
    p = np.asarray(probabilities[attribute])
    assert p.shape == (1, len(groups)) and (p >= 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  lines = printed.strip().splitlines()
  assert [line.split(" ", 1)[0] for line in lines] == list(qmm.attributes)


def test_edit_is_the_masked_interpolation_of_the_two_seeds_styles(ran):
  root, [(render_ns, _), _, (ns, _)] = ran
  run, G = ns["run"], render_ns["G"]
  assert run.step == 2 and run.attributes[:2] == ("hairstyle", "hair_color")
  # The styles of seeds 3 and 7, computed with the generator API directly.
  z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (3, 7)]).astype(np.float32)
  ws = G.mapping(z, np.repeat(np.asarray(render_ns["frontal"]), 2, 0), truncation_psi=0.7,
                 truncation_cutoff=14)
  styles = np.asarray(G.flatten_styles(G.styles(ws)))
  np.testing.assert_allclose(ns["s_src"], styles[:1], atol=1e-5)
  np.testing.assert_allclose(ns["s_ref"], styles[1:], atol=1e-5)
  # m_T = targets @ softmax(M / tau)[:A] (every channel editable in this run).
  logits = run.mask_logits / run.temperature
  p = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
  targets = np.zeros(len(run.attributes), np.float32)
  targets[[run.attributes.index("hairstyle"), run.attributes.index("beard")]] = 1
  m_t = targets @ p[:-1]
  s_src, s_ref = styles[:1], styles[1:]
  expected = s_src + 1.0 * m_t * (s_ref - s_src)
  np.testing.assert_allclose(ns["s_edit"], expected, atol=1e-4)
  assert np.abs(expected - s_src).max() > 1e-3  # the edit changes something
  # edited.png is the frontal rendering of the edited styles.
  image = G.synthesis_from_styles(G.unflatten_styles(jax.numpy.asarray(expected)),
                                  render_ns["frontal"])["image"][0]
  png = np.asarray(Image.open(root / "edited.png"))
  assert png.shape == (G.img_resolution, G.img_resolution, 3)
  assert np.abs(png.astype(int) - to_png_pixels(image).astype(int)).max() <= 1
