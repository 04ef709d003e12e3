"""nep: next edit prediction from commit history, as a DVC pipeline."""

# OpenMP reads its wait policy once, when torch loads it; importing nep.device sets a passive one
# (unless the environment sets a policy) before any nep code can load torch. See nep/device.py.
from nep import device as _device  # noqa: F401

__version__ = "0.1.0"
