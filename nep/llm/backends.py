"""The registry of chat LLM backends, and `get_backend`: a backend by name, wearing the response
cache (nep.llm.cache) unless told not to. The interface is nep.llm.client's (types: nep.llm.chat)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from nep.llm.cache import CachedBackend
from nep.util.registry import Registry

BACKENDS = Registry("LLM backend", {"openai": "nep.llm.client:OpenAIBackend"})


def get_backend(name: str, *, cache: bool = True, accept: Callable[[str], bool] | None = None,
                **config: Any) -> Any:
    """The backend registered under `name`, built with `config` (unknown keys raise TypeError) and,
    unless `cache` is false, wrapped in the response cache (nep.llm.cache.CachedBackend), which
    stores and serves only answers `accept` takes (every answer without it)."""
    cls = BACKENDS.get(name)
    try:
        backend = cls(**config)
    except TypeError as e:
        raise TypeError(f"LLM backend '{name}': {e}") from e
    return CachedBackend(backend, accept=accept) if cache else backend


def backend_config(params: dict[str, Any], name: str = "openai") -> dict[str, Any]:
    """The keys of a stage's params section that `get_backend(name, ...)` takes."""
    names = {f.name for f in fields(BACKENDS.get(name)) if f.init} | {"cache"}
    return {k: v for k, v in params.items() if k in names}
