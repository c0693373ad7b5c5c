"""Command-line entry points (train, sweep, convert, ...) and the generic training driver.

`launch.trainer` is the one training driver both papers use; the scripts beside it are thin
absl entry points.
"""
