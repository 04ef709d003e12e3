"""LoRA fine-tuning on next-edit examples: unsloth on a GPU, transformers + peft anywhere.

The training text is the example's prompt (original code, edit diff, current version, then the
`<|next_version|>` line) followed by its completion (the next version) and EOS. The four markers
are special tokens; the loss covers the completion and EOS only. One training loop (accelerate:
one CPU, one GPU, or several GPUs under `accelerate launch`) serves both backends; they differ in
how the model is loaded and wrapped with LoRA.

`load_finetuned` loads what `finetune` saved, for generation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nep.prompts import MARKERS, NEXT
from nep.tiny import SMOKE_WARNING, TINY_MODEL

log = logging.getLogger(__name__)

BACKENDS = ("auto", "unsloth", "hf")
METADATA_FILE = "nep_finetune.json"
TINY_BASE_DIR = "base"  # models/finetune/base: the tiny base model (it cannot be downloaded)
MERGED_DIR = "merged"  # models/finetune/merged: base + adapter merged, when `merge: true`
IGNORE_INDEX = -100  # label of tokens the loss ignores
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EMBEDDING_MODULES = ["embed_tokens", "lm_head"]


@dataclass
class TinyConfig:
    """Sizes of the `tiny-random` smoke model and its own caps, used only when base_model is
    tiny-random: `max_seq_length` replaces the main one, `max_steps` caps the run (as does the
    main `max_steps`). So the offline default stays fast on a CPU while the paper's values remain
    the defaults for real models."""

    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    max_seq_length: int = 4096
    max_steps: int = 6


@dataclass
class FinetuneConfig:
    """The `finetune:` params. Defaults are the paper's values (unsloth LoRA SFT)."""

    backend: str = "auto"
    base_model: str = TINY_MODEL
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    train_embeddings: bool = True  # also train embed_tokens and lm_head (fully), as the paper does
    learning_rate: float = 1e-4
    embedding_learning_rate: float = 1e-5
    epochs: int = 2
    batch_size: int = 1  # per device
    gradient_accumulation_steps: int = 4
    max_seq_length: int = 2048
    overlong: str = "truncate"  # truncate (cut the completion, as SFTTrainer does) | drop
    warmup_steps: int = 5
    weight_decay: float = 0.01
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    max_steps: int = 0  # 0 = no cap; otherwise stop after this many optimizer steps
    seed: int = 3407
    gradient_checkpointing: bool = True  # on a GPU only
    load_in_4bit: bool = False  # unsloth only (QLoRA)
    merge: bool = False  # also save base + adapter merged under models/finetune/merged
    tiny: TinyConfig = field(default_factory=TinyConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FinetuneConfig:
        """From a `finetune:` params dict; unknown keys and bad values raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"finetune: unknown params {unknown}; known: {sorted(known)}")
        values = dict(params)
        tiny = values.pop("tiny", None) or {}
        unknown = sorted(set(tiny) - {f.name for f in fields(TinyConfig)})
        if unknown:
            raise ValueError(f"finetune.tiny: unknown params {unknown}")
        cfg = cls(**values, tiny=TinyConfig(**tiny))
        if cfg.backend not in BACKENDS:
            raise ValueError(f"finetune.backend: {cfg.backend!r} is not one of {BACKENDS}")
        if cfg.overlong not in ("truncate", "drop"):
            raise ValueError(f"finetune.overlong: {cfg.overlong!r} is not 'truncate' or 'drop'")
        return cfg

    @property
    def is_tiny(self) -> bool:
        return self.base_model == TINY_MODEL

    @property
    def effective_max_seq_length(self) -> int:
        return self.tiny.max_seq_length if self.is_tiny else self.max_seq_length

    @property
    def effective_max_steps(self) -> int:
        """The tighter of `max_steps` and (for tiny-random) `tiny.max_steps`; 0 = no cap."""
        caps = [c for c in (self.max_steps, self.tiny.max_steps if self.is_tiny else 0) if c > 0]
        return min(caps, default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- backend and device


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_backend(name: str) -> str:
    """`auto` → `unsloth` when CUDA and an importable unsloth are present, else `hf`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown finetune backend {name!r}; choose from {BACKENDS}")
    if name != "auto":
        if name == "unsloth" and not cuda_available():
            raise RuntimeError("finetune.backend 'unsloth' needs a CUDA GPU; use 'hf' (or 'auto') on a CPU")
        return name
    if not cuda_available():
        return "hf"
    try:
        import unsloth  # noqa: F401  (must be imported before transformers to patch it)
    except Exception as e:  # unsloth raises various errors when it cannot run here
        log.info("unsloth not usable (%s); using the hf backend", e)
        return "hf"
    return "unsloth"


def default_device() -> str:
    return "cuda" if cuda_available() else "cpu"


def default_dtype(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# ---------------------------------------------------------------- tokenizer and embeddings


def add_markers(tokenizer, model=None) -> list[int]:
    """Add the four markers as special tokens (and a pad token if missing); check that each
    encodes to exactly one id; when `model` is given, grow its embeddings if the vocabulary
    outgrew them and set the marker rows (input and output) to the mean of the other rows.

    Deterministic, so loading (`load_finetuned`) rebuilds the same embeddings as training did.
    Returns the marker ids, in MARKERS order.
    """
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
            mean = w[keep].float().mean(dim=0).to(w.dtype)
            w[marker_ids] = mean


# ---------------------------------------------------------------- examples


@dataclass
class EncodeStats:
    examples: int = 0
    used: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    completion_tokens: int = 0


def encode_example(tokenizer, prompt: str, completion: str, max_seq_length: int, overlong: str = "truncate"):
    """Token ids and labels of prompt + completion + EOS, or a drop reason (str).

    The prompt is tokenized on its own, with the tokenizer's special tokens (a BOS where the model
    uses one), exactly as at generation time; its labels are IGNORE_INDEX. Longer than
    `max_seq_length`: `truncate` cuts the completion (losing EOS), `drop` drops the example; an
    example whose prompt alone fills the window is dropped either way.
    Returns (dict(input_ids, labels), truncated: bool) or (reason, False).
    """
    if not prompt.endswith(f"{NEXT}\n"):
        return "prompt_without_next_marker", False
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = False
    if len(prompt_ids) + len(completion_ids) > max_seq_length:
        if len(prompt_ids) >= max_seq_length:
            return "prompt_too_long", False
        if overlong == "drop":
            return "too_long", False
        completion_ids = completion_ids[: max_seq_length - len(prompt_ids)]
        truncated = True
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }, truncated


def encode_examples(
    records: Iterable[dict[str, Any]], tokenizer, max_seq_length: int, overlong: str = "truncate"
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    """Encode processed examples (their `prompt` and `completion`); drops are counted by reason."""
    stats = EncodeStats()
    encoded = []
    for r in records:
        stats.examples += 1
        prompt, completion = r.get("prompt"), r.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            stats.dropped["missing_prompt_or_completion"] += 1
            continue
        result, truncated = encode_example(tokenizer, prompt, completion, max_seq_length, overlong)
        if isinstance(result, str):
            stats.dropped[result] += 1
            continue
        stats.used += 1
        stats.truncated += truncated
        stats.tokens += len(result["input_ids"])
        stats.completion_tokens += sum(1 for x in result["labels"] if x != IGNORE_INDEX)
        encoded.append(result)
    return encoded, stats


def collate(batch: list[dict[str, list[int]]], pad_token_id: int) -> dict[str, Any]:
    """Right-pad a batch: input_ids with the pad id, labels with IGNORE_INDEX, attention mask 0."""
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        input_ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


# ---------------------------------------------------------------- models


def load_base_hf(base: str | Path, *, device: str | None = None, dtype=None, trust_remote_code: bool = False):
    """Base model and tokenizer through transformers (dtype default: default_dtype(device))."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=dtype or default_dtype(device), trust_remote_code=trust_remote_code
    )
    return model, tokenizer


def lora_config(cfg: FinetuneConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(EMBEDDING_MODULES) if cfg.train_embeddings else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def prepare_hf(base: str | Path, cfg: FinetuneConfig, device: str):
    """transformers + peft: base model, markers, LoRA. Returns (peft model, tokenizer)."""
    from peft import get_peft_model

    model, tokenizer = load_base_hf(base, device=device)
    add_markers(tokenizer, model)
    if cfg.gradient_checkpointing and device.startswith("cuda"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(cfg)), tokenizer


def prepare_unsloth(base: str | Path, cfg: FinetuneConfig):
    """unsloth (GPU only): FastLanguageModel.from_pretrained + get_peft_model, markers added in
    between. unsloth is imported here, lazily. Returns (peft model, tokenizer)."""
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base),
        max_seq_length=cfg.effective_max_seq_length,
        dtype=None,
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


# ---------------------------------------------------------------- training loop


def _param_groups(model, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    embedding, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = "lora_" not in name and any(m in name for m in EMBEDDING_MODULES)
        (embedding if is_embedding else other).append(p)
    groups = [{"params": other, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}]
    if embedding:
        groups.append({"params": embedding, "lr": cfg.embedding_learning_rate, "weight_decay": cfg.weight_decay})
    return groups


@dataclass
class TrainResult:
    steps: int
    micro_batches: int
    train_loss: float  # mean loss of the last optimizer step
    mean_loss: float  # mean over all micro-batches
    tokens: int  # non-pad tokens processed (all processes)
    runtime_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.runtime_s if self.runtime_s > 0 else 0.0


def train(
    model,
    examples: list[dict[str, list[int]]],
    cfg: FinetuneConfig,
    *,
    pad_token_id: int,
    accelerator=None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """LoRA training loop: AdamW (embedding rows at their own learning rate), warmup + schedule,
    gradient accumulation and clipping, through accelerate. `on_step(step, values)` is called
    after each optimizer step on the main process (values: train_loss, learning_rate, epoch)."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from tqdm import tqdm
    from transformers import get_scheduler

    if not examples:
        raise ValueError("no training examples left to train on (see the drop counts; raise max_seq_length?)")
    if accelerator is None:
        accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        examples,
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=lambda batch: collate(batch, pad_token_id),
    )
    optimizer = torch.optim.AdamW(_param_groups(model, cfg))
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.effective_max_steps > 0:
        total_steps = min(total_steps, cfg.effective_max_steps)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    model.train()

    step = micro = 0
    tokens = 0
    loss_sum = 0.0
    step_losses: list[float] = []
    last_loss = float("nan")
    bar = tqdm(total=total_steps, desc="finetune", unit="step", disable=not (progress and accelerator.is_main_process))
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        for index, batch in enumerate(loader):
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            micro += 1
            batch_loss = accelerator.gather(loss.detach().float()).mean().item()
            tokens += int(accelerator.gather(batch["attention_mask"].sum()).sum().item())
            loss_sum += batch_loss
            step_losses.append(batch_loss)
            if accelerator.sync_gradients:
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                step += 1
                last_loss = sum(step_losses) / len(step_losses)
                step_losses = []
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}")
                if on_step is not None and accelerator.is_main_process:
                    on_step(step, {"train_loss": last_loss, "learning_rate": lr, "epoch": epoch + (index + 1) / len(loader)})
                if step >= total_steps:
                    break
        if step >= total_steps:
            break
    bar.close()
    runtime = time.perf_counter() - start
    return TrainResult(step, micro, last_loss, loss_sum / max(micro, 1), tokens, runtime)


