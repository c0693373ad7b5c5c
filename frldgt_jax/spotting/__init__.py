"""Spotting micro- and macro-expressions in long videos, then recognising them (MEGC 2019-2025).

intervals.py: the interval every part speaks (annotations, the spotter's output, the metric).
"""
