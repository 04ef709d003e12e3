"""The one home for device, dtype and CPU thread policy (training and generation alike).

- device "auto": cuda when available, else cpu.
- dtype "auto": bfloat16 on a CUDA GPU that supports it, float16 on an older CUDA GPU, float32 on
  the CPU.
- threads: torch's default (one OpenMP thread per core, spinning while it waits) collapses when
  other work shares a small machine; `configure_threads` picks a count and a passive wait policy.
"""

from __future__ import annotations

import os
from typing import Any


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
    """Half the usable cores (at least 1, at most 8): leaves room for DVC, data loading and the
    other work on a shared machine, where a full-width OpenMP team stalls on every busy core."""
    return max(1, min(8, usable_cores() // 2))


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads (0 = auto_threads()) and a passive OpenMP wait policy (unless
    the environment sets one). Call before the first torch operation. Returns the count used."""
    n = threads if threads > 0 else auto_threads()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(n)
    return n
