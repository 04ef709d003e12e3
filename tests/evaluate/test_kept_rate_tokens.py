"""kept_rate's regex tokenizer equals a character-by-character reading of tokenize.rs (the
implementation it replaced, kept here as the reference), on random text mixing every character class, Unicode
whitespace and digits, case changes, underscore runs and operators, and on nep's own sources."""

from __future__ import annotations

import random
from pathlib import Path

from nep.evaluate.kept_rate import MULTI_CHAR_PUNCTUATION, _identifier_tokens, tokenize
from nep.evaluate.zed import WHITESPACE

IDENTIFIER, NEWLINE, SPACE, PUNCTUATION = range(4)


def _class(c: str) -> int:
    if c in "\n\r":
        return NEWLINE
    if c in WHITESPACE:
        return SPACE
    return IDENTIFIER if c.isalnum() or c == "_" else PUNCTUATION


def reference_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        kind = _class(text[i])
        if kind == PUNCTUATION:
            token = next((p for p in MULTI_CHAR_PUNCTUATION if text.startswith(p, i)), text[i])
            tokens.append(token)
            i += len(token)
            continue
        end = i + 1
        while end < len(text) and _class(text[end]) == kind:
            end += 1
        tokens.extend(_identifier_tokens(text[i:end]) if kind == IDENTIFIER else [text[i:end]])
        i = end
    return tokens


PIECES = [*"abcXYZ_09 \t\n\r.,:;=<>!?*&|+-/%^()[]{}\"'", "\u00e9", "\u0130", "\u2003", "\x85", "\u00a0",
          "\u3000", "\u2028", "\u0660", "\u00b2", "\u2167", "\u01c5", "\u00df", "\u03a3", "\u200b", "\ufeff",
          *MULTI_CHAR_PUNCTUATION, "HTTPServer", "getURL", "ABCdef", "__init__", "x2Y", "aB_Cd"]


def test_the_regex_tokenizer_equals_the_character_loop():
    rng = random.Random(0)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60))) for _ in range(5000)]
    texts += [p.read_text() for p in sorted(Path(__file__).parents[2].glob("nep/**/*.py"))]
    for text in texts:
        assert tokenize(text) == reference_tokens(text), text
