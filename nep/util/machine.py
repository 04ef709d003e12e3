"""The machine a measurement ran on, in one line: the CPU model and the threads used, or the GPU.

Only for measured times (metrics/timing/): a host's description never goes into a DVC output.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path


@cache
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpu_name(device: str) -> str:
    """The name torch gives the CUDA device `device` ("cuda", "cuda:1"), else ""."""
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
    except (ImportError, RuntimeError, AssertionError):
        pass
    return ""


def describe(device: str, threads: int | None = None) -> str:
    """"<GPU name> (cuda)" on a GPU; "<CPU model>, N threads" on the CPU (N: `threads`, else the
    usable cores); other devices ("remote", an endpoint) are named as given."""
    from nep.util.device import usable_cores

    if device.startswith("cuda"):
        return f"{gpu_name(device) or 'CUDA GPU'} ({device})"
    if device == "cpu":
        n = threads or usable_cores()
        return f"{cpu_model()}, {n} thread{'s' if n != 1 else ''}"
    return device
