"""The machine's matmul peak: measured in the same run, and the vendor's figure for known chips.

`measured_matmul_peak` times square matmuls C = A @ B of a few sizes per dtype and keeps the
best TFLOP/s (2 n^3 / fastest time). It is what a well-shaped matmul reaches on this machine, in
this process, now (on a shared machine: under the same load as the suites), so "% of measured
peak" says how far a workload is from the matrix units' practical ceiling.

`vendor_peak` looks up the dense (no sparsity) peak the vendor publishes for the device kind.
Under jax's default matmul precision float32 dots and convolutions run as TF32 on NVIDIA
tensor-core GPUs and as one bfloat16 pass on TPUs (jax docs, "Matmul precision"), so the float32
entry is the TF32 peak on those GPUs and the bfloat16 peak on TPUs (said so in `basis`).
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Dense peaks in TFLOP/s from the vendors' data sheets: (substring rules, name, {dtype: peak}).
# NVIDIA: H100 SXM5 / H200 989.4 bf16, 494.7 tf32; H100 PCIe 756 / 378; H100 NVL 835 / 418;
# A100 312 / 156; L4 121 / 60; L40S 362 / 183; L40 181 / 90.5 (NVIDIA data sheets, dense).
# Google Cloud TPU pages: v4 275, v5e 197, v5p 459, v6e (Trillium) 918 bf16 TFLOP/s per chip.
_VENDOR_TABLE = (
    (("H100", "PCIE"), "NVIDIA H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    (("H100", "NVL"), "NVIDIA H100 NVL", {"bfloat16": 835.0, "float32": 418.0}),
    (("H100",), "NVIDIA H100 SXM", {"bfloat16": 989.4, "float32": 494.7}),
    (("H200",), "NVIDIA H200", {"bfloat16": 989.4, "float32": 494.7}),
    (("A100",), "NVIDIA A100", {"bfloat16": 312.0, "float32": 156.0}),
    (("L40S",), "NVIDIA L40S", {"bfloat16": 362.0, "float32": 183.0}),
    (("L40",), "NVIDIA L40", {"bfloat16": 181.0, "float32": 90.5}),
    (("L4",), "NVIDIA L4", {"bfloat16": 121.0, "float32": 60.0}),
    (("TPU V4",), "TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
    (("TPU V5 LITE",), "TPU v5e", {"bfloat16": 197.0, "float32": 197.0}),
    (("TPU V5E",), "TPU v5e", {"bfloat16": 197.0, "float32": 197.0}),
    (("TPU V5P",), "TPU v5p", {"bfloat16": 459.0, "float32": 459.0}),
    (("TPU V5",), "TPU v5p", {"bfloat16": 459.0, "float32": 459.0}),
    (("TPU V6",), "TPU v6e", {"bfloat16": 918.0, "float32": 918.0}),
)

DTYPES = ("float32", "bfloat16")


def vendor_peak(device_kind: str, platform: str) -> dict:
  """{'name', 'tflops': {dtype: TFLOP/s}, 'basis'} for a known accelerator, else a reason."""
  kind = device_kind.upper()
  for needles, name, peaks in _VENDOR_TABLE:
    if all(n in kind for n in needles):
      basis = "dense peak from the vendor's data sheet; float32 = " + (
          "TF32 tensor-core peak" if platform == "gpu" else "bfloat16 peak") + \
          " (what jax's default precision runs float32 matmuls as)"
      return {"name": name, "tflops": dict(peaks), "basis": basis}
  if platform == "cpu":
    reason = "CPUs have no vendor matmul peak in this table; see the measured peak"
  else:
    reason = f"device kind {device_kind!r} is not in the vendor table (launch/benchmarks/peak.py)"
  return {"name": None, "tflops": {}, "basis": reason}


def default_sizes(platform: str, quick: bool) -> dict:
  """Matrix sizes tried per dtype: small enough for a 2-core CPU, large enough to fill a GPU."""
  if platform == "cpu":
    # bf16 matmuls on CPUs without AMX/AVX512-BF16 are emulated and much slower.
    return {"float32": (256, 512, 1024) if quick else (512, 1024, 2048),
            "bfloat16": (256, 512) if quick else (512, 1024)}
  return {d: (2048, 4096, 8192) if quick else (4096, 8192, 16384) for d in DTYPES}


def time_matmul(n: int, dtype: str, runs: int = 5, warmup: int = 1) -> float:
  """Fastest of `runs` timed n x n x n matmuls in `dtype` (seconds, blocking on the result).

  The fastest, not the median: a peak is what the machine can reach, and on a shared machine
  the slower runs measure the other tenants.
  """
  key_a, key_b = jax.random.split(jax.random.key(n))
  a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  for _ in range(warmup):
    jax.block_until_ready(matmul(a, b))
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  return float(np.min(times))


def measured_matmul_peak(sizes: dict, runs: int = 5, budget_s: float = 20.0,
                         log: Callable[[str], None] = print) -> dict:
  """{dtype: {'tflops': best, 'size': n, 'by_size': {n: TFLOP/s}}} over the given sizes.

  Sizes are tried in increasing order; a dtype stops early once its timings used `budget_s`
  (a larger matmul would only take longer).
  """
  out = {}
  for dtype, ns in sizes.items():
    by_size, spent = {}, 0.0
    for n in sorted(ns):
      best = time_matmul(n, dtype, runs=runs)
      by_size[str(n)] = 2.0 * n ** 3 / best / 1e12
      spent += best * (runs + 1)
      if spent > budget_s:
        break
    best = max(by_size, key=by_size.get)
    out[dtype] = {"tflops": by_size[best], "size": int(best), "by_size": by_size}
    log(f"  matmul peak {dtype}: {by_size[best]:.3g} TFLOP/s (n={best})")
  return out


def peaks_for_cases(measured: dict, vendor: dict) -> dict:
  """The {'measured': {dtype: TFLOP/s}, 'vendor': {dtype: TFLOP/s}} that harness.measure takes."""
  return {"measured": {d: v["tflops"] for d, v in measured.items()},
          "vendor": dict(vendor.get("tflops") or {})}

