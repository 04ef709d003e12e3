"""`python -m nep.preflight`: check what the configured run needs before paying for it (nep/config/preflight.py)."""

import sys

from nep.config.preflight import main

if __name__ == "__main__":
    sys.exit(main())
