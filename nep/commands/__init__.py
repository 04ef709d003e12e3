"""The commands of `nep <command>` (nep/cli.py): the top floor beside stages/, free to import any phase."""
