"""The model side of fine-tuning: the `finetune:` params, the backend and base model (checked
before anything is paid for), markers as special tokens, LoRA wrapping (transformers + peft, or
unsloth), saving the adapter reproducibly and loading it back for generation.

The four markers are added to the tokenizer as special tokens; the embeddings grow to fit them and
the new rows (input and output) start at the mean of the other rows. This is deterministic, so
`load_finetuned` rebuilds the same embeddings before putting the adapter on top.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

from nep.config.schema import TINY_MODEL, Finetune, Format
from nep.core.prompts import MARKERS
from nep.train.attention import use_cpu_gqa
from nep.train.gguf import check_gguf, is_gguf, resolve_model
from nep.train.tiny import (
    build_tiny_model,  # logs SMOKE_WARNING
)
from nep.util import device as nep_device
from nep.util.device import resolve_device, resolve_dtype, weights_dtype
from nep.util.errors import NepError

log = logging.getLogger(__name__)

METADATA_FILE = "nep_finetune.json"
TINY_BASE_DIR = "base"  # models/finetune/base: the tiny base model (it cannot be downloaded)
MERGED_DIR = "merged"  # models/finetune/merged: base + adapter merged, when `merge: true`
EMBEDDING_MODULES = ["embed_tokens", "lm_head"]
BACKENDS = ("auto", "unsloth", "hf")
S = TypeVar("S")



# ---------------------------------------------------------------- backend and base model


def resolve_backend(name: str) -> str:
    """`auto` → `unsloth` when CUDA and an importable unsloth are present, else `hf`. An explicit
    `unsloth` without CUDA or without the package fails here, before any loading. unsloth is
    imported here (it must come before transformers to patch it)."""
    if name not in BACKENDS:
        raise ValueError(f"finetune.backend: unknown {name!r}; choose from {BACKENDS}")
    cuda = nep_device.cuda_available()
    if name == "hf" or (name == "auto" and not cuda):
        return "hf"
    if not cuda:
        raise NepError(
            "finetune.backend: unsloth needs a CUDA GPU and none is visible; set finetune.backend to hf (or auto)"
        )
    try:
        import unsloth  # noqa: F401
    except Exception as e:  # ImportError, or unsloth's own errors when it cannot run here
        if name == "auto":
            log.info("unsloth not usable (%s); using the hf backend", e)
            return "hf"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NepError(
            f"finetune.backend: unsloth cannot be imported ({reason}); "
            "pip install -r requirements-gpu.txt, or set finetune.backend to hf"
        ) from None
    return "unsloth"


def check_base_model(name: str) -> None:
    """Fail before training when `finetune.base_model` is neither tiny-random, a local directory,
    a local .gguf file (with the expected sha256 when nep knows the file), nor a model the hub (or
    its local cache) can provide."""
    if name == TINY_MODEL or Path(name).is_dir():
        return
    if is_gguf(name):
        check_gguf(name, "finetune.base_model")  # exists, and is the file its name promises
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except OSError as e:  # not found, offline, gated: transformers raises OSError
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NepError(
            f"finetune.base_model: {name!r} is not a local directory and cannot be fetched from the "
            f"Hugging Face hub ({reason}); check the id and the network (or HF_HUB_OFFLINE and the cache), "
            "or give a local path"
        ) from None


def build_base(records: list[dict[str, Any]], out_dir: Path, cfg: Finetune, *, write: bool = True) -> str | Path:
    """The base model to load: the hub id/path, or for tiny-random the smoke model built under
    out_dir/base from the training texts (only its path when `write` is false: another process
    of the same run builds it)."""
    if not cfg.is_tiny:
        return cfg.base_model
    if not write:
        return Path(out_dir) / TINY_BASE_DIR

    texts = [r["prompt"] + r["completion"] for r in records if isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str)]
    t = cfg.tiny
    return build_tiny_model(
        texts or [""], out_dir / TINY_BASE_DIR, vocab_size=t.vocab_size, hidden_size=t.hidden_size,
        num_layers=t.num_layers, num_heads=t.num_heads, max_position_embeddings=max(t.max_seq_length, 128), seed=cfg.seed,
    )


def prepare_model(base: str | Path, cfg: Finetune, backend: str):
    """(peft model with markers and LoRA, tokenizer) for the resolved backend."""
    return prepare_unsloth(base, cfg) if backend == "unsloth" else prepare_hf(base, cfg)


# ---------------------------------------------------------------- tokenizer and embeddings


def add_markers(tokenizer, model=None) -> list[int]:
    """Add the four markers as special tokens (and a pad token if missing); check that each
    encodes to exactly one id; when `model` is given, grow its embeddings if the vocabulary
    outgrew them and set the marker rows (input and output) to the mean of the other rows.
    Returns the marker ids, in MARKERS order. With `model`, the tokenizer's EOS is first aligned
    with the model's (`align_eos`)."""
    if model is not None:
        align_eos(tokenizer, model)
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {tokenizer.name_or_path!r} has no EOS token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.add_tokens(list(MARKERS), special_tokens=True)
    ids = []
    for marker in MARKERS:
        encoded = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"marker {marker!r} encodes to {len(encoded)} tokens, not 1: {encoded}")
        ids.append(encoded[0])
    if model is not None:
        _init_marker_embeddings(model, len(tokenizer), ids)
    return ids


