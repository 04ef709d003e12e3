"""`python -m nep <command>`: the same as the `nep` command (nep/cli.py)."""

from nep.cli import main

if __name__ == "__main__":
    main()
