"""SAT3D in JAX/Flax."""
