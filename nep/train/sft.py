"""LoRA supervised fine-tuning through trl's SFTTrainer: transformers + peft anywhere, unsloth on a
GPU. One training path; the backends differ only in how the model is loaded and wrapped with
LoRA (nep/train/model.py).

Each example is a prompt/completion pair (nep/core/prompts.py): the prompt ends with the
`<|next_version|>` line, the completion is the next version. nep tokenizes the two apart and
appends EOS (`training_row`, so the prompt's tokens are generation's); SFTTrainer masks the prompt
(completion-only loss: its labels are -100, so no prompt token carries loss; tests/train/test_sft.py
checks the gradient), truncates to `max_seq_length`, pads and trains. With
`finetune.changed_token_weight` ≠ 1 each row also carries per-token weights (`changed_token_weights`:
the answer's lines not copied from the current version weigh that much, the rest 1), which
`WeightedCollator` pads and `label_loss` applies; the pre-pass (nep/train/rows.py,
`sft_examples`) only counts and drops, so every loss is reported. One CPU, one GPU,
or several processes under `accelerate launch` (same global batch: the accumulation is split
across processes).

The trainer layer, for other trainers (DPO, GRPO) to build on: nep.train.model's `resolve_backend`,
`check_base_model`, `build_base`, `prepare_model`, save/load; here `trainer_kwargs`
(TrainingArguments shared by every trl config), `optimizer_cls_and_kwargs` (embedding rows at
their own lr), `live_steps` (DVCLive curves, no timing), `split_timing`, `fused_loss_available`
(trl's Triton loss needs CUDA; on the CPU the model's own loss is used).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nep.config.schema import Finetune, ParamsError
from nep.core.formats import PAPER, AnswerFormat
from nep.core.prompts import MARKERS
from nep.train.model import (
    EMBEDDING_MODULES,
    build_base,
    check_base_model,
    prepare_model,
    resolve_backend,
    save_finetuned,
)
from nep.train.rows import (  # noqa: F401  (re-exported: nep.train.sft's names)
    ExampleStats,
    changed_spans,
    changed_token_weights,
    sft_examples,
    training_row,
)
from nep.util import device as nep_device
from nep.util.console import expected_log, quiet_dataset_bars
from nep.util.errors import NepError

log = logging.getLogger(__name__)

# Trainer log keys that are measured times: never in metrics/ or DVCLive's files (see split_timing).
TIMING_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos")
# Per-step Trainer/trl log key → DVCLive curve name (metrics/finetune/plots/metrics/<name>.tsv).
STEP_CURVES = {
    "loss": "train_loss",
    "learning_rate": "learning_rate",
    "epoch": "epoch",
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "mean_token_accuracy",
}


# Significant digits of the losses, gradient norms and rewards written to metrics/ (DVCLive's curves
# and metrics.json, finetune's metrics). Training runs in float32 (24-bit mantissa, ~7 significant
# digits); another CPU's kernels sum in another order (AVX2 vs AVX-512 lanes, oneDNN's blocking), so
# the same run differs in the last one or two of them (7.6336236 here, 7.6336241 on another machine).
# Five digits leave a margin of about 100x: the written values are the same on both, unless a value
# lies within ~1e-6 (relative) of a rounding boundary (about 1 run in 100 per value).
STABLE_DIGITS = 5


def stable(value: float) -> float:
    """`value` at STABLE_DIGITS significant digits (what different CPUs agree on); NaN/inf as is."""
    return float(f"{value:.{STABLE_DIGITS}g}") if math.isfinite(value) else value


# ---------------------------------------------------------------- examples


# ---------------------------------------------------------------- trainer pieces


def world_size() -> int:
    """Processes of this run (accelerate launch / torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def trainer_kwargs(cfg: Finetune, output_dir: str | Path, *, backend: str = "hf", progress: bool = True) -> dict[str, Any]:
    """TrainingArguments shared by every trl config built on these params (SFTConfig here;
    DPOConfig, GRPOConfig alike): schedule, seed, precision, logging every step, no checkpoints,
    no reporting integrations (DVCLive goes through live_steps). The global batch is
    batch_size × gradient_accumulation_steps whatever the number of processes: each of N processes
    accumulates gradient_accumulation_steps / N micro-batches."""
    n = world_size()
    if cfg.gradient_accumulation_steps % n:
        raise ParamsError(
            f"finetune.gradient_accumulation_steps ({cfg.gradient_accumulation_steps}) must be divisible by the "
            f"number of processes ({n}) to keep the global batch"
        )
    device = nep_device.resolve_device("auto")
    precision = nep_device.mixed_precision(device, cfg.precision)
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps // n,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.effective_max_steps or -1,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_steps,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "use_cpu": not device.startswith("cuda"),  # several CPU processes: a gloo group
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        # unsloth checkpoints through its own get_peft_model; hf through the Trainer, on a GPU only
        "gradient_checkpointing": cfg.gradient_checkpointing and backend == "hf" and device.startswith("cuda"),
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device.startswith("cuda"),
    }


