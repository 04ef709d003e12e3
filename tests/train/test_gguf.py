"""A `.gguf` base model's header is read before anything else (issue 31, item 4): a damaged or
truncated file, with the right magic, is refused in one line naming the param, where transformers
stopped with `struct.error` and "Exception ignored" tracebacks at exit."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, problem_lines

from nep.train.gguf import check_gguf, read_header, smollm2_path
from nep.util.errors import NepError


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def small_gguf(path: Path) -> Path:
    """A whole GGUF v3 file: three metadata values (a string, an integer, an array of strings) and
    one 4x2 float32 tensor."""
    meta = [
        _string("general.architecture") + struct.pack("<I", 8) + _string("llama"),
        _string("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", 32),
        _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + _string("a") + _string("b"),
    ]
    tensor = _string("w") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2) + struct.pack("<IQ", 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(meta)) + b"".join(meta) + tensor
    header += b"\0" * (-len(header) % 32)
    path.write_bytes(header + struct.pack("<8f", *range(8)))
    return path


def test_a_whole_file_is_read(tmp_path):
    header = read_header(small_gguf(tmp_path / "m.gguf"))
    assert header == {"version": 3, "tensors": 1,
                      "metadata": {"general.architecture": "llama", "general.alignment": 32,
                                   "tokenizer.ggml.tokens": 2}}


def test_every_truncation_and_damage_is_refused_in_one_line_naming_the_param(tmp_path):
    whole = small_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    for size in range(4, len(whole)):  # the magic is right in each
        cut.write_bytes(whole[:size])
        with pytest.raises(NepError) as error:
            check_gguf(cut, "generate.predictors.base.model")
        line = str(error.value)
        assert "\n" not in line and "generate.predictors.base.model: not a whole GGUF file: " in line, (size, line)
    damaged = bytearray(whole)
    damaged[4:8] = struct.pack("<I", 99)
    cut.write_bytes(bytes(damaged))
    with pytest.raises(NepError, match=r"GGUF version 99"):
        check_gguf(cut)
    damaged = bytearray(whole)
    damaged[8:16] = struct.pack("<Q", 1 << 60)  # a tensor count no file holds
    cut.write_bytes(bytes(damaged))
    with pytest.raises(NepError, match=r"the tensor count .* is not a plausible count"):
        check_gguf(cut)
    cut.write_bytes(b"GGML" + whole[4:])
    with pytest.raises(NepError, match=r"not a GGUF file"):
        check_gguf(cut)


@pytest.mark.slow  # a finetune process (torch, transformers): seconds; the check itself is tested above
def test_the_finetune_stage_refuses_a_truncated_gguf_in_one_line(tmp_path):
    """The reproduction: `finetune.base_model` a .gguf with the right magic and a truncated header.
    The real SmolLM2 file cut short when the wheel is installed, else the small file."""
    real = smollm2_path()
    whole = real.read_bytes()[:5000] if real else small_gguf(tmp_path / "w.gguf").read_bytes()[:60]
    (tmp_path / "broken.gguf").write_bytes(whole)
    (tmp_path / "data" / "split").mkdir(parents=True)
    (tmp_path / "data" / "split" / "train.jsonl").write_text('{"id": "a", "prompt": "p", "completion": "c"}\n')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"finetune": {"base_model": "broken.gguf"}}))
    done = subprocess.run([sys.executable, "-m", "stages.finetune"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    lines = [line for line in problem_lines(done.stderr) if not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1 and lines[0].startswith(
        "finetune: broken.gguf: finetune.base_model: not a whole GGUF file: truncated: "), done.stderr
