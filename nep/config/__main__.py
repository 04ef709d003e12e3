"""`python -m nep.config [PATH]`: check a params file against the schema (nep/config/schema.py)."""

import sys

from nep.config.schema import main

sys.exit(main())
