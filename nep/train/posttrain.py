"""Post-training after SFT: sample candidates, score them with nep's metrics (nep/train/rewards.py),
then DPO on preference pairs or GRPO with the reward, both through trl on top of the SFT adapter.

The SFT adapter is loaded trainable on its frozen base; trl keeps a frozen copy of it (adapter
"ref") as the reference policy, and only the "default" adapter (LoRA matrices, plus the embedding
rows SFT trained) moves. The trainer pieces are nep.train.sft's (TrainingArguments, AdamW with the
embedding group, DVCLive steps), driven by the `posttrain:` params. transformers + peft anywhere;
on a GPU the same trainers run with trl's fused kernels.

trl computes log-probabilities through a Triton kernel (`trl.kernels`), which the CPU build of
torch lacks, and trl offers no public switch to a plain-torch path. `use_torch_logprobs` fills that
gap with the same computation in plain torch by setting trl's module attribute
`trl.trainer.utils._ChunkedLogProbFunction`, only where it is None (no Triton) and only on the trl
releases it was tested with (TRL_TESTED); elsewhere GRPO on a CPU stops in one line before any work.
tests/train/test_posttrain.py fails when those internals change.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nep.config.schema import Finetune, Posttrain, section
from nep.core.formats import PAPER, AnswerFormat, Unrepresentable
from nep.core.prompts import model_boundary, strip_lead
from nep.train.model import (
    METADATA_FILE,
    add_markers,
    base_model_path,
    load_base_hf,
    read_metadata,
    save_finetuned,
)
from nep.train.rewards import make_pair, prompt_sections, reward_function, score_candidate
from nep.train.sft import live_steps, optimizer_cls_and_kwargs, split_timing, trainer_kwargs
from nep.util import device as nep_device
from nep.util.errors import NepError

log = logging.getLogger(__name__)

METHODS = ("none", "dpo", "grpo")
# Per-step trl log key → DVCLive curve (metrics/posttrain/plots/metrics/<name>.tsv); no timings.
CURVES = {
    "loss": "loss",
    "reward": "reward",  # GRPO: mean reward of the step's rollouts
    "reward_std": "reward_std",
    "kl": "kl",  # GRPO: KL to the reference (the SFT adapter)
    "rewards/margins": "reward_margin",  # DPO: implicit reward margin (beta x log-ratio)
    "rewards/accuracies": "reward_accuracy",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
}


TRL_TESTED = ((1, 15), (1, 15))  # oldest and newest trl (major, minor) the plain-torch path was tested with


def use_torch_logprobs() -> None:
    """Give trl's fused LM head a plain-torch log-prob function where its Triton kernel is missing
    (CPU builds of torch): same inputs, same outputs, autograd through torch."""
    from importlib.metadata import version

    import torch
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is not None:
        return
    trl_version = tuple(int(x) for x in version("trl").split(".")[:2])
    if not TRL_TESTED[0] <= trl_version <= TRL_TESTED[1] or not hasattr(trl_utils, "_ChunkedLogProbFunction"):
        raise NepError(
            f"trl {version('trl')} needs Triton for post-training log-probabilities, which this torch lacks; "
            f"nep's plain-torch path is tested with trl {TRL_TESTED[0][0]}.{TRL_TESTED[0][1]}-"
            f"{TRL_TESTED[1][0]}.{TRL_TESTED[1][1]}",
            param="posttrain.method", hint="install a tested trl (requirements.txt), or post-train on a GPU")

    class TorchLogProb:
        @staticmethod
        def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0, outputs=()):
            logits = hidden @ weight.to(hidden.dtype).t()
            if bias is not None:
                logits = logits + bias.to(logits.dtype)
            logits = logits.float() * logit_scale
            if softcap is not None:
                logits = softcap * torch.tanh(logits / softcap)
            logits = logits / temperature
            logp = torch.log_softmax(logits, dim=-1)
            chosen = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
            with torch.no_grad():
                sum_sq = torch.logsumexp(2 * logp, dim=-1) if "log_sum_sq_probs" in outputs else None
                mean = logits.mean(-1) if "mean_logits" in outputs else None
                top1 = logits.argmax(-1) == targets if "is_top1" in outputs else None
            return chosen, entropy, sum_sq, mean, top1

    trl_utils._ChunkedLogProbFunction = TorchLogProb


# ---------------------------------------------------------------- model and prompts


def load_trainable(model_dir: str | Path, device: str = "cpu"):
    """(peft model with the SFT adapter trainable on its frozen base, tokenizer, SFT metadata)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base, _ = load_base_hf(base_model_path(model_dir, metadata), device=device)
    add_markers(tokenizer, base)
    model = PeftModel.from_pretrained(base, model_dir, is_trainable=True)
    return model.to(device), tokenizer, metadata