def _init_marker_embeddings(model, vocab_size: int, marker_ids: list[int]) -> None:
    import torch

    old_rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size > old_rows:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    markers = set(marker_ids)
    keep = [i for i in range(old_rows) if i not in markers]
    with torch.no_grad():
        matrices = [model.get_input_embeddings().weight]
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != matrices[0].data_ptr():
            matrices.append(out.weight)
        for w in matrices:
            w[marker_ids] = w[keep].float().mean(dim=0).to(w.dtype)


# ---------------------------------------------------------------- EOS


def model_eos_ids(model) -> list[int]:
    """The end-of-sequence ids the model itself declares: its generation config's, then its
    config's (either may be one id or a list), in that order, without repeats."""
    ids: list[int] = []
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        eos = getattr(source, "eos_token_id", None)
        for i in eos if isinstance(eos, list) else [eos]:
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def turn_end_id(tokenizer) -> int | None:
    """The special token the tokenizer's chat template writes right after a message's content
    (`<|im_end|>`, `<|eot_id|>`...), or None (no template, or plain text follows)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    probe = "nep-eos-probe"
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": probe}], tokenize=False)
    except Exception:  # a template that needs other roles or arguments
        return None
    if not isinstance(rendered, str) or probe not in rendered:
        return None
    rest = rendered[rendered.index(probe) + len(probe) :]
    ids = tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return ids[0] if ids and ids[0] in special else None


def align_eos(tokenizer, model) -> int | None:
    """Make the tokenizer's EOS the model's: nep ends every training completion with
    `tokenizer.eos_token` and stops generation at it, so it must be a token the model declares as
    its end (config/generation config `eos_token_id`). A tokenizer that disagrees (SmolLM2's
    converted from GGUF says `<|im_start|>`, id 1, while the model says `<|im_end|>`, id 2) is set
    to the model's EOS: the chat template's end-of-turn token when it is one of the model's ids,
    else the model's first. A model that declares no EOS keeps the tokenizer's. Returns the EOS id."""
    declared = model_eos_ids(model)
    current = tokenizer.eos_token_id
    if not declared or current in declared:
        return current
    turn_end = turn_end_id(tokenizer)
    chosen = turn_end if turn_end in declared else declared[0]
    token = tokenizer.convert_ids_to_tokens(chosen)
    if not isinstance(token, str) or chosen >= len(tokenizer):
        raise ValueError(f"the model's EOS id {chosen} is not in the tokenizer of {tokenizer.name_or_path!r}")
    log.warning(
        "tokenizer EOS %r (id %s) is not the model's (eos_token_id %s); using %r (id %d)",
        tokenizer.eos_token, current, declared, token, chosen,
    )
    tokenizer.eos_token = token
    return chosen


# ---------------------------------------------------------------- models


def load_base_hf(base: str | Path, *, device: str | None = None, dtype=None, trust_remote_code: bool = False):
    """Base model and tokenizer through transformers (`base`: a hub id, a local directory, or a local
    .gguf file, see nep.train.gguf), in `nep.util.device.resolve_dtype(dtype, device)` (auto: bf16 on
    a GPU that has it, fp16 on an older one, fp32 on the CPU), the tokenizer's EOS aligned with the
    model's (`align_eos`). The model is left on the CPU; callers (the trainer, `load_finetuned`) move it.
    For the CPU, attention switches to nep.train.attention's grouped-query kernel (same numbers, faster)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    base = resolve_model(base)  # a .gguf file: its dequantized copy in nep's cache
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code
    )
    align_eos(tokenizer, model)
    use_cpu_gqa(model, device)  # on the CPU, grouped heads without copying the cache (same numbers, faster)
    return model, tokenizer


