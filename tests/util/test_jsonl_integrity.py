"""nep.util.jsonl's integrity check: a file against the size and hash its producer recorded."""

from __future__ import annotations

import xxhash

from nep.util.jsonl import damage, file_xxh3


def test_damage_names_what_differs(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 1000)
    expected = {"bytes": 9000, "xxh3": xxhash.xxh3_128_hexdigest(path.read_bytes())}
    assert file_xxh3(path) == expected["xxh3"] and damage(path, expected) is None
    path.write_bytes(b'{"a": 2}\n' + b'{"a": 1}\n' * 999)  # same size, one byte flipped
    assert damage(path, expected) == "its content hash differs from the one written"
    path.write_bytes(b'{"a": 1}\n' * 999)
    assert damage(path, expected) == "8991 bytes, 9000 when written"
    path.unlink()
    assert damage(path, expected) == "missing"