def choose_prompts(records: list[dict[str, Any]], cfg: Posttrain) -> list[int]:
    """Indices of up to `max_prompts` usable training records (seeded choice, in file order)."""
    usable = [i for i, r in enumerate(records) if isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str)]
    chosen = random.Random(cfg.seed).sample(usable, min(cfg.max_prompts, len(usable)))
    return sorted(chosen)


def train_config(sft: Finetune, cfg: Posttrain) -> Finetune:
    """The SFT run's params with the post-training schedule (the embedding rows keep SFT's ratio
    of learning rates; the tiny model's SFT step cap does not apply)."""
    ratio = sft.embedding_learning_rate / sft.learning_rate
    return sft.model_copy(update={
        "learning_rate": cfg.learning_rate, "embedding_learning_rate": cfg.learning_rate * ratio,
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_steps, "max_steps": cfg.max_steps, "seed": cfg.seed,
        "tiny": sft.tiny.model_copy(update={"max_steps": 0}),
    })


# ---------------------------------------------------------------- candidates


@dataclass
class Sampled:
    rows: list[dict[str, Any]]  # data/posttrain/candidates.jsonl
    groups: list[tuple[dict[str, Any], list[tuple[str, Any]]]]  # (record, [(raw, Scored)])
    skipped: Counter


def sample_candidates(model, tokenizer, records: list[dict[str, Any]], indices: list[int], cfg: Posttrain,
                      *, desc: str = "posttrain: sampling", progress: bool = True, fmt: AnswerFormat = PAPER) -> Sampled:
    """k sampled completions per chosen prompt (seeded per prompt), each scored by nep.train.rewards.
    Prompts leaving no room for `max_new_tokens` within `max_seq_length` are skipped and counted."""
    import torch
    from tqdm import tqdm

    weights, out = cfg.reward, Sampled([], [], Counter())
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for index in tqdm(indices, desc=desc, unit="prompt", disable=not progress):
        record = records[index]
        head, lead = model_boundary(record["prompt"])  # tokens as training and generation split them
        ids = tokenizer(head)["input_ids"]
        if len(ids) + cfg.max_new_tokens > cfg.max_seq_length:
            out.skipped["prompt_too_long"] += 1
            continue
        torch.manual_seed(cfg.seed * 1_000_003 + index)
        inputs = torch.tensor([ids], device=device)
        with torch.inference_mode():
            generated = model.generate(
                input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True, temperature=cfg.temperature,
                top_p=cfg.top_p, top_k=0, num_return_sequences=cfg.k, max_new_tokens=cfg.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos),
            )
        sections = prompt_sections(record, fmt)
        group = []
        for sample, row in enumerate(generated[:, len(ids):].tolist()):
            kept = []
            for t in row:
                if t in eos:
                    break
                kept.append(t)
            raw = strip_lead(tokenizer.decode(kept, skip_special_tokens=False), lead)
            scored = score_candidate(raw, weights=weights, complete=len(kept) < len(row), fmt=fmt, **sections)
            group.append((raw, scored))
            out.rows.append({"id": record.get("id", str(index)), "index": index, "sample": sample, "raw": raw, **scored.as_dict()})
        out.groups.append((record, group))
    model.train(was_training)
    return out


def build_pairs(groups, cfg: Posttrain, fmt: AnswerFormat = PAPER) -> tuple[list[dict[str, Any]], Counter]:
    """DPO pairs (nep.train.rewards.make_pair) of every sampled prompt, and the outcome counts."""
    pairs, outcomes = [], Counter()
    for record, group in groups:
        sections = prompt_sections(record, fmt)
        truth = score_candidate(record["completion"], weights=cfg.reward, fmt=fmt, **sections).reward  # as the model writes it
        pair, outcome = make_pair(
            id=record.get("id", ""), prompt=record["prompt"], ground_truth=record["completion"], truth_reward=truth,
            candidates=group, margin=cfg.margin, add_ground_truth=cfg.add_ground_truth,
        )
        outcomes[outcome] += 1
        if pair is not None:
            pairs.append(pair.as_dict())
    return pairs, outcomes


