"""nep: next edit prediction from commit history, as a DVC pipeline."""

# OpenMP reads its wait policy once, when torch loads it; importing nep.util.device sets a passive one
# (unless the environment sets a policy) before any nep code can load torch. See nep/util/device.py.
from nep.util import device as _device  # noqa: F401

__version__ = "0.1.0"
