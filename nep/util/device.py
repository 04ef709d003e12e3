"""The one home for device, dtype and CPU thread policy (training and generation alike).

- device "auto": cuda when available, else cpu.
- dtype "auto": bfloat16 on a CUDA GPU that supports it, float16 on an older CUDA GPU, float32 on
  the CPU. Training's mixed precision follows it unless `finetune.precision` says otherwise
  (`mixed_precision`: bf16 autocast on the CPU when asked).
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


def mixed_precision(device: str, requested: str = "auto") -> str:
    """Training precision for `device` as `finetune.precision` asks: "bf16", "fp16" or "no" (fp32).
    auto: "bf16" or "fp16" on a CUDA GPU (as resolve_dtype picks), "no" on the CPU. bf16 on the CPU
    is torch's autocast over fp32 weights (fast where the CPU has bf16 instructions, avx512_bf16 or
    AMX; possibly slower elsewhere, not measured). NepError naming the param for what the device cannot do."""
    from nep.util.errors import NepError

    if requested == "fp32":
        return "no"
    if not device.startswith("cuda"):
        if requested == "fp16":
            raise NepError("fp16 training needs a CUDA GPU; on the CPU use bf16 or fp32", param="finetune.precision")
        return "bf16" if requested == "bf16" else "no"
    import torch

    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise NepError("this GPU has no bf16; use fp16 or auto", param="finetune.precision")
    return requested


def weights_dtype(device: str, requested: str = "auto") -> str:
    """The dtype training loads the base model in for `finetune.precision`: auto as resolve_dtype;
    on a GPU bf16/fp16 weights for bf16/fp16 and fp32 for fp32; on the CPU always fp32 (bf16 there
    is autocast: the weights and the LoRA matrices stay fp32)."""
    if requested == "auto" or not device.startswith("cuda"):
        return "auto"
    return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[requested]


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