def ties_embeddings(model) -> bool:
    """Whether the model's output layer shares its weight with the input embeddings (SmolLM2,
    Qwen2.5-0.5B...: `tie_word_embeddings`)."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and inp is not None and out.weight.data_ptr() == inp.weight.data_ptr()


def lora_config(cfg: Finetune, *, tied: bool = False):
    """peft LoraConfig from the params (embeddings trained fully via modules_to_save). With `tied`
    embeddings, peft's `ensure_weight_tying` gives `lm_head` the trained copy of `embed_tokens`
    (one matrix trained, as in the base model; merging keeps them tied), instead of two copies
    that drift apart."""
    from peft import LoraConfig

    return LoraConfig(
        ensure_weight_tying=tied and cfg.train_embeddings,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(EMBEDDING_MODULES) if cfg.train_embeddings else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def prepare_hf(base: str | Path, cfg: Finetune, device: str | None = None):
    """transformers + peft: base model, markers, LoRA. Returns (peft model, tokenizer)."""
    import torch
    from peft import get_peft_model

    model, tokenizer = load_base_hf(base, device=device,
                                    dtype=weights_dtype(resolve_device(device), cfg.precision))
    check_target_modules(model, cfg.target_modules, str(base))
    add_markers(tokenizer, model)
    torch.manual_seed(cfg.seed)  # LoRA A matrices start random
    return get_peft_model(model, lora_config(cfg, tied=ties_embeddings(model))), tokenizer


def check_target_modules(model, targets: list[str], name: str, param: str = "finetune.target_modules") -> None:
    """NepError naming `param` when a target matches no module of `model` (peft matches a target
    against the end of a module's dotted name), listing the model's linear layers; peft would stop
    with its own error when none matches, and ignore the others."""
    import torch

    names = [n for n, _ in model.named_modules() if n]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise NepError(f"{', '.join(map(repr, unknown))} names no module of {name} (its linear layers: "
                       f"{', '.join(linear)})", param=param)


def prepare_unsloth(base: str | Path, cfg: Finetune):
    """unsloth (GPU only): FastLanguageModel.from_pretrained + get_peft_model, markers added in
    between. unsloth is imported here, lazily. Returns (peft model, tokenizer)."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base),
        max_seq_length=cfg.effective_max_seq_length,
        dtype=None if cfg.precision == "auto" else resolve_dtype(weights_dtype("cuda", cfg.precision)),
        load_in_4bit=cfg.load_in_4bit,
    )
    add_markers(tokenizer, model)
    targets = list(cfg.target_modules) + (list(EMBEDDING_MODULES) if cfg.train_embeddings else [])
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=cfg.seed,
        max_seq_length=cfg.effective_max_seq_length,
    )
    return model, tokenizer


# ---------------------------------------------------------------- saving and loading


