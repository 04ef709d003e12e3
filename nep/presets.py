"""`python -m nep.presets NAME`: apply presets/NAME.yaml over the committed params.yaml (nep/config/presets.py)."""

from nep.config.presets import main

if __name__ == "__main__":
    main()
