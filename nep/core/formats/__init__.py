"""Answer formats (`process.format.answer`): what the model is asked, what it is trained to write, and how its
answer becomes the full next version (the interface: nep.core.formats.base.AnswerFormat).

- ``whole``: the complete next version, the paper's (the default).
- ``region``: only an editable region around the edit history's last change, as Zed's Zeta.
- ``blocks``: only the changed lines, as ORIGINAL/UPDATED search-replace blocks.

A new format is one module with an AnswerFormat subclass and one line in FORMATS.
"""

from __future__ import annotations

from typing import Any

from nep.core.formats.base import AnswerFormat, Applied, Unrepresentable, Versions
from nep.util.registry import Registry

FORMATS: dict[str, str] = {
    "whole": "nep.core.formats.whole:Whole",
    "region": "nep.core.formats.region:Region",
    "blocks": "nep.core.formats.blocks:Blocks",
}

__all__ = ["FORMATS", "AnswerFormat", "Applied", "Unrepresentable", "Versions", "PAPER", "answer_format", "registry"]


def registry() -> Registry:
    return Registry("process.format.answer", FORMATS)


def answer_format(options: Any = None) -> AnswerFormat:
    """The format the `process.format` params section names (nep.config.schema.Format: `answer`, and the
    options formats read); None: the paper's whole version."""
    if options is None:
        return PAPER
    return registry().get(options.answer)(options)


def _paper() -> AnswerFormat:
    from nep.core.formats.whole import Whole

    return Whole()


PAPER: AnswerFormat = _paper()  # the whole next version after every section: the paper's prompt and answer
