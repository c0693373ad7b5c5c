"""SAT3D Studio, the browser app of launch/studio.py.

  engine.py   what the studio computes (faces, edits, cached tri-planes, renders, downloads),
              per-session state; no web code
  uploads.py  checks of uploaded photos (size, type, bit depth, colour space)
  photos.py   a photo -> face crop -> inverted latent, with progress
  plots.py    the learned mask per attribute and layer as a picture
  ui.py       the Gradio page wired to the engine
"""
