"""SAT3D Studio in a real browser (headless Chromium driven by Playwright).

The studio runs as a user runs it (`python launch/studio.py --workdir RUN`) on a tiny SAT3D run
written with the driver's own pieces (config.json, task.json, an Orbax checkpoint of a seeded
random mask: no training in the test). One browser session picks seeds, ticks an attribute,
moves the strength and camera sliders; the PNG the page serves must equal what
launch/transfer.py writes for the same inputs (within 1/255). A second session at the same
time must not see the first one's state. The orbit MP4, the style file, the mask file and the
3D shape are downloaded and read back; the mask and style files go back into
launch/transfer.py (--mask, the result as --source). A bad upload and a photo without a face
give a message, and the studio keeps rendering.

Chromium: Debian's `chromium` (apt-get install -y chromium chromium-driver); .ci/run installs it.
Without it the test skips outside CI and fails in CI (CI set).
"""
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import warnings

import imageio.v3 as iio
import imageio_ffmpeg
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.sat3d_ffhq import get_config
from launch.tasks.sat3d import make_task
from launch.trainer.checkpoint import Checkpoints
from sat3d_jax import mask_file, shapes, style_file
from sat3d_jax.model import Sat3dModel

REPO = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FRAMES = 6
SOURCE, REFERENCE, STRENGTH, YAW, PITCH = 3, 4, 1.5, 0.3, 0.1
WAIT_MS = 240_000  # one click on a loaded 2-core machine


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny SAT3D run in the driver's format with a seeded random mask (no training)."""
  workdir = tmp_path_factory.mktemp("studio_run")
  config = get_config("tiny")
  model = Sat3dModel(config)
  task = make_task(config, model)
  (workdir / "config.json").write_text(json.dumps(json.loads(config.to_json_best_effort())))
  (workdir / "task.json").write_text(json.dumps(task.describe()))
  state = task.init_state(jax.random.key(0))
  logits = np.random.RandomState(5).randn(*state["mask"].shape).astype(np.float32) * 2
  checkpoints = Checkpoints(workdir / "checkpoints", async_save=False)
  checkpoints.save(3, {"mask": jnp.asarray(logits), "opt": state["opt"]},
                   {"step": 3, "input_position": 3, "time": 0.0})
  checkpoints.close()
  return workdir, tuple(model.attributes)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _python(script, *args, **kwargs):
  warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)  # fork + exec
  return subprocess.Popen([sys.executable, f"launch/{script}.py", *map(str, args)], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture(scope="module")
def chromium():
  if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
      pytest.fail(f"CI needs Chromium at {CHROMIUM} (.ci/run installs it)")
    pytest.skip("headless Chromium is not installed: apt-get install -y chromium "
                "chromium-driver (Debian/Ubuntu), then rerun")
  try:
    from playwright.sync_api import sync_playwright
  except ImportError:
    if os.environ.get("CI"):
      raise
    pytest.skip('Playwright is not installed: pip install -e ".[studio]"')
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def studio(run, tmp_path_factory):
  """(url, log lines) of `launch/studio.py --workdir RUN` listening on 127.0.0.1."""
  workdir, _ = run
  port = _free_port()
  proc = _python("studio", "--workdir", workdir, "--port", port, "--frames", FRAMES,
                 "--shape_resolution", 32, "--max_upload_mb", 1,
                 "--out", tmp_path_factory.mktemp("studio_out"))
  lines = []
  try:
    deadline = time.time() + 600
    while time.time() < deadline:
      line = proc.stdout.readline()
      if not line:
        raise AssertionError("the studio exited:\n" + "".join(lines[-40:]))
      lines.append(line)
      if "Running on local URL" in line:
        break
    else:
      raise AssertionError("the studio did not start:\n" + "".join(lines[-40:]))
    yield f"http://127.0.0.1:{port}", lines
  finally:
    proc.terminate()
    proc.wait(30)


def _caption(page, *fragments):
  """Waits until the caption beside the image shows every fragment; returns it."""
  condition = " && ".join(f"t.includes({json.dumps(f)})" for f in fragments)
  page.wait_for_function(f"(() => {{ const e = document.querySelector('#timing'); "
                         f"const t = e ? e.innerText : ''; return {condition}; }})()",
                         timeout=WAIT_MS)
  return page.inner_text("#timing")


def _status(page, fragment):
  page.wait_for_function(f"(document.querySelector('#status') || {{innerText: ''}})"
                         f".innerText.includes({json.dumps(fragment)})", timeout=WAIT_MS)
  return page.inner_text("#status")


def _set_number(page, elem_id, value):
  box = page.locator(f"#{elem_id} input[type=number]")
  box.fill(str(value))
  box.blur()  # a slider's release / a number's change


def _image(page, context) -> np.ndarray:
  response = context.request.get(page.get_attribute("#view img", "src"))
  assert response.headers["content-type"] == "image/png"
  return np.asarray(Image.open(io.BytesIO(response.body())))


def _download(page, context, button, name, path):
  page.click(f"#{button}")
  page.wait_for_function(f"[...document.querySelectorAll('#download a')].some(a => "
                         f"a.href.includes({json.dumps(name)}))", timeout=WAIT_MS)
  link = [a for a in page.locator("#download a").all() if name in a.get_attribute("href")][0]
  path.write_bytes(context.request.get(link.get_attribute("href")).body())
  return path


def test_studio_in_a_browser(chromium, run, studio, tmp_path):
  workdir, attributes = run
  url, log = studio
  assert any("warm-up: done" in line for line in log)
  target = attributes[0]
  transfer = _python("transfer", "--workdir", workdir, "--source", SOURCE, "--reference",
                     REFERENCE, "--attributes", f"{target}={STRENGTH}", "--yaw", YAW,
                     "--pitch", PITCH, "--frames", FRAMES, "--batch", 3, "--out",
                     tmp_path / "cli")

  a = chromium.new_context()
  page = a.new_page()
  page.goto(url)
  _caption(page, "new edit")
  _set_number(page, "source_seed", SOURCE)
  _set_number(page, "reference_seed", REFERENCE)
  _caption(page, f"seed {SOURCE} ", f"seed {REFERENCE} ")
  page.check(f"#attr_{target} input")
  _set_number(page, f"delta_{target}", STRENGTH)
  _caption(page, f"{target} {STRENGTH:g} of seed {REFERENCE}")
  _set_number(page, "yaw", YAW)
  _set_number(page, "pitch", PITCH)
  shown = _caption(page, f"yaw {YAW:+.3f}, pitch {PITCH:+.3f}")
  assert shown.startswith("camera move")  # the faces did not change: cached tri-planes
  image = _image(page, a)

  # A second session at the same time: its own faces; the first one's state is untouched.
  b = chromium.new_context()
  other = b.new_page()
  other.goto(url)
  _caption(other, "new edit")
  _set_number(other, "source_seed", 9)
  shown_b = _caption(other, "seed 9 ")
  assert "seed 2 " in shown_b and f"seed {REFERENCE} " not in shown_b and target not in shown_b
  assert not np.array_equal(_image(other, b), image)
  _set_number(page, "yaw", -YAW)
  moved = _caption(page, f"yaw {-YAW:+.3f}")
  assert moved.startswith("camera move") and f"seed {SOURCE} " in moved and "seed 9" not in moved
  _set_number(page, "yaw", YAW)
  _caption(page, f"yaw {YAW:+.3f}")
  np.testing.assert_array_equal(_image(page, a)[None], image[None])

  # The same inputs through launch/transfer.py: the same pixels.
  output = transfer.communicate(timeout=600)[0]
  assert transfer.returncode == 0, output[-3000:]
  grid = iio.imread(tmp_path / "cli" / "grid.png")
  res = grid.shape[1]
  assert image.shape == (res, 3 * res, 3)
  cells = np.concatenate([grid[i * res:(i + 1) * res] for i in range(3)], axis=1)
  difference = np.abs(image.astype(int) - cells.astype(int)).max()
  print(f"studio PNG vs transfer.py grid: max |difference| {difference}/255")
  assert difference <= 1

  # Downloads: the orbit, the faces as a style file, the mask, the shape.
  mp4 = _download(page, a, "save_mp4", "orbit.mp4", tmp_path / "orbit.mp4")
  reader = imageio_ffmpeg.read_frames(str(mp4))
  meta = next(reader)
  decoded = [np.frombuffer(f, np.uint8) for f in reader]
  assert tuple(meta["size"]) == (res, res) and len(decoded) == FRAMES
  assert all(f.size == res * res * 3 for f in decoded) and np.std(decoded[0]) > 1
  styles = style_file.read_style_file(_download(page, a, "save_styles", "result_styles.npz",
                                                tmp_path / "styles.npz"))
  cli_styles = style_file.read_style_file(tmp_path / "cli" / "result_styles.npz")
  np.testing.assert_allclose(styles["styles"], cli_styles["styles"], atol=1e-6)
  mask = mask_file.read_mask_file(_download(page, a, "save_mask", "mask.npz",
                                            tmp_path / "mask.npz"))
  assert mask.attributes == attributes and mask.step == 3
  # Both files back into launch/transfer.py: the mask instead of the workdir, the studio's
  # result as the source (strength 0: the source unchanged), and its shape.
  again = _python("transfer", "--mask", tmp_path / "mask.npz", "--source",
                  tmp_path / "styles.npz", "--source_index", 2, "--reference", REFERENCE,
                  "--attributes", f"{target}=0", "--yaw", YAW, "--pitch", PITCH, "--frames", 0,
                  "--batch", 3, "--shapes", "--shape_resolution", 16, "--out", tmp_path / "again")
  page.click("#show_mask")
  page.wait_for_selector("#mask_plot img", timeout=WAIT_MS)
  ply = _download(page, a, "save_shape", "shape.ply", tmp_path / "shape.ply")
  assert len(shapes.read_ply(ply).faces) > 0
  page.wait_for_selector("#shape canvas", timeout=WAIT_MS)

  # Bad uploads: a message in the page, and the studio keeps rendering.
  bad = tmp_path / "photo.png"
  bad.write_text("not an image")
  page.set_input_files("#source_photo input[type=file]", str(bad))
  _status(page, "not a readable image")
  blank = tmp_path / "blank.png"
  Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
  page.set_input_files("#source_photo input[type=file]", str(blank))
  _status(page, "photo received")
  page.click("#source_invert")
  _status(page, "no face")
  _set_number(page, "pitch", 0.0)
  assert _caption(page, f"yaw {YAW:+.3f}, pitch +0.000").startswith("camera move")
  output = again.communicate(timeout=600)[0]
  assert again.returncode == 0, output[-3000:]
  regrid = iio.imread(tmp_path / "again" / "grid.png")
  assert np.abs(regrid[:res].astype(int) - image[:, 2 * res:].astype(int)).max() <= 1
  assert len(shapes.read_ply(tmp_path / "again" / "result_shape.ply").faces) > 0
  page.set_viewport_size({"width": 1280, "height": 860})
  page.evaluate("window.scrollTo(0, 0)")
  page.screenshot(path=str(tmp_path / "studio.png"))
  if os.environ.get("STUDIO_SCREENSHOT"):  # how docs/images/studio.png is made
    shutil.copy(tmp_path / "studio.png", os.environ["STUDIO_SCREENSHOT"])
  a.close()
  b.close()
