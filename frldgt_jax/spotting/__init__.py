"""Spotting micro- and macro-expressions in long videos, then recognising them (MEGC 2019-2025).

intervals.py: the interval every part speaks (annotations, the spotter's output, the metric).
metrics.py: the MEGC spotting metric (IoU >= 0.5, F1 per type and overall) and STRS.
mdmd.py: MDMD, the MEGC 2020 baseline, re-implemented from its MATLAB code.
"""