def sft_config(cfg: Finetune, output_dir: str | Path, *, backend: str = "hf", progress: bool = True):
    """trl SFTConfig: prompt/completion data, loss on the completion (and EOS) only, no packing,
    truncation at the effective max_seq_length (the completion is cut)."""
    from trl import SFTConfig

    return SFTConfig(
        **trainer_kwargs(cfg, output_dir, backend=backend, progress=progress),
        max_length=cfg.effective_max_seq_length,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
    )


def optimizer_cls_and_kwargs(model, cfg: Finetune) -> tuple[type, dict[str, Any]]:
    """AdamW with the trained embedding rows (embed_tokens, lm_head copies) at
    `embedding_learning_rate` and the LoRA matrices at `learning_rate`, all with weight decay.
    For the Trainer's `optimizer_cls_and_kwargs` (its schedule then scales both groups)."""
    import torch

    embedding, other = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_embedding = "lora_" not in name and any(m in name for m in EMBEDDING_MODULES)
        (embedding if is_embedding else other).append(p)
    groups = [{"params": other, "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}]
    if embedding:
        groups.append({"params": embedding, "lr": cfg.embedding_learning_rate, "weight_decay": cfg.weight_decay})
    return torch.optim.AdamW, {"params": groups, "lr": cfg.learning_rate}


def fused_loss_available() -> bool:
    """trl's SFT/DPO loss runs the LM head through Triton kernels (trl.kernels), which need a CUDA
    GPU and the `triton` package (shipped with CUDA torch, not with the CPU build)."""
    import importlib.util

    return nep_device.cuda_available() and importlib.util.find_spec("triton") is not None


def sft_trainer_class():
    """trl's SFTTrainer, with nep's own completion-only loss (`label_loss`: the token-averaged
    cross-entropy transformers computes, the LM head run on the completion only) where trl's fused
    kernels cannot run (the CPU) or tokens are weighted."""
    from trl import SFTTrainer

    class NepSFTTrainer(SFTTrainer):
        trained_tokens = 0  # non-pad tokens of every process, for the timing report

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training and "attention_mask" in inputs:
                self.trained_tokens += int(self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum())
            if fused_loss_available() and "token_weights" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return self.label_loss(model, inputs, return_outputs, num_items_in_batch)

        def label_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """The causal-LM cross-entropy over the completion labels, each label token weighted by
            `token_weights` when the row has them (finetune.changed_token_weight != 1), summed and
            divided by the label tokens as transformers divides its own loss (those of the whole
            accumulated batch when the Trainer counts them): with every weight 1 it is the model's
            loss. The LM head runs only from the first labelled position on (the model's public
            `logits_to_keep`): the prompt's logits are never used (the loss is completion-only),
            and on SmolLM2 the head is a fifth of the forward pass."""
            import torch

            inputs = dict(inputs)
            weights, labels = inputs.pop("token_weights", None), inputs.pop("labels")
            targets = labels[:, 1:]
            counted = targets != -100
            labelled = counted.any(dim=0).nonzero()
            first = int(labelled[0]) if len(labelled) else targets.shape[1] - 1
            keep = targets.shape[1] - first  # logits of positions first .. n-2 predict labels first+1 .. n-1
            outputs = model(**inputs, logits_to_keep=keep + 1)
            logits = outputs.logits[:, :-1, :].float()
            targets, counted = targets[:, first:], counted[:, first:]
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
            ).view_as(targets)
            if weights is not None:
                losses = losses * weights[:, 1:][:, first:].to(losses.dtype)
            total = (losses * counted).sum()
            if num_items_in_batch is not None:
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs:
                    loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss scales its own
            else:
                loss = total / counted.sum().clamp(min=1)
            return (loss, outputs) if return_outputs else loss

    return NepSFTTrainer


class WeightedCollator:
    """trl's data collator plus the per-token `token_weights` column, cut and padded (with 0) to the
    batch's `input_ids`, the way the labels are."""

    def __init__(self, collator, max_length: int | None):
        self.collator, self.max_length = collator, max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        weights = [list(e["token_weights"])[: self.max_length] for e in examples]
        batch = self.collator([{k: v for k, v in e.items() if k != "token_weights"} for e in examples])
        width = batch["input_ids"].shape[1]
        batch["token_weights"] = torch.tensor([w[:width] + [0.0] * (width - len(w[:width])) for w in weights])
        return batch


def split_timing(logs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(deterministic values, measured times) of a Trainer log or TrainOutput.metrics."""
    timing = {k: v for k, v in logs.items() if k in TIMING_KEYS}
    return {k: v for k, v in logs.items() if k not in TIMING_KEYS}, timing


def live_steps(live, curves: dict[str, str] | None = None):
    """A TrainerCallback logging each optimizer step's values to the DVCLive `live` (main process
    only; no timestamps, no timing, no params or artifacts), one row per step in
    plots/metrics/<name>.tsv, each value at STABLE_DIGITS significant digits. `curves` maps log keys
    to curve names (default STEP_CURVES)."""
    from transformers import TrainerCallback

    curves = dict(STEP_CURVES if curves is None else curves)

    class LiveSteps(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if live is None or not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return  # the final summary log carries timing; the caller reports it
            logged = False
            for key, name in curves.items():
                if isinstance(logs.get(key), int | float):
                    live.log_metric(name, stable(float(logs[key])))
                    logged = True
            if logged:
                live.next_step()

    return LiveSteps()


# ---------------------------------------------------------------- the whole run


def build_sft_trainer(
    model, tokenizer, examples: list[dict[str, str]], cfg: Finetune, output_dir: str | Path, *,
    backend: str = "hf", live=None, progress: bool = True,
):
    """The SFTTrainer for prepared LoRA `model` and prompt/completion `examples` (from
    `sft_examples`), tokenized here (`training_row`: prompt and completion apart, EOS appended,
    prompt masked); truncated and padded by trl; AdamW with the
    embedding group; DVCLive curves when `live` is given. `output_dir` is scratch (no checkpoints)."""
    from datasets import Dataset
    from transformers import PrinterCallback

    if not examples:
        param = "finetune.tiny.max_seq_length" if cfg.is_tiny else "finetune.max_seq_length"
        raise NepError(f"no training example left within {cfg.effective_max_seq_length} tokens (see the drop "
                       "counts)", param=param, hint=f"raise {param}")
    rows = [training_row(tokenizer, e["prompt"], e["completion"]) for e in examples]  # trl keeps them as given
    weighted = cfg.changed_token_weight != 1.0
    if weighted:
        for row, e in zip(rows, examples, strict=True):
            row["token_weights"] = changed_token_weights(tokenizer, e["prompt"], e["completion"], e.get("current", ""),
                                                         cfg.changed_token_weight)
    args = sft_config(cfg, output_dir, backend=backend, progress=progress)
    if weighted:
        args.remove_unused_columns = False  # the collator reads token_weights
    trainer = sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, cfg),
        callbacks=[live_steps(live)],
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # no per-step log lines either
    if weighted:
        trainer.data_collator = WeightedCollator(trainer.data_collator, args.max_length)
    return trainer


def epoch_mean_losses(log_history: list[dict[str, Any]]) -> dict[int, float]:
    """Mean logged step loss per epoch (1, 2, ...): a step logged at epoch e (fractional, after the
    step) belongs to epoch ceil(e). Over several epochs the per-step curve is noisy (one example
    per step); whether the training loss fell is read from these means."""
    groups: dict[int, list[float]] = {}
    for h in log_history:
        if "loss" in h and "epoch" in h:
            groups.setdefault(max(1, math.ceil(round(h["epoch"], 6))), []).append(h["loss"])
    return {e: sum(v) / len(v) for e, v in sorted(groups.items())}


@dataclass
class FinetuneResult:
    metrics: dict[str, Any]  # deterministic: metrics/finetune/metrics.json
    timing: dict[str, Any]  # measured: metrics/timing/finetune.json


def run_finetune(
    records: list[dict[str, Any]], out_dir: str | Path, cfg: Finetune, *, live=None, progress: bool = True,
    fmt: AnswerFormat = PAPER,
) -> FinetuneResult:
    """Fine-tune `cfg.base_model` on processed examples with SFTTrainer and save to `out_dir`
    (main process), prompts and completions in the answer format `fmt` (process.format); log each
    step to the DVCLive `live` when given."""
    import tempfile

    start = time.perf_counter()
    out_dir = Path(out_dir)
    if not nep_device.cuda_available():
        nep_device.configure_threads(cfg.threads)
    backend = resolve_backend(cfg.backend)  # before transformers loads, so unsloth can patch it
    nep_device.mixed_precision(nep_device.resolve_device("auto"), cfg.precision)  # before loading: can this device?
    check_base_model(cfg.base_model)
    state = nep_device.distributed_state()
    with state.main_process_first():  # under accelerate launch the main process builds tiny-random
        base = build_base(records, out_dir, cfg, write=state.is_main_process)
    model, tokenizer = prepare_model(base, cfg, backend)
    examples, stats = sft_examples(records, tokenizer, cfg.effective_max_seq_length, cfg.overlong, fmt)
    log.info("finetune: %d of %d examples used (%d truncated)", stats.used, stats.examples, stats.truncated)
    with tempfile.TemporaryDirectory(prefix="nep-finetune-") as scratch:
        # trl logs each example whose tokenized prompt is not a prefix of prompt + completion; nep
        # counts those (examples_prompt_merged in the metrics), so the log line is expected
        with expected_log("trl.trainer.sft_trainer", "tokenized prompt is not a prefix"), quiet_dataset_bars():
            trainer = build_sft_trainer(model, tokenizer, examples, cfg, scratch, backend=backend, live=live,
                                        progress=progress)
        output = trainer.train()
    values, timing = split_timing(output.metrics)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    by_epoch = epoch_mean_losses(trainer.state.log_history)
    metrics: dict[str, Any] = {
        "backend": backend,
        "examples": stats.examples,
        "examples_used": stats.used,
        "examples_truncated": stats.truncated,
        "examples_prompt_merged": stats.prompt_merged,
        "examples_dropped": sum(stats.dropped.values()),
        **{f"dropped.{k}": v for k, v in sorted(stats.dropped.items())},
        "train_tokens": stats.tokens,
        "train_completion_tokens": stats.completion_tokens,
        "max_seq_length": cfg.effective_max_seq_length,
        "smoke_model": cfg.is_tiny,
        "processes": world_size(),
        "steps": output.global_step,
        "train_loss": stable(losses[-1]) if losses else float("nan"),
        "mean_loss": stable(values.get("train_loss", output.training_loss)),
        **{f"mean_loss_epoch_{e}": stable(v) for e, v in by_epoch.items()},
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if trainer.is_world_process_zero():
        metadata = {"base_model": cfg.base_model, "backend": backend, "params": cfg.model_dump(), "markers": list(MARKERS), "smoke_model": cfg.is_tiny}
        if not fmt.is_paper:  # what the adapter was trained to answer (the paper's whole version when absent)
            metadata["answer_format"] = fmt.option_values()
        save_finetuned(trainer.accelerator.unwrap_model(trainer.model), tokenizer, out_dir, metadata, merge=cfg.merge)
    trainer.accelerator.wait_for_everyone()
    timing["wall_s"] = round(time.perf_counter() - start, 3)
    tokens = timing["train_tokens"] = trainer.trained_tokens
    timing["train_tokens_per_s"] = round(tokens / timing["train_runtime"], 1) if timing.get("train_runtime") else 0.0
    return FinetuneResult(metrics, timing)
