"""nep.train.attention: grouped-query attention without the cache copy gives the same numbers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nep.train.attention import CPU_GQA_SDPA, use_cpu_gqa  # noqa: E402
from nep.train.model import load_base_hf  # noqa: E402


def fresh(tiny_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.padding_side = "left"
    return model, tokenizer


def padded_batch(tokenizer):
    texts = ["def area(width, height):\n    return width", "x = 1\n", "class Stack:\n    def __init__(self):\n"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()  # the case transformers' sdpa copies the cache for
    return batch


def test_tiny_model_has_grouped_heads(tiny_dir):
    config = transformers.AutoConfig.from_pretrained(tiny_dir)
    assert config.num_key_value_heads < config.num_attention_heads


def test_same_logits_and_greedy_tokens_on_a_padded_batch(tiny_dir):
    model, tokenizer = fresh(tiny_dir)
    batch = padded_batch(tokenizer)
    greedy = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.inference_mode():
        logits = model(**batch).logits
        tokens = model.generate(**batch, **greedy)
    assert use_cpu_gqa(model, "cpu")
    assert model.config._attn_implementation == CPU_GQA_SDPA
    with torch.inference_mode():
        assert torch.equal(model(**batch).logits, logits)
        assert torch.equal(model.generate(**batch, **greedy), tokens)


def test_gradients_match_on_a_padded_batch(tiny_dir):
    grads = []
    for switch in (False, True):
        model, tokenizer = fresh(tiny_dir)
        model.train()
        if switch:
            assert use_cpu_gqa(model, "cpu")
        batch = padded_batch(tokenizer)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        grads.append(model.model.layers[0].self_attn.k_proj.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0])


def test_left_alone_off_the_cpu_and_without_grouped_heads(tiny_dir):
    model, _ = fresh(tiny_dir)
    assert not use_cpu_gqa(model, "cuda")
    assert model.config._attn_implementation == "sdpa"
    eager = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")
    assert not use_cpu_gqa(eager, "cpu")
    config = transformers.AutoConfig.from_pretrained(tiny_dir)
    config.num_key_value_heads = config.num_attention_heads
    assert not use_cpu_gqa(transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"), "cpu")


def test_left_alone_when_the_class_does_not_dispatch_through_transformers_interface(tiny_dir, monkeypatch):
    model, _ = fresh(tiny_dir)
    monkeypatch.setattr(type(model), "_supports_attention_backend", False)
    assert not use_cpu_gqa(model, "cpu")
    assert model.config._attn_implementation == "sdpa"


def test_load_base_hf_switches_on_the_cpu(tiny_dir):
    model, _ = load_base_hf(tiny_dir, device="cpu")
    assert model.config._attn_implementation == CPU_GQA_SDPA
