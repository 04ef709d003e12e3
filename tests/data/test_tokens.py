"""Offline tiktoken encodings: the fast path builds exactly tiktoken's own encoding."""

from __future__ import annotations

import shutil

import pytest
import tiktoken
from tiktoken_ext import openai_public

from nep.data import tokens


@pytest.fixture
def tiktoken_cache(tmp_path, monkeypatch):
    """A tiktoken cache holding only the o200k BPE file (copied from nep's, else converted)."""
    original = tokens.ensure_bpe_file("o200k_base")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    shutil.copy(original, tmp_path / original.name)
    return tmp_path


def test_encoding_equals_tiktokens_own_and_its_ranks_copy_is_reused(tiktoken_cache):
    ours = tokens.get_encoding.__wrapped__("o200k_base")
    copies = list(tiktoken_cache.glob("*.ranks.marshal"))
    assert len(copies) == 1
    theirs = tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS["o200k_base"]())
    assert ours.name == theirs.name
    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    assert ours._mergeable_ranks == theirs._mergeable_ranks
    text = "def f(x):\n    return x + 1  # ünïcode → 🙂 <|endoftext|>\n"
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)

    copies[0].write_bytes(b"not marshal data")  # a damaged copy is rebuilt, never trusted
    again = tokens.get_encoding.__wrapped__("o200k_base")
    assert again._mergeable_ranks == theirs._mergeable_ranks
    assert copies[0].read_bytes() != b"not marshal data"


def test_the_fast_path_still_reaches_tiktokens_internals():
    """The ranks copy relies on tiktoken's constructors reading `openai_public.load_tiktoken_bpe`
    when called; this fails when a tested tiktoken release stops doing so (then narrow
    FAST_PATH_TIKTOKEN, and the public path is taken)."""
    assert tokens.fast_path_supported(), "tiktoken outside FAST_PATH_TIKTOKEN: the public path is used"
    calls = []
    real = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = lambda url, expected_hash=None: calls.append(url) or {b"a": 0}
    try:
        openai_public.ENCODING_CONSTRUCTORS["o200k_base"]()
    finally:
        openai_public.load_tiktoken_bpe = real
    assert calls, "tiktoken's constructor no longer reads openai_public.load_tiktoken_bpe"
