"""What machine a benchmark ran on: CPU model and cores, accelerator name and count, load."""
from __future__ import annotations

import os
import platform
from typing import Optional

import jax


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
  """The CPU's marketing name ('model name' in /proc/cpuinfo; platform.processor() elsewhere)."""
  try:
    with open(cpuinfo, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
          return value.strip()
  except OSError:
    pass
  return platform.processor() or None


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity mask), else the machine's count."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def describe() -> dict:
  """Backend, devices, CPU and load of this machine, and a one-line `name` for the tables."""
  devices = jax.devices()
  first = devices[0]
  cpu = cpu_model()
  cores = usable_cores()
  info = {
      "backend": jax.default_backend(),
      "device_kind": first.device_kind,
      "device_count": len(devices),
      "process_count": jax.process_count(),
      "cpu_model": cpu,
      "cpu_cores": cores,
      "cpu_count_os": os.cpu_count(),
      "load_average_1m": _load_average(),
      "jax": jax.__version__,
      "python": platform.python_version(),
  }
  if first.platform == "cpu":
    info["name"] = f"{cpu or 'unknown CPU'}, {cores} core{'s' if cores != 1 else ''}"
    info["accelerator"] = None
  else:
    info["accelerator"] = first.device_kind
    info["name"] = f"{len(devices)} x {first.device_kind} ({first.platform}); host {cpu}"
  return info


def _load_average() -> Optional[float]:
  try:
    return round(os.getloadavg()[0], 2)
  except (AttributeError, OSError):
    return None