def make_accelerator(cfg: FinetuneConfig):
    import torch
    from accelerate import Accelerator

    mixed = "no"
    if torch.cuda.is_available():
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps, mixed_precision=mixed)


# ---------------------------------------------------------------- saving and loading


def save_finetuned(model, tokenizer, out_dir: str | Path, metadata: dict[str, Any], *, merge: bool = False) -> None:
    """Adapter (PEFT format), tokenizer (with the markers) and METADATA_FILE into `out_dir`;
    with `merge`, also the merged model under out_dir/merged."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    _sort_adapter_config(out_dir / "adapter_config.json")
    tokenizer.save_pretrained(out_dir)
    if merge:
        merged = model.merge_and_unload()
        merged.save_pretrained(out_dir / MERGED_DIR)
        tokenizer.save_pretrained(out_dir / MERGED_DIR)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def _sort_adapter_config(path: Path) -> None:
    """PEFT writes set-valued fields (target_modules...) in hash order, which changes from run to
    run; sort them so the same training gives byte-identical outputs (and DVC hashes)."""
    config = json.loads(path.read_text())
    for key, value in config.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; is {model_dir} the output of the finetune stage?")
    return json.loads(path.read_text())


def base_model_path(model_dir: str | Path, metadata: dict[str, Any]) -> str:
    """Where the base model of a finetuned model_dir loads from (tiny-random: model_dir/base)."""
    if metadata["base_model"] == TINY_MODEL:
        return str(Path(model_dir) / TINY_BASE_DIR)
    return metadata["base_model"]


def load_finetuned(model_dir: str | Path, *, device: str | None = None, dtype=None):
    """Load the finetune stage's output for generation: the base model (from the hub id or path
    in its metadata, or model_dir/base for tiny-random) with the markers' embeddings rebuilt
    exactly as in training, and the LoRA adapter on top, in eval mode on `device` (default: cuda
    when available, else cpu; dtype default: bf16 on GPU, float32 on CPU).

    Returns (model, tokenizer): a `peft.PeftModel` wrapping a transformers causal LM, and the
    tokenizer saved with the adapter (markers included) with `padding_side="left"` for batched
    generation. Generate from `tokenizer(prompt)` (special tokens on, as in training); the model
    ends a prediction with `tokenizer.eos_token_id`.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    device = device or default_device()
    if metadata["base_model"] == TINY_MODEL:
        log.warning(SMOKE_WARNING)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base, _ = load_base_hf(base_model_path(model_dir, metadata), device=device, dtype=dtype)
    add_markers(tokenizer, base)
    model = PeftModel.from_pretrained(base, model_dir)
    model.to(device).eval()
    tokenizer.padding_side = "left"
    return model, tokenizer