def save_finetuned(model, tokenizer, out_dir: str | Path, metadata: dict[str, Any], *, merge: bool = False) -> None:
    """Adapter (PEFT format), tokenizer (with the markers) and METADATA_FILE into `out_dir`;
    with `merge`, also the merged model under out_dir/merged. Same training → same bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The base embeddings (grown by the markers) are rebuilt exactly by `load_finetuned`, so peft's
    # copy of them (its default once the vocabulary grew) is left out: the trained rows are in the
    # adapter's modules_to_save, and the adapter stays small.
    model.save_pretrained(out_dir, save_embedding_layers=False)
    _canonical_adapter_config(out_dir / "adapter_config.json")
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's blank model card, stamped with its version
    tokenizer.save_pretrained(out_dir)
    if merge:
        merged = model.merge_and_unload()
        merged.save_pretrained(out_dir / MERGED_DIR)
        tokenizer.save_pretrained(out_dir / MERGED_DIR)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _canonical_adapter_config(path: Path) -> None:
    """The same training gives byte-identical outputs (and DVC hashes) across runs and peft
    releases: PEFT writes set-valued fields (target_modules...) in hash order, which changes from
    run to run (sorted here), stamps its version (`peft_version`, dropped), and each release adds
    options it writes as null (dropped where null is the option's default, so loading reads them
    the same)."""
    import dataclasses

    from peft import LoraConfig

    defaults = {f.name: f.default for f in dataclasses.fields(LoraConfig)}
    config = json.loads(path.read_text())
    config.pop("peft_version", None)
    for key, value in list(config.items()):
        if value is None and key in defaults and defaults[key] is None:
            del config[key]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; is {model_dir} the output of the finetune stage?")
    return json.loads(path.read_text())


def _format_keys(values: dict[str, Any]) -> dict[str, Any]:
    """What of recorded `process.format` values (AnswerFormat.option_values) shapes prompts and answers,
    every key filled with its default (keys this nep does not know left out); `region_lines` only for
    `region`."""
    keys = Format.model_validate({k: v for k, v in values.items() if k in Format.model_fields}).model_dump()
    if keys["answer"] != "region":
        keys.pop("region_lines")
    return keys


def format_options(fmt) -> dict[str, Any]:
    """The `process.format` keys of an answer format (nep.core.formats.AnswerFormat), as _format_keys."""
    return _format_keys(fmt.option_values())


def trained_format(model_dir: str | Path) -> dict[str, Any]:
    """The answer format a finetuned model_dir was trained in (format_options' keys): its metadata's
    `answer_format`, the paper's whole version when absent (as finetune writes it)."""
    return _format_keys(read_metadata(model_dir).get("answer_format") or {})


def check_trained_format(model_dir: str | Path, fmt, param: str) -> None:
    """NepError (naming `param`) when model_dir records another answer format than `fmt` (the run's):
    its answers would be asked and read in a shape it was not trained in. A directory without
    nep's metadata (not the finetune stage's) is left to whatever loads it."""
    if not (Path(model_dir) / METADATA_FILE).is_file():
        return
    trained, asked = trained_format(model_dir), format_options(fmt)
    if trained != asked:
        order = list(Format.model_fields)
        differ = ", ".join(f"{k}: {trained.get(k)!r} trained, {asked.get(k)!r} asked"
                           for k in sorted(trained.keys() | asked.keys(), key=order.index)
                           if trained.get(k) != asked.get(k))
        raise NepError(f"{param}: {model_dir} was trained in another answer format than this run asks for ({differ}): "
                       "set process.format (or the predictor's `format`) to the model's, or rerun finetune")


def base_model_path(model_dir: str | Path, metadata: dict[str, Any]) -> str:
    """Where the base model of a finetuned model_dir loads from (tiny-random: model_dir/base)."""
    if metadata["base_model"] == TINY_MODEL:
        return str(Path(model_dir) / TINY_BASE_DIR)
    return metadata["base_model"]


def load_finetuned(model_dir: str | Path, *, device: str | None = None, dtype=None, merge: bool = False):
    """Load the finetune stage's output for generation: the base model (from the hub id or path
    in its metadata, or model_dir/base for tiny-random) with the markers' embeddings rebuilt
    exactly as in training, and the LoRA adapter on top, in eval mode on `device` (auto: cuda when
    available, else cpu; dtype auto as in `nep.util.device.resolve_dtype`).

    Returns (model, tokenizer): a `peft.PeftModel` wrapping a transformers causal LM (with `merge`,
    the adapter merged into a plain transformers model: the same function up to float rounding,
    and faster, with no LoRA side path in every layer), and the tokenizer saved with the adapter
    (markers included) with `padding_side="left"` for batched generation. Generate from `tokenizer(prompt)` (special tokens on, as in training); the model
    ends a prediction with `tokenizer.eos_token_id`.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    device = resolve_device(device)
    # the smoke model is warned about once, where it is built (finetune), and named in the report
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base, _ = load_base_hf(base_model_path(model_dir, metadata), device=device, dtype=dtype)
    add_markers(tokenizer, base)
    model = PeftModel.from_pretrained(base, model_dir)
    if merge:
        model = model.merge_and_unload()
    model.to(device).eval()
    tokenizer.padding_side = "left"
    return model, tokenizer
