"""Keeping an API key out of every file: its header-safety check, every written form of it, and
scrubbing it from texts and from the HTTP libraries' log records."""

from __future__ import annotations

import contextlib
import json
import logging
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator


def header_problem(value: str) -> str | None:
    """What makes `value` unsendable as an HTTP header value (printable ASCII only), else None;
    describes the character and its position, never the value."""
    for i, ch in enumerate(value):
        if not " " <= ch <= "~":
            name = unicodedata.name(ch, "") or {"\r": "CARRIAGE RETURN", "\n": "LINE FEED", "\t": "TAB"}.get(ch, "")
            return f"U+{ord(ch):04X}{f' ({name.lower()})' if name else ''} at character {i + 1} of {len(value)}"
    return None


def secret_forms(*secrets: str) -> tuple[str, ...]:
    """Every form in which a secret could be written: raw, JSON- and repr-escaped (str and bytes),
    URL-quoted; longest first, so a longer form is replaced before a shorter one inside it."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret.strip()) < 4:  # "EMPTY"-like placeholders and blanks are no secret
            continue
        forms.update({secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                      repr(secret)[1:-1], repr(secret.encode("utf-8", "replace"))[2:-1],
                      urllib.parse.quote(secret), urllib.parse.quote(secret, safe=""),
                      urllib.parse.quote_plus(secret), urllib.parse.quote_plus(secret, safe="")})
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of a secret (see `secret_forms`) replaced by `***`."""
    for form in secrets:
        if form in text:
            text = text.replace(form, "***")
    return text


class _ScrubFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


LIBRARY_LOGGERS = ("openai", "httpx", "httpx2", "httpcore")


@contextlib.contextmanager
def scrubbed_logs(secrets: tuple[str, ...]) -> Iterator[None]:
    """While the block runs, every log record that reaches a handler of the root logger or of the
    HTTP libraries' loggers (the openai client's children included, which propagate there) is
    scrubbed of `secrets`."""
    if not secrets:
        yield
        return
    scrubber = _ScrubFilter(secrets)
    handlers = {h for name in ("", *LIBRARY_LOGGERS) for h in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(scrubber)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(scrubber)
