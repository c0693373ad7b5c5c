"""The studio's page (Gradio 5): inputs on the left, the 3D view and the outputs on the right.

Every computation goes through engine.Studio with this browser session's engine.Session (a
gr.State: sessions never see each other's faces, edits or files). All JAX work shares one
queue slot (concurrency_id 'jax', limit 1), so two sessions' clicks run one after the other.
Images are served as PNG (lossless), not Gradio's default WebP. A user's mistake (a bad upload,
a latent for another generator, a photo without a face) is shown in the status line; the
server keeps serving.
"""
from __future__ import annotations

import functools
from typing import Callable

from launch.studio_app import engine, photos, plots, uploads
from sat3d_jax.errors import InputError

KINDS = ("seed", "file", "photo")
# The view is shown enlarged, pixels kept sharp (the served PNG keeps the generator's size).
CSS = "#view img {image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain;}"
JAX = dict(concurrency_id="jax", concurrency_limit=1)


def _guarded(fn: Callable, n_outputs: int) -> Callable:
  """fn(session, ...) -> outputs, with an InputError shown in the status line (the last
  output) and every other output left as it was."""
  import gradio as gr  # pylint: disable=g-import-not-at-top

  @functools.wraps(fn)
  def run(*args):
    try:
      return fn(*args)
    except InputError as e:
      return (args[0],) + tuple(gr.update() for _ in range(n_outputs - 2)) + \
          (f"**error:** {e}",)
  return run


