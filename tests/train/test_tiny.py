"""The tiny-random smoke model: built offline from a config and a locally trained tokenizer."""

from __future__ import annotations

import pytest

from nep.train.tiny import build_tiny_model, train_tokenizer

TEXTS = [
    "def area(width, height):\n    return width * height\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "for name in names:\n    print(f'hello {name}')\n",
]


def test_builds_a_loadable_qwen2_model(tiny_dir):  # conftest's shared tiny model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size <= 64 and model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token_id == tokenizer.eos_token_id


def test_tokenizer_is_byte_level_and_learned_merges():
    tokenizer = train_tokenizer(TEXTS * 5, vocab_size=300)
    unseen = "naïve → 日本語\t\r\n  x"
    assert tokenizer.decode(tokenizer(unseen)["input_ids"]) == unseen
    # Merges learned on the texts: a frequent word takes fewer tokens than its bytes.
    assert len(tokenizer("return")["input_ids"]) < len("return")


def test_deterministic(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    a = build_tiny_model(TEXTS, tmp_path / "a", vocab_size=300, seed=1)
    b = build_tiny_model(TEXTS, tmp_path / "b", vocab_size=300, seed=1)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_needs_texts(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        build_tiny_model([], tmp_path)
