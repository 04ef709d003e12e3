"""The one home for device, dtype and CPU thread policy (training and generation alike).

- device "auto": cuda when available, else cpu.
- dtype "auto": bfloat16 on a CUDA GPU that supports it, float16 on an older CUDA GPU, float32 on
  the CPU.
- threads: torch's default team (one OpenMP thread per core) spins while it waits for a core, and
  collapses when other work shares a small machine. OpenMP (libgomp) reads its wait policy once,
  when torch loads it, so importing this module sets `OMP_WAIT_POLICY=PASSIVE` (unless the
  environment sets a policy); `nep/__init__.py` imports it, so it is set before nep loads torch.
  `configure_threads` then sets the count (0 = auto: torch's own count, within the usable cores).
"""

from __future__ import annotations

import os
from typing import Any

# Before any torch import in this process: a waiting OpenMP thread sleeps instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str | None = "auto") -> str:
    if device and device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def resolve_dtype(dtype: Any = "auto", device: str = "cpu") -> Any:
    """A torch dtype from "auto", a name ("bfloat16", "float32"...) or a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (auto, bfloat16, float16, float32)")
    return value


def mixed_precision(device: str) -> str:
    """Training precision for `device`: "bf16" or "fp16" on a CUDA GPU (as resolve_dtype picks),
    "no" on the CPU."""
    if not device.startswith("cuda"):
        return "no"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def distributed_state():
    """accelerate's PartialState for this process (one process, or one of several under
    `accelerate launch`/torchrun): on a machine without CUDA it is created for the CPU, so several
    processes form a gloo group (DistributedType.MULTI_CPU) instead of each running alone."""
    from accelerate import PartialState

    return PartialState(cpu=not cuda_available())


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_threads() -> int:
    """torch's own thread count (its physical cores, or OMP_NUM_THREADS) within the usable cores.
    With passive waiting the full team is as fast as one thread on an idle machine or faster, and
    faster under load (benchmarks/threads_under_load.py)."""
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores()))


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads (0 = auto_threads()); returns the count used. The passive
    wait policy is set when this module is imported (see the module docstring)."""
    import torch

    n = threads if threads > 0 else auto_threads()
    torch.set_num_threads(n)
    return n
