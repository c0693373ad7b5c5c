"""Spotting micro- and macro-expressions in long videos, then recognising them (MEGC 2019-2025).

intervals.py: the interval every part speaks (annotations, the spotter's output, the metric).
metrics.py: the MEGC spotting metric (IoU >= 0.5, F1 per type and overall) and STRS.
mdmd.py: MDMD, the MEGC 2020 baseline, re-implemented from its MATLAB code.
features.py: per-frame motion features of an aligned face, jitted over chunks of frames.
model.py: the spotting net (dilated temporal convolutions -> p(none, micro, macro) per frame).
decode.py: per-frame probabilities -> intervals (onset, apex, offset, kind).
training.py: per-frame labels, window batches and the pure train step.
corpus.py: the videos a spotting config trains on, as features and labels, and its LOSO folds.
spotter.py: a trained spotter read back from its workdir; spotting a whole video.
timeline.py: the timeline picture of a spotted video (launch/spot.py).
recognition.py: spotted micro-expressions classified by an FRL-DGT recogniser (spot, then
  recognise: launch/spot.py, launch/spot_strs.py).
toy.py: aligned-face toy videos with planted expressions (unit tests, the tiny spotter).
"""
