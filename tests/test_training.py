"""LoRA fine-tuning on the tiny model: markers, completion-only labels, training, save and load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nep.prompts import MARKERS, NEXT, build_training_text
from nep.tiny import build_tiny_model
from nep.training import (
    IGNORE_INDEX,
    FinetuneConfig,
    add_markers,
    collate,
    encode_example,
    encode_examples,
    load_base_hf,
    load_finetuned,
    prepare_hf,
    resolve_backend,
    save_finetuned,
    train,
)

ORIGINAL = "total = 0\nfor x in xs:\n    total += x\n"
CURRENT = "total = 0\ncount = 0\nfor x in xs:\n    total += x\n"
NEXT_VERSION = "total = 0\ncount = 0\nfor x in xs:\n    total += x\n    count += 1\n"


def example(i: int) -> dict[str, str]:
    t = build_training_text(ORIGINAL, CURRENT.replace("count", f"n{i}"), NEXT_VERSION.replace("count", f"n{i}"), path="sum.py")
    return {"prompt": t.prompt, "completion": t.completion}


SMALL = FinetuneConfig.from_params(
    {"tiny": {"max_steps": 3}, "gradient_accumulation_steps": 2, "warmup_steps": 1, "learning_rate": 1e-2, "embedding_learning_rate": 1e-2}
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [e["prompt"] + e["completion"] for e in map(example, range(8))]
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny"), vocab_size=400)


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """A few LoRA steps on the tiny model, saved; returns (peft model, tokenizer, base state, out dir)."""
    import torch

    torch.manual_seed(0)
    base_state = {k: v.clone() for k, v in load_base_hf(tiny_dir, device="cpu")[0].state_dict().items()}
    model, tokenizer = prepare_hf(tiny_dir, SMALL, "cpu")
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    examples, _ = encode_examples(map(example, range(8)), tokenizer, 512)
    result = train(model, examples, SMALL, pad_token_id=tokenizer.pad_token_id, progress=False)
    assert result.steps == 3 and result.micro_batches == 6
    out = tmp_path_factory.mktemp("finetuned")
    save_finetuned(model, tokenizer, out, {"base_model": str(tiny_dir), "backend": "hf", "params": SMALL.to_dict()})
    return model, tokenizer, base_state, before, out


def test_markers_are_single_tokens_and_embeddings_grow(tiny_dir):
    model, tokenizer = load_base_hf(tiny_dir, device="cpu")
    n = len(tokenizer)
    ids = add_markers(tokenizer, model)
    assert len(tokenizer) == n + 4 and ids == list(range(n, n + 4))
    for marker, i in zip(MARKERS, ids):
        assert tokenizer(marker, add_special_tokens=False)["input_ids"] == [i]
        # and inside text too, never split or merged with neighbours
        assert i in tokenizer(f"x = 1\n{marker}\ny")["input_ids"]
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tokenizer)
    assert emb[ids[0]].allclose(emb[:n].mean(dim=0), atol=1e-6)
    assert add_markers(tokenizer, model) == ids and model.get_input_embeddings().weight.shape[0] == n + 4


def test_loss_masked_on_prompt(tiny_dir):
    _, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer)
    e = example(0)
    encoded, truncated = encode_example(tokenizer, e["prompt"], e["completion"], 512)
    assert not truncated
    ids, labels = encoded["input_ids"], encoded["labels"]
    n_prompt = len(tokenizer(e["prompt"])["input_ids"])
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ids[n_prompt - 2] == tokenizer.convert_tokens_to_ids(NEXT)  # ...<|next_version|>, "\n" | completion
    assert labels[n_prompt:] == ids[n_prompt:]
    assert labels[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(labels[n_prompt:-1]) == e["completion"]


def test_overlong_examples_truncated_or_dropped_and_counted(tiny_dir):
    _, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer)
    e = example(0)
    n_prompt = len(tokenizer(e["prompt"])["input_ids"])
    cut, truncated = encode_example(tokenizer, e["prompt"], e["completion"], n_prompt + 3)
    assert truncated and len(cut["input_ids"]) == n_prompt + 3 and cut["labels"][-1] != tokenizer.eos_token_id
    assert encode_example(tokenizer, e["prompt"], e["completion"], n_prompt + 3, "drop") == ("too_long", False)
    assert encode_example(tokenizer, e["prompt"], e["completion"], n_prompt) == ("prompt_too_long", False)
    records = [e, {"prompt": "no marker", "completion": "x"}, {"prompt": e["prompt"]}]
    encoded, stats = encode_examples(records, tokenizer, n_prompt + 3)
    assert len(encoded) == stats.used == 1 and stats.truncated == 1 and stats.examples == 3
    assert stats.dropped == {"prompt_without_next_marker": 1, "missing_prompt_or_completion": 1}


def test_collate_pads_labels_with_ignore_index():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_lora_moves_adapter_not_base(trained):
    import torch

    model, _, base_state, before, _ = trained
    after = dict(model.named_parameters())
    lora = [k for k in after if "lora_B" in k]
    assert lora and all(not torch.equal(before[k], after[k].detach()) for k in lora)
    # trained embedding copies (train_embeddings) moved; the originals and all base weights did not
    saved = [k for k in after if "modules_to_save" in k]
    assert {m for m in ("embed_tokens", "lm_head") for k in saved if f"{m}.modules_to_save" in k} == {"embed_tokens", "lm_head"}
    assert all(not torch.equal(before[k], after[k].detach()) for k in saved)
    for name, p in model.get_base_model().named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        key = name.replace(".base_layer", "").replace(".original_module", "")
        ref = base_state[key]
        if p.shape != ref.shape:  # embeddings grew by the four markers
            assert torch.equal(p[: ref.shape[0]].detach(), ref), name
        else:
            assert torch.equal(p.detach(), ref), name


def test_adapter_saves_and_loads_to_same_outputs(trained, tiny_dir):
    import torch

    model, tokenizer, _, _, out = trained
    model.eval()
    loaded, loaded_tokenizer = load_finetuned(out, device="cpu")
    assert loaded_tokenizer.padding_side == "left" and len(loaded_tokenizer) == len(tokenizer)
    prompt = example(3)["prompt"]
    enc = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits
        got = loaded(**loaded_tokenizer(prompt, return_tensors="pt")).logits
    assert torch.allclose(expected, got, atol=1e-5)
    # and the adapter matters: the bare base gives different logits
    base, _ = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer, base)
    with torch.no_grad():
        assert not torch.allclose(base(**enc).logits, got, atol=1e-3)


def test_config_defaults_are_the_papers_and_params_parse():
    from nep.params import load_params

    cfg = FinetuneConfig()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 16, 0.0)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (cfg.learning_rate, cfg.embedding_learning_rate, cfg.epochs) == (1e-4, 1e-5, 2)
    assert (cfg.batch_size, cfg.gradient_accumulation_steps, cfg.max_seq_length) == (1, 4, 2048)
    assert (cfg.warmup_steps, cfg.weight_decay, cfg.lr_scheduler, cfg.seed) == (5, 0.01, "linear", 3407)
    FinetuneConfig.from_params(load_params("finetune"))
    # tiny-random's own caps apply to it alone; the main max_steps caps every model
    assert (cfg.effective_max_seq_length, cfg.effective_max_steps) == (cfg.tiny.max_seq_length, cfg.tiny.max_steps)
    real = FinetuneConfig(base_model="Qwen/Qwen2.5-Coder-7B")
    assert (real.effective_max_seq_length, real.effective_max_steps) == (2048, 0)
    assert FinetuneConfig(max_steps=2).effective_max_steps == 2
    with pytest.raises(ValueError, match="unknown params"):
        FinetuneConfig.from_params({"lora_rank": 8})
    with pytest.raises(ValueError, match="backend"):
        FinetuneConfig.from_params({"backend": "tpu"})


def test_backend_resolution_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    assert resolve_backend("auto") == "hf"
    assert resolve_backend("hf") == "hf"
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_backend("unsloth")


def test_heavy_imports_are_lazy():
    code = (
        "import sys, nep.training, nep.tiny, stages.finetune; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'unsloth', 'dvclive', 'accelerate') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
def test_unsloth_backend_trains_and_loads(tmp_path):
    """The real unsloth path on a GPU: tiny model, a few steps, saved, loaded with load_finetuned."""
    pytest.importorskip("unsloth")
    import torch

    from nep.training import run_finetune

    records = [example(i) for i in range(8)]
    cfg = FinetuneConfig.from_params({"backend": "unsloth", "tiny": {"max_steps": 2, "max_seq_length": 512, "vocab_size": 400}})
    metrics = run_finetune(records, tmp_path, cfg, progress=False)
    assert metrics["backend"] == "unsloth" and metrics["steps"] == 2
    model, tokenizer = load_finetuned(tmp_path, device="cuda")
    enc = tokenizer(records[0]["prompt"], return_tensors="pt").to("cuda")
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits.float()).all()
