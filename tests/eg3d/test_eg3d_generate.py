"""launch/generate.py on the tiny128 fixture: grid PNGs and turntable MP4s, and its flag errors.

The command runs as a subprocess: absl flags are process-global, so entry points are never
imported into the test process.
"""
import pathlib
import subprocess
import sys
import warnings

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]


def _generate(*args):
  with warnings.catch_warnings():  # JAX's warning about fork() does not apply to fork + exec
    warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
    return subprocess.run([sys.executable, "launch/generate.py", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_media_turntable_and_grid(tmp_path):
  """The gen_videos.py orbit (yaw 0.35 sin t, pitch -0.05 + 0.25 cos t over one turn) and grids
  laid out row by row, as PNGs that read back bit for bit."""
  from sat3d_jax import media
  views = media.turntable_views(4)
  np.testing.assert_allclose(views, [[0.0, 0.2], [0.35, -0.05], [0.0, -0.3], [-0.35, -0.05]],
                             atol=1e-12)
  assert media.turntable_views(0).shape == (0, 2)
  assert media.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])).tolist() == [0, 128, 255, 255]
  cells = np.arange(2 * 3 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 3, 4, 5, 3)
  grid = media.image_grid(cells)
  assert grid.shape == (2 * 4, 3 * 5, 3)
  np.testing.assert_array_equal(grid[4:, 10:], cells[1, 2])
  media.write_png(tmp_path / "grid.png", grid)
  np.testing.assert_array_equal(iio.imread(tmp_path / "grid.png"), grid)


def test_seed_lists_and_user_errors(tmp_path):
  """--seeds takes lists and inclusive ranges; a bad range or a missing generator is one line
  on stderr and exit status 2, nothing written."""
  listed = _generate("--generator", tmp_path / "missing", "--seeds", "1,5,7-8",
                     "--out", tmp_path / "gen")
  assert "4 seed(s): 1, 5, 7, 8" in listed.stdout
  assert listed.returncode == 2, listed.stderr
  assert f"error: no generator at {tmp_path / 'missing'}" in listed.stderr
  assert "Traceback" not in listed.stderr
  bad = _generate("--generator", tmp_path / "missing", "--seeds", "3-1",
                  "--out", tmp_path / "gen")
  assert bad.returncode == 2
  assert "bad seed range '3-1'" in bad.stderr and "Traceback" not in bad.stderr
  assert not (tmp_path / "gen").exists()


def test_generate_grid_and_video(tmp_path, eg3d_fixture_dir):
  out = tmp_path / "gen"
  done = _generate("--generator", eg3d_fixture_dir / "eg3d_tiny128.npz", "--seeds", "0-1",
                   "--out", out, "--views", "3", "--frames", "5", "--fps", "10")
  assert done.returncode == 0, done.stderr[-3000:]
  assert "2 seed(s): 0, 1" in done.stdout
  assert str(out.resolve()) in done.stdout
  res = 128  # tiny128: 128 px images
  grids = {}
  for seed in (0, 1):
    grid = iio.imread(out / f"seed{seed:04d}.png")
    assert grid.shape == (2 * res, 3 * res, 3) and grid.dtype == np.uint8
    depth_row = grid[res:]
    # Depth row: grey (R = G = B), normalised per seed so it spans (almost) the full range.
    assert np.array_equal(depth_row[..., 0], depth_row[..., 2])
    assert depth_row.max() >= 250 and depth_row.min() <= 5
    grids[seed] = grid
    reader = imageio_ffmpeg.read_frames(str(out / f"seed{seed:04d}.mp4"))
    meta = next(reader)
    frames = list(reader)
    assert tuple(meta["size"]) == (2 * res, res)  # (width, height): image | depth
    assert len(frames) == 5
  assert not np.array_equal(grids[0], grids[1])  # seeds give different renders
  # The views differ (yaw sweep): compare the first and last depth maps.
  depth_row = grids[0][res:].astype(int)
  assert np.abs(depth_row[:, :res] - depth_row[:, 2 * res:]).mean() > 1
