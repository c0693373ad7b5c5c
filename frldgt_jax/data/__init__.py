"""FRL-DGT data: alignment, annotation readers, TFDS builders, input pipeline, synthetic corpus."""