def summary(sampled: Sampled, suffix: str = "") -> dict[str, Any]:
    rows = sampled.rows
    n = len(rows)
    best = [max(s.reward for _, s in group) for _, group in sampled.groups if group]
    return {
        f"mean_reward{suffix}": round(sum(r["reward"] for r in rows) / n, 6) if n else 0.0,
        f"best_of_k_reward{suffix}": round(sum(best) / len(best), 6) if best else 0.0,
        f"exact_match{suffix}": round(sum(r["exact_match"] for r in rows) / n, 6) if n else 0.0,
        f"unextractable{suffix}": round(sum(r["unextractable"] for r in rows) / n, 6) if n else 0.0,
    }


# ---------------------------------------------------------------- trainers


def dpo_row(pair: dict[str, Any]) -> dict[str, str]:
    """trl's prompt/chosen/rejected for one pair, split where SFT and generation split the tokens
    (nep.core.prompts.model_boundary: the marker's newline opens both answers)."""
    head, lead = model_boundary(pair["prompt"])
    return {"prompt": head, "chosen": lead + pair["chosen"], "rejected": lead + pair["rejected"]}


def grpo_row(record: dict[str, Any], fmt: AnswerFormat = PAPER) -> dict[str, str]:
    """GRPO's prompt (up to the marker, as SFT and generation split it), the `lead` its completions
    begin with (the reward strips it) and the sections the reward scores against."""
    head, lead = model_boundary(record["prompt"])
    return {"prompt": head, "lead": lead, **prompt_sections(record, fmt)}


def in_format(records: list[dict[str, Any]], fmt: AnswerFormat) -> tuple[list[dict[str, Any]], Counter]:
    """The training records with the answer format's prompt and completion (nep.core.formats), and
    the count of those whose next version it cannot write (left without a completion: never chosen)."""
    if fmt.is_paper:
        return records, Counter()
    out, unwritable = [], Counter()
    for r in records:
        try:
            out.append({**r, "prompt": fmt.prompt(r), "completion": fmt.completion(r)})
        except Unrepresentable as e:
            unwritable[e.reason] += 1
            out.append({**r, "completion": None})
    return out, unwritable


def build_trainer(method: str, model, tokenizer, data: list[dict[str, Any]], cfg: Posttrain,
                  sft: Finetune, scratch: str | Path, *, live=None, progress: bool = True, fmt: AnswerFormat = PAPER):
    """trl's DPOTrainer (data: prompt/chosen/rejected) or GRPOTrainer (data: prompt, original,
    current, ground_truth; nep's reward) on the trainable SFT adapter `model`."""
    from datasets import Dataset


    use_torch_logprobs()
    tcfg = train_config(sft, cfg)
    kwargs = trainer_kwargs(tcfg, scratch, progress=progress)
    optimizer_cls, optimizer_kwargs = optimizer_cls_and_kwargs(model, tcfg)  # built before trl adds "ref"
    common = {
        "model": model, "processing_class": tokenizer, "train_dataset": Dataset.from_list(data),
        "optimizers": (optimizer_cls(**optimizer_kwargs), None), "callbacks": [live_steps(live, CURVES)],
    }
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.sft_weight]} if cfg.sft_weight else {}
        args = DPOConfig(**kwargs, beta=cfg.beta, max_length=cfg.max_seq_length, dataset_num_proc=None, **losses)
        return DPOTrainer(args=args, **common)
    if method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        kwargs["per_device_train_batch_size"] = cfg.batch_size * cfg.k  # whole groups per device step
        args = GRPOConfig(
            **kwargs, beta=cfg.beta, num_generations=cfg.k, max_completion_length=cfg.max_new_tokens,
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        )
        specials = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}

        def decode(ids):
            return tokenizer.decode([t for t in ids if t not in specials], skip_special_tokens=False)

        def ended(ids):  # trl keeps the EOS that ended a completion; a cut one has none
            return bool(ids) and ids[-1] in specials

        return GRPOTrainer(reward_funcs=[reward_function(cfg.reward, decode=decode, ended=ended, fmt=fmt)], args=args, **common)
    raise ValueError(f"posttrain.method: unknown {method!r}; choose from {METHODS}")


@dataclass
class PosttrainResult:
    metrics: dict[str, Any]  # metrics/posttrain.json
    candidates: list[dict[str, Any]]  # data/posttrain/candidates.jsonl
    pairs: list[dict[str, Any]]  # data/posttrain/pairs.jsonl
    timing: dict[str, Any]  # metrics/timing/posttrain.json