def build(studio: engine.Studio, max_upload_bytes: int, w_steps: int, wplus_steps: int):
  """The gr.Blocks of the studio (not launched)."""
  import gradio as gr  # pylint: disable=g-import-not-at-top

  ed = studio.editor
  gen = ed.generator
  psi0 = ed.mask.truncation_psi
  with gr.Blocks(title="SAT3D Studio", analytics_enabled=False, css=CSS) as demo:
    session = gr.State(None)
    gr.Markdown(
        "## SAT3D Studio\n"
        f"{'Attribute transfer with the mask of ' + ed.source if studio.has_mask else 'Generation and orbit viewer for ' + ed.source}"  # noqa: E501
        f" · generator {ed.mask.generator} ({gen.img_resolution} px, {ed.fingerprint})")
    inputs = {}
    with gr.Row():
      with gr.Column(scale=1, min_width=320):
        for role in ("source", "reference") if studio.has_mask else ("source",):
          with gr.Group():
            gr.Markdown(f"**{role}**")
            kind = gr.Radio(list(KINDS), value="seed", label="from", elem_id=f"{role}_kind")
            seed = gr.Number(value=1 if role == "source" else 2, precision=0, label="seed",
                             elem_id=f"{role}_seed")
            npz = gr.File(label="latent or style .npz", file_types=[".npz"], type="filepath",
                          elem_id=f"{role}_file", height=100)
            row = gr.Number(value=0, precision=0, minimum=0, label="row of the file",
                            elem_id=f"{role}_row")
            photo = gr.File(label="photo (PNG / JPEG / WebP)",
                            file_types=list(uploads.PHOTO_TYPES), type="filepath",
                            elem_id=f"{role}_photo", height=100)
            invert = gr.Button(f"invert the {role} photo", elem_id=f"{role}_invert")
          inputs[role] = (kind, seed, npz, row, photo, invert)
        checks, strengths = [], []
        if studio.has_mask:
          gr.Markdown("**attributes** (tick, then set the strength δ)")
          for name in studio.attributes:
            with gr.Row():
              checks.append(gr.Checkbox(value=False, label=name, elem_id=f"attr_{name}",
                                        min_width=120))
              strengths.append(gr.Slider(-2.0, 3.0, value=1.0, step=0.05, label=f"δ {name}",
                                         elem_id=f"delta_{name}", min_width=160))
        psi = gr.Slider(0.0, 1.0, value=psi0, step=0.01, label="truncation ψ (seeds)",
                        elem_id="psi")
        with gr.Accordion("photo inversion", open=False):
          w_box = gr.Number(value=w_steps, precision=0, minimum=0, label="W steps",
                            elem_id="w_steps")
          wplus_box = gr.Number(value=wplus_steps, precision=0, minimum=0, label="W+ steps",
                                elem_id="wplus_steps")
      with gr.Column(scale=2, min_width=480):
        with gr.Row():
          yaw = gr.Slider(-0.8, 0.8, value=0.0, step=0.01, label="yaw (rad)", elem_id="yaw")
          pitch = gr.Slider(-0.4, 0.4, value=0.0, step=0.01, label="pitch (rad)",
                            elem_id="pitch")
        view = gr.Image(label=("source | reference | result" if studio.has_mask else "source"),
                        format="png", type="numpy", interactive=False, elem_id="view",
                        height=max(gen.img_resolution, 300))
        caption = gr.Markdown("", elem_id="timing")
        status = gr.Markdown("", elem_id="status")
        with gr.Row():
          b_grid = gr.Button("grid PNG", elem_id="save_grid")
          b_mp4 = gr.Button("orbit MP4", elem_id="save_mp4")
          b_styles = gr.Button("style file", elem_id="save_styles")
          b_mask = gr.Button("mask file", elem_id="save_mask", visible=studio.has_mask)
          b_plot = gr.Button("mask plot", elem_id="show_mask", visible=studio.has_mask)
          b_shape = gr.Button("3D shape", elem_id="save_shape")
        download = gr.File(label="download", interactive=False, elem_id="download")
        mask_plot = gr.Image(label="learned mask", format="png", type="numpy",
                             interactive=False, visible=studio.has_mask, elem_id="mask_plot")
        shape_view = gr.Model3D(label="3D shape of the result", elem_id="shape")
        shape_note = gr.Markdown("", elem_id="shape_note")

    def picks(values):
      out, k = {}, 0
      for role in inputs:
        kind, seed, npz, row = values[k:k + 4]
        k += 4
        value = {"seed": seed, "file": npz, "photo": role}[kind]
        out[role] = engine.Pick(kind, value, int(row or 0))
      return out, values[k:]

    def current(state):
      return state if state is not None else studio.new_session()

    role_fields = [c for role in inputs for c in inputs[role][:4]]
    view_inputs = [session, *role_fields, psi, yaw, pitch, *checks, *strengths]

    def on_render(state, *values):
      state = current(state)
      chosen, rest = picks(values)
      psi_value, yaw_value, pitch_value = rest[:3]
      ticks, deltas = rest[3:3 + len(checks)], rest[3 + len(checks):]
      chosen_strengths = {a: float(d) for a, t, d in zip(studio.attributes, ticks, deltas) if t}
      rendered = studio.render(state, chosen["source"], chosen.get("reference"),
                               chosen_strengths, float(psi_value), float(yaw_value),
                               float(pitch_value))
      return state, rendered.image, rendered.caption, ""

    render = _guarded(on_render, 4)
    render_outputs = [session, view, caption, status]
    for component in [*role_fields, *checks]:
      component.change(render, view_inputs, render_outputs, trigger_mode="always_last", **JAX)
    for slider in [psi, yaw, pitch, *strengths]:
      slider.release(render, view_inputs, render_outputs, trigger_mode="always_last", **JAX)
    demo.load(render, view_inputs, render_outputs, **JAX)

    for role, (kind, _, _, _, photo_file, invert) in inputs.items():
      def on_invert(state, path, w, wplus, role=role,
                    progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        state = current(state)
        image = uploads.read_photo(path, max_upload_bytes)
        progress(0, desc=f"inverting the {role} photo")
        face, _, psnr, seconds = photos.invert_photo(studio.editor, image, uploads.check_size(
            path, max_upload_bytes, "photo").name, int(w or 0), int(wplus or 0),
            studio.encoder)
        state.photos[role] = face
        state.key = None  # the next render is a new edit
        how = "encoder" if studio.encoder is not None else "optimisation"
        return state, gr.update(value="photo"), (
            f"{role}: inverted ({how}) in {seconds:.2f} s, PSNR {psnr:.1f} dB")

      invert.click(_guarded(on_invert, 3), [session, photo_file, w_box, wplus_box],
                   [session, kind, status], **JAX).then(
                       render, view_inputs, render_outputs, **JAX)

      def on_photo(state, path):
        state = current(state)
        try:
          uploads.read_photo(path, max_upload_bytes)  # refuse a bad file at once
        except InputError as e:
          return state, None, f"**error:** {e}"  # cleared: the next upload can come
        return state, gr.update(), "photo received: press invert"

      photo_file.upload(on_photo, [session, photo_file], [session, photo_file, status], **JAX)

    def download_of(make):
      def run(state, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        state = current(state)
        path = make(state)
        return state, str(path), f"wrote {path.name}"
      return _guarded(run, 3)

    b_grid.click(download_of(studio.grid_png), [session], [session, download, status], **JAX)
    b_mp4.click(download_of(studio.orbit_mp4), [session], [session, download, status], **JAX)
    b_styles.click(download_of(studio.styles_npz), [session], [session, download, status],
                   **JAX)
    b_mask.click(download_of(studio.mask_npz), [session], [session, download, status], **JAX)

    def on_plot(state):
      names, channels = studio.editor.mask_by_layer()
      return state, plots.mask_figure(names, channels, studio.attributes), ""

    b_plot.click(_guarded(on_plot, 3), [session], [session, mask_plot, status], **JAX)

    def on_shape(state):
      state = current(state)
      obj, ply, note = studio.shape(state)
      return state, str(obj), str(ply), note, ""

    b_shape.click(_guarded(on_shape, 5), [session],
                  [session, shape_view, download, shape_note, status], **JAX)
  return demo
