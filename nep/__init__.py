"""nep: next edit prediction from commit history, as a DVC pipeline."""

__version__ = "0.1.0"