def run_posttrain(records: list[dict[str, Any]], sft_dir: str | Path, out_dir: str | Path, cfg: Posttrain,
                  *, live=None, progress: bool = True, fmt: AnswerFormat = PAPER) -> PosttrainResult:
    """Post-train the SFT adapter in `sft_dir` on training `records` by `cfg.method`, saving the
    adapter (loadable by nep.train.sft.load_finetuned) to `out_dir`. `none` copies the SFT output.
    Prompts, completions and rewards are in the answer format `fmt` (process.format)."""
    start = time.perf_counter()
    sft_dir, out_dir = Path(sft_dir), Path(out_dir)
    sft_meta = read_metadata(sft_dir)
    metrics: dict[str, Any] = {"method": cfg.method, "smoke_model": bool(sft_meta.get("smoke_model", False))}
    timing: dict[str, Any] = {}
    if cfg.method == "none":
        shutil.copytree(sft_dir, out_dir)
        save_metadata(out_dir, sft_meta, cfg)
        timing["wall_s"] = round(time.perf_counter() - start, 3)
        return PosttrainResult(metrics, [], [], timing)

    device = nep_device.resolve_device("auto")
    if device == "cpu":
        nep_device.configure_threads(cfg.threads)
    sft = section("finetune", sft_meta["params"])
    model, tokenizer, _ = load_trainable(sft_dir, device)
    records, unwritable = in_format(records, fmt)
    indices = choose_prompts(records, cfg)
    t0 = time.perf_counter()
    sampled = sample_candidates(model, tokenizer, records, indices, cfg, progress=progress, fmt=fmt)
    timing["sample_s"] = round(time.perf_counter() - t0, 3)
    pairs, outcomes = build_pairs(sampled.groups, cfg, fmt)
    metrics.update({
        "prompts": len(indices), "prompts_sampled": len(sampled.groups),
        **{f"prompts_skipped.{k}": v for k, v in sorted(sampled.skipped.items())},
        **{f"unwritable.{k}": v for k, v in sorted(unwritable.items())},
        "candidates": len(sampled.rows), **summary(sampled),
    })
    if cfg.method == "dpo":
        metrics.update({"pairs": len(pairs), **{f"pairs.{k}": v for k, v in sorted(outcomes.items())}})
        data = [dpo_row(p) for p in pairs]
        if not data:
            raise NepError("posttrain: no DPO pair left (every prompt a tie or skipped); raise posttrain.k or max_prompts, or lower margin")
    else:
        pairs = []
        data = [grpo_row(r, fmt) for r, _ in sampled.groups]
        if not data:
            raise NepError("posttrain: no prompt fits posttrain.max_seq_length with max_new_tokens; raise it")
    with tempfile.TemporaryDirectory(prefix="nep-posttrain-") as scratch:
        trainer = build_trainer(cfg.method, model, tokenizer, data, cfg, sft, scratch, live=live, progress=progress,
                                fmt=fmt)
        output = trainer.train()

    _, train_timing = split_timing(output.metrics)
    timing.update(train_timing)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    metrics.update({
        "steps": output.global_step, "train_loss": round(losses[-1], 6) if losses else float("nan"),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    })
    if cfg.rescore:
        t0 = time.perf_counter()
        metrics.update(summary(sample_candidates(model, tokenizer, records, indices, cfg, progress=progress,
                                                 desc="posttrain: re-sampling", fmt=fmt), "_after"))
        timing["rescore_s"] = round(time.perf_counter() - t0, 3)
    metadata = {**sft_meta, "backend": "hf"}
    save_finetuned(model, tokenizer, out_dir, metadata)
    if (sft_dir / "base").is_dir():  # the tiny smoke model's base travels with its adapter
        shutil.copytree(sft_dir / "base", out_dir / "base")
    save_metadata(out_dir, metadata, cfg)
    timing["wall_s"] = round(time.perf_counter() - start, 3)
    return PosttrainResult(metrics, sampled.rows, pairs, timing)


def save_metadata(out_dir: Path, sft_meta: dict[str, Any], cfg: Posttrain) -> None:
    """The SFT metadata (what load_finetuned reads) plus this run's posttrain params."""
    import json


    meta = {**sft_meta, "posttrain": cfg.model_dump()}
    (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