# ---------------------------------------------------------------- the whole run


def run_finetune(
    records: list[dict[str, Any]], out_dir: str | Path, cfg: FinetuneConfig, *, live=None, progress: bool = True
) -> dict[str, Any]:
    """Fine-tune `cfg.base_model` on processed examples and save to `out_dir`; log each step to
    the DVCLive `live` when given. Returns flat metrics."""
    out_dir = Path(out_dir)
    backend = resolve_backend(cfg.backend)  # before transformers loads, so unsloth can patch it
    base: str | Path = cfg.base_model
    if cfg.is_tiny:
        from nep.tiny import build_tiny_model  # logs SMOKE_WARNING

        texts = [r["prompt"] + r["completion"] for r in records if isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str)]
        t = cfg.tiny
        base = build_tiny_model(
            texts or [""],
            out_dir / TINY_BASE_DIR,
            vocab_size=t.vocab_size,
            hidden_size=t.hidden_size,
            num_layers=t.num_layers,
            num_heads=t.num_heads,
            max_position_embeddings=max(t.max_seq_length, 128),
            seed=cfg.seed,
        )
    accelerator = make_accelerator(cfg)
    device = str(accelerator.device)
    if backend == "unsloth":
        model, tokenizer = prepare_unsloth(base, cfg)
    else:
        model, tokenizer = prepare_hf(base, cfg, device)
    examples, stats = encode_examples(records, tokenizer, cfg.effective_max_seq_length, cfg.overlong)
    log.info("finetune: %d of %d examples used (%d truncated)", stats.used, stats.examples, stats.truncated)

    def on_step(step: int, values: dict[str, float]) -> None:
        if live is not None:
            for name, value in values.items():
                live.log_metric(name, value)
            live.next_step()

    result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, accelerator=accelerator, on_step=on_step, progress=progress)
    metrics: dict[str, Any] = {
        "backend": backend,
        "examples": stats.examples,
        "examples_used": stats.used,
        "examples_truncated": stats.truncated,
        "examples_dropped": sum(stats.dropped.values()),
        **{f"dropped.{k}": v for k, v in sorted(stats.dropped.items())},
        "train_tokens": stats.tokens,
        "train_completion_tokens": stats.completion_tokens,
        "max_seq_length": cfg.effective_max_seq_length,
        "smoke_model": cfg.is_tiny,
        "steps": result.steps,
        "train_loss": result.train_loss,
        "mean_loss": result.mean_loss,
        "runtime_s": round(result.runtime_s, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        metadata = {
            "base_model": cfg.base_model,
            "backend": backend,
            "params": cfg.to_dict(),
            "markers": list(MARKERS),
            "smoke_model": cfg.is_tiny,
        }
        with contextlib.suppress(AttributeError):
            model = accelerator.unwrap_model(model)
        save_finetuned(model, tokenizer, out_dir, metadata, merge=cfg.merge)
    return metrics
