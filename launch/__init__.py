"""The application: entry points (`launch/*.py`), the generic training driver (`trainer/`), each
paper's binding to it (`tasks/`), what the entry points share (`common/`) and the benchmarks.

Imports point one way: launch -> sat3d_jax, frldgt_jax; `trainer/` imports no library, and no
entry point imports another (tests/test_architecture.py checks both).
"""
