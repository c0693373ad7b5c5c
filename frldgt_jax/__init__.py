"""FRL-DGT in JAX/Flax."""
