"""One thin module per DVC stage; run each as `python -m stages.<name>`.

A requirement missing from the Python that runs a stage (`dvc repro` outside the virtual
environment) ends it in one line saying so, not a traceback (nep.util.cli.guard_requirements)."""

from nep.util.cli import guard_requirements

guard_requirements()
