"""The XLA flags of every test process: pytest's own (tests/conftest.py) and its subprocesses'.

Most of the suite's time is XLA:CPU compiling small programs (tiny models, a few steps each).
`--xla_backend_optimization_level=0` runs LLVM's code generation at -O0: measured on the 2-core
development machine (docs/architecture.md, "Tests"), tests/frldgt/test_sweep.py with
tests/sat3d/test_sat3d_task.py took 415 s instead of 555 s, while the execution-bound EG3D parity
and inversion tests took 351 s instead of 339 s. It changes how fast the generated code runs, not
which operations it runs: every numerical tolerance and bitwise-resume test holds under it.
"""
OPTIMIZATION = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a test process with `devices` fake CPU devices."""
  return f"--xla_force_host_platform_device_count={devices} {OPTIMIZATION}"
