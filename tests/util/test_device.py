"""nep.util.device: the CPU thread policy and the device/dtype rule."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


def python(code: str, **env: str) -> str:
    """stdout of `python -c code` in a fresh process (the wait policy is read once per process)."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**base, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_passive_waiting_is_set_before_any_stage_can_load_torch():
    """libgomp reads OMP_WAIT_POLICY when torch loads it: the torch stages must set it on import,
    before torch is in the process."""
    out = python("import os, sys\n"
                 "import stages.finetune, stages.generate, stages.posttrain\n"
                 "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    assert out == "False PASSIVE"


def test_a_wait_policy_from_the_environment_is_kept():
    assert python("import os, nep; print(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


@pytest.mark.slow  # seconds of CPU: the default suite stays under a minute of CPU
def test_auto_threads_is_torchs_count_within_the_usable_cores_and_a_count_is_kept():
    out = python("import torch\n"
                 "from nep.util.device import configure_threads, usable_cores\n"
                 "default = torch.get_num_threads()\n"
                 "print(configure_threads(0) == max(1, min(default, usable_cores())) == torch.get_num_threads(),\n"
                 "      configure_threads(1), torch.get_num_threads())")
    assert out == "True 1 1"


def test_dtype_rule():
    import torch

    from nep.util.device import mixed_precision, resolve_dtype

    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert mixed_precision("cpu") == "no"
