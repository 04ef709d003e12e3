"""Predictors: the propagate rule, the registry, and generation with a tiny model on the CPU
(hf base and chat, finetuned adapter), an OpenAI-compatible server on loopback, and vLLM on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_example
from fake_openai import FakeOpenAI

from nep.config.schema import section
from nep.core.extract import extract_next_version
from nep.core.prompts import parse_prompt
from nep.predictors.base import Prediction, Settings
from nep.predictors.hf import FinetunedPredictor, HFPredictor
from nep.predictors.kinds import build_predictor, check_predictor
from nep.predictors.prompts import SYSTEM_INSTRUCTION, chat_messages
from nep.predictors.propagate import propagate, similar, skeleton, substitution
from nep.util.errors import NepError

# --------------------------------------------------------------------------------------------- helpers

FILES = [
    ("shapes.py", "class Box:\n    def width(self):\n        return 1\n\n    def height(self):\n        return 2\n"),
    ("util.py", "import os\n\nx = 1\ny = 2\nz = 3\n"),
    ("main.go", "package main\n\nfunc a() int { return 1 }\nfunc b() int { return 2 }\n"),
    ("app.js", "const a = f(1);\nconst b = f(2);\nconst c = f(3);\n"),
]


def examples() -> list[dict]:
    out = []
    for path, original in FILES:
        current = original + "# edited\n"
        out.append(make_example(original, current, current + "# again\n", path=path))
    # prompts of clearly different lengths, so batches need padding
    long = "".join(f"value_{i} = {i}\n" for i in range(30))
    out.append(make_example(long, long.replace("value_3 =", "value_3: int ="), long, path="long.py"))
    return out


def predict_all(predictor, exs: list[dict], max_new_tokens: int = 8, batch_size: int = 8, **settings) -> list[Prediction]:
    """Every example's prediction, in order, checking each is answered exactly once."""
    out: dict[int, Prediction] = {}
    for group in predictor.predict(exs, list(range(len(exs))), Settings.of(max_new_tokens=max_new_tokens,
                                                                           batch_size=batch_size, **settings)):
        for i, p in group:
            assert i not in out
            out[i] = p
    return [out[i] for i in range(len(exs))]


# --------------------------------------------------------------------------------------------- propagate


def test_substitution_widens_an_empty_middle():
    assert substitution("f(x)", "f(x, y)") == (")", ", y)")
    assert substitution("a = old_name", "a = new_name") == ("old", "new")
    assert substitution("abc", "abc!") == ("c", "c!")


def test_skeleton_and_similarity():
    assert skeleton("    def foo(self, x):") == "def _(_, _):"
    assert similar("x = 1", "total = 20")
    assert not similar("return x", "x = 1")
    assert not similar("", "")


def test_propagate_line_transformation_on_the_next_similar_line():
    original = "def f(x):\n    return g(x)\n\ndef h(y):\n    return g(y)\n"
    current = "def f(x):\n    return g(x, 1)\n\ndef h(y):\n    return g(y)\n"
    result = propagate(original, current)
    assert result.rule == "transform"
    assert result.text == "def f(x):\n    return g(x, 1)\n\ndef h(y):\n    return g(y, 1)\n"


def test_propagate_transformation_skips_lines_already_done_and_wraps_to_the_top():
    original = "a = load(1)\nb = load(2)\nc = load(3)\n"
    current = "a = load(1)\nb = cached(2)\nc = cached(3)\n"  # last edit: c; b done; a is left
    result = propagate(original, current)
    assert result.text == "a = cached(1)\nb = cached(2)\nc = cached(3)\n"


def test_propagate_insertion_renames_and_reindents():
    original = "class A:\n    def foo(self):\n        pass\n\ndef bar(self):\n    pass\n"
    current = 'class A:\n    def foo(self):\n        """Do foo."""\n        pass\n\ndef bar(self):\n    pass\n'
    result = propagate(original, current)
    assert result.rule == "insert"
    assert result.text == current.replace("def bar(self):\n", 'def bar(self):\n    """Do bar."""\n')


def test_propagate_insertion_skips_a_target_that_already_has_it():
    original = "x = 1\ny = 2\nlog(y)\nz = 3\n"
    current = "x = 1\nlog(x)\ny = 2\nlog(y)\nz = 3\n"
    assert propagate(original, current).text == current + "log(z)\n"


def test_propagate_insertion_at_a_final_line_without_newline():
    original = "import os\nx = 1\ny = 2"
    current = "import os\nx = 1\nlog(x)\ny = 2"
    assert propagate(original, current).text == "import os\nx = 1\nlog(x)\ny = 2\nlog(y)"


def test_propagate_deletion():
    original = "a()\nprint('debug')\nb()\n    print('debug')\nc()\n"
    current = "a()\nb()\n    print('debug')\nc()\n"
    result = propagate(original, current)
    assert (result.rule, result.text) == ("delete", "a()\nb()\nc()\n")


def test_propagate_falls_back_to_identity():
    # a one-off insertion with nothing similar after it
    original = "import os\n\n\nfunc()\n"
    current = "import os\nimport sys\n\n\nfunc()\n"
    assert propagate(original, current).rule == "identity"
    assert propagate(original, current).text == current
    assert propagate(current, current).rule == "identity"


def test_propagate_is_deterministic():
    for ex in examples():
        assert propagate(ex["original"], ex["current"]) == propagate(ex["original"], ex["current"])


# --------------------------------------------------------------------------------------------- registry


def test_identity_and_propagate_predictors():
    exs = examples()
    identity = build_predictor("identity", {"kind": "identity", "needs": "data/split/test.jsonl"})
    assert [p.raw_output for p in predict_all(identity, exs)] == [e["current"] for e in exs]
    prop = build_predictor("propagate", {"kind": "propagate"})
    preds = predict_all(prop, exs, batch_size=2)
    assert preds[-1].raw_output == exs[-1]["current"].replace("value_4 =", "value_4: int =")
    assert all(p.tags["propagate_rule"] in {"transform", "insert", "delete", "identity"} for p in preds)


def test_predictors_answer_only_what_is_left():
    exs = examples()
    groups = list(build_predictor("i", {"kind": "identity"}).predict(exs, [3, 0], Settings.of(max_new_tokens=8, batch_size=1)))
    assert sorted(i for g in groups for i, _ in g) == [0, 3] and all(len(g) == 1 for g in groups)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"needs": "x"}, r"mine\.kind: missing"),
        ({"kind": "identity", "needs": ""}, r"mine\.needs: missing"),
        ({"kind": "magic"}, r"mine\.kind: unknown 'magic'"),
        ({"kind": "idenity"}, r"mine\.kind: .*did you mean 'identity'"),
        ({"kind": "identity", "model": "m"}, r"mine\.model: unknown option"),
        ({"kind": "hf"}, r"mine\.model: required"),
        ({"kind": "hf", "model": "m", "temperature": 0.7}, r"mine\.temperature: unknown option"),
        ({"kind": "hf", "model": "m", "chatt": True}, r"mine\.chatt: .*did you mean 'chat'"),
        ({"kind": "hf", "model": "m", "chat": "yes"}, r"mine\.chat: expected bool \| null, got 'yes'"),
        ({"kind": "hf", "model": 7}, r"mine\.model: expected str"),
        ({"kind": "openai"}, r"mine\.model: required"),
        ({"kind": "openai", "model": "m", "api_key": "sk-secret"}, r"mine\.api_key: unknown option"),
        ({"kind": "openai", "model": "m", "concurrency": "4"}, r"mine\.concurrency: expected int"),
        ({"kind": "openai", "model": "m", "concurrency": 0}, r"mine\.concurrency: must be ≥ 1"),
        ({"kind": "finetuned", "chat": True}, r"mine\.chat: must be false"),
        ({"kind": "vllm"}, r"mine\.model: required"),
        ({"kind": "vllm", "model": "m", "chunk_size": 0}, r"mine\.chunk_size"),
        ({"kind": "file"}, r"mine\.path: required"),
        ({"kind": "identity", "needs": 3}, r"mine\.needs: expected a path"),
    ],
)
def test_check_predictor_names_the_key(config, message):
    with pytest.raises(ValueError, match=message) as info:
        check_predictor("mine", {"needs": "data/split/test.jsonl", **config})
    assert str(info.value).startswith("generate.predictors.mine") and "\n" not in str(info.value)
    if "needs: missing" not in message:  # a params check only: code may build a predictor without it
        with pytest.raises(ValueError, match=message):
            build_predictor("mine", config)


def test_check_predictor_accepts_every_kind():
    for entry in (
        {"kind": "identity", "needs": "t"},
        {"kind": "finetuned", "model": "models/finetune", "device": "cpu", "dtype": "auto"},
        {"kind": "hf", "model": "m", "chat": None, "trust_remote_code": False},
        {"kind": "vllm", "model": "m", "max_model_len": 4096, "gpu_memory_utilization": 0.5, "chunk_size": 64},
        {"kind": "openai", "model": "m", "base_url": "http://x/v1", "api_key_env": "", "concurrency": 32,
         "timeout_s": 30, "prices": {"m": {"input": 1, "output": 2.5}}},
        {"kind": "file", "path": "runs/x.jsonl", "needs": "runs/x.jsonl"},
    ):
        check_predictor("ok", {"needs": "data/split/test.jsonl", **entry})


def test_heavy_libraries_load_lazily():
    code = (
        "import sys, nep.predictors.base, nep.predictors.kinds, nep.predictors.runner, nep.core.extract, stages.generate\n"
        "options = {'vllm': {'model': 'm'}, 'hf': {'model': 'm'}, 'openai': {'model': 'm'}, 'file': {'path': 'f'}, 'hybrid': {'path': 'f'}}\n"
        "for kind in nep.predictors.kinds.KINDS:\n"
        "    nep.predictors.kinds.check_predictor(kind, {'kind': kind, 'needs': 't', **options.get(kind, {})})\n"
        "p = nep.predictors.kinds.build_predictor('x', {'kind': 'vllm', 'model': 'some/model'})\n"
        "p = nep.predictors.kinds.build_predictor('y', {'kind': 'hf', 'model': 'some/model'})\n"
        "p = nep.predictors.kinds.build_predictor('z', {'kind': 'openai', 'model': 'gpt', 'base_url': 'http://x'})\n"
        "heavy = {'torch', 'transformers', 'peft', 'vllm', 'openai', 'unsloth', 'datasets'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_missing_vllm_names_the_param_and_the_requirements(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    predictor = build_predictor("fast", {"kind": "vllm", "model": "m"})
    with pytest.raises(NepError, match=r"generate\.predictors\.fast\.kind: .*requirements-gpu\.txt"):
        predict_all(predictor, examples())


def test_a_model_that_does_not_load_is_one_line_naming_the_param(monkeypatch):
    import nep.predictors.hf

    def not_found(model, **kw):
        raise OSError(f"{model} is not a local folder and is not a valid model identifier\nmore text")

    monkeypatch.setattr(nep.predictors.hf, "load_base_hf", not_found)
    predictor = build_predictor("big", {"kind": "hf", "model": "no-such-org/no-such-model", "device": "cpu"})
    with pytest.raises(NepError, match=r"^generate\.predictors\.big\.model: cannot load .*not a valid") as info:
        predict_all(predictor, examples()[:1])
    assert "\n" not in str(info.value)


@pytest.mark.slow  # imports transformers and asks the (offline) hub: ~10 s on a loaded machine
def test_missing_hub_model_names_the_param(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the hub library reads the variable once, at import: set its constant too, or it goes online
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    predictor = build_predictor("big", {"kind": "hf", "model": "no-such-org/no-such-model", "device": "cpu"})
    with pytest.raises(NepError, match=r"^generate\.predictors\.big\.model: cannot load") as info:
        predict_all(predictor, examples()[:1])
    assert "\n" not in str(info.value)


def test_chat_messages_hold_the_sections_and_require_the_tag():
    ex = examples()[0]
    system, user = chat_messages(ex)
    assert system == {"role": "system", "content": SYSTEM_INSTRUCTION}
    assert "<next_version>" in SYSTEM_INSTRUCTION and "</next_version>" in SYSTEM_INSTRUCTION
    sections = parse_prompt(ex["prompt"])
    for body in sections.values():
        assert body in user["content"]
    assert "shapes.py" in user["content"]


def test_chat_messages_show_the_history_as_the_format_asks():
    from nep.config.schema import Format
    from nep.core.formats import Versions, answer_format
    from nep.core.formats.blocks import ORIGINAL
    from nep.predictors.prompts import system_instruction

    ex = examples()[0]
    fmt = answer_format(Format(answer="blocks", omit_original=True, history="blocks"))
    system, user = chat_messages(ex, fmt=fmt)
    blocks = fmt.history_text(Versions.of(ex))
    assert f"<edits_diff>\n{blocks}</edits_diff>" in user["content"] and "@@" not in user["content"]
    assert "unified diff" not in system["content"] and "edit blocks" in system["content"]
    assert system["content"] == system_instruction(fmt) and ORIGINAL in blocks
    # the paper's: the example's own diff, byte for byte
    assert parse_prompt(ex["prompt"])["diff"] in chat_messages(ex)[1]["content"]


# --------------------------------------------------------------------------------------------- transformers


def test_hf_base_model_batched_equals_one_at_a_time(tiny_dir):
    exs = examples()
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu"})
    assert predictor.style == "completion"  # no chat template: the training prompt
    batched = predict_all(predictor, exs, max_new_tokens=12, batch_size=4)
    single = predict_all(predictor, exs, max_new_tokens=12, batch_size=1)
    assert [p.raw_output for p in batched] == [p.raw_output for p in single]
    assert [p.output_tokens for p in batched] == [p.output_tokens for p in single]
    assert all(0 < p.output_tokens <= 12 and p.latency_s > 0 for p in batched)


def test_hf_prompt_lookup_gives_greedy_answers_byte_for_byte(tiny_dir):
    exs = examples()
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu", "stop_repeats": 2})
    for growth in (0, 3):  # with and without per-row budgets
        plain = predict_all(predictor, exs, max_new_tokens=24, batch_size=4, max_growth_tokens=growth)
        drafted = predict_all(predictor, exs, max_new_tokens=24, batch_size=4, max_growth_tokens=growth,
                              prompt_lookup_tokens=5)
        assert [p.raw_output for p in drafted] == [p.raw_output for p in plain]
        assert [(p.output_tokens, p.tags) for p in drafted] == [(p.output_tokens, p.tags) for p in plain]
        assert [p.logprob for p in drafted] == pytest.approx([p.logprob for p in plain], abs=1e-3)
        assert all(p.batch == 1 for p in drafted)  # prompt lookup: one prompt per model call


def test_replayed_loop_stop_is_where_the_step_by_step_guard_stops():
    from nep.predictors.stop import RepeatedLinesStop, replay_loop_stop

    class Chars:  # a tokenizer whose tokens are characters
        def decode(self, ids, skip_special_tokens=False):
            return "".join(chr(i) for i in ids)

    import torch

    text = "a = 1\n" + "x\n" * 6 + "y\n"
    tokens = [ord(c) for c in text]
    guard = RepeatedLinesStop(Chars(), ["prompt"], 0, 3)
    step_by_step = None
    for n in range(1, len(tokens) + 1):
        if guard(torch.tensor([tokens[:n]]), None)[0]:
            step_by_step = n
            break
    assert step_by_step == len("a = 1\n" + "x\n" * 3)
    assert replay_loop_stop(Chars(), tokens, "prompt", "", 3) == step_by_step
    assert replay_loop_stop(Chars(), tokens, "x\nx\nx\n", "", 3) is None  # the prompt holds the run
    assert replay_loop_stop(Chars(), tokens, "prompt", "", 0) is None


def test_hf_batches_by_prompt_length(tiny_dir):
    exs = examples()
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu"})
    groups = list(predictor.predict(exs, list(range(len(exs))), Settings.of(max_new_tokens=2, batch_size=2)))
    assert [len(g) for g in groups] == [2, 2, 1]
    lengths = [len(exs[i]["prompt"]) for g in groups for i, _ in g]
    assert lengths == sorted(lengths)


def test_hf_decoding_ignores_the_models_sampling_defaults(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nep.predictors.hf import TransformersGenerator

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    prompts = [e["prompt"] for e in examples()[:3]]
    plain = TransformersGenerator(model, tokenizer).generate(prompts, max_new_tokens=12)
    # what an instruct model's generation_config.json may hold: sampling and penalties
    model.generation_config.update(do_sample=True, temperature=0.7, top_k=5, repetition_penalty=5.0,
                                   no_repeat_ngram_size=1)
    again = TransformersGenerator(model, tokenizer).generate(prompts, max_new_tokens=12)
    assert [p.raw_output for p in again] == [p.raw_output for p in plain]


def test_hf_stops_at_eos_and_skips_prompts_beyond_the_context(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nep.core.prompts import model_boundary, strip_lead
    from nep.predictors.hf import TransformersGenerator

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    short, long = examples()[1]["prompt"], examples()[-1]["prompt"]
    head, lead = model_boundary(short)  # what the model is given: up to the marker
    prompt_ids = tokenizer(head, return_tensors="pt")["input_ids"]
    ids = model.generate(prompt_ids, max_new_tokens=10, do_sample=False)[0, prompt_ids.shape[1] :].tolist()
    stop = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])
    # declare the token the model writes at position `stop` an EOS: generation ends before it
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, ids[stop]]
    model.config.max_position_embeddings = 200
    gen = TransformersGenerator(model, tokenizer)
    assert len(tokenizer(long)["input_ids"]) >= 200
    out = gen.generate([short, long], max_new_tokens=10)
    assert (out[0].raw_output, out[0].output_tokens) == (strip_lead(tokenizer.decode(ids[:stop]), lead), stop)
    assert (out[1].raw_output, out[1].output_tokens, out[1].skipped) == ("", 0, "prompt_too_long")


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat_model(tiny_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model whose tokenizer has CHAT_TEMPLATE (an instruct model's stand-in)."""
    import shutil

    chat_dir = tmp_path / "chat"
    shutil.copytree(tiny_dir, chat_dir)
    config_path = chat_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config))
    return chat_dir


def test_hf_instruct_model_gets_the_chat_template(tiny_dir, tmp_path):
    chat_dir = chat_model(tiny_dir, tmp_path)
    predictor = build_predictor("instruct", {"kind": "hf", "model": str(chat_dir), "device": "cpu"})
    assert predictor.style == "chat"  # auto: the tokenizer has a chat template
    ex = examples()[0]
    rendered = predictor.render(ex)
    assert rendered.startswith(f"<|system|>\n{SYSTEM_INSTRUCTION}") and rendered.endswith("<|assistant|>\n")
    assert ex["prompt"] not in rendered  # not the training format
    preds = predict_all(predictor, [ex], max_new_tokens=6)
    assert preds[0].output_tokens > 0
    forced_base = build_predictor("b", {"kind": "hf", "model": str(chat_dir), "chat": False, "device": "cpu"})
    assert forced_base.style == "completion" and forced_base.render(ex) == ex["prompt"]


@pytest.fixture(scope="module")
def finetuned_dir(tmp_path_factory) -> Path:
    """The finetune helper's real run on the tiny model: two optimizer steps."""
    from nep.train.sft import run_finetune

    cfg = section("finetune", {
        "base_model": "tiny-random", "backend": "hf", "max_steps": 2, "gradient_accumulation_steps": 1,
        "warmup_steps": 0,
        "tiny": {"vocab_size": 400, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_seq_length": 512},
    })
    out = tmp_path_factory.mktemp("finetune")
    run_finetune(examples(), out, cfg, progress=False)
    return out


def test_finetuned_adapter_generates_batched_like_one_at_a_time(finetuned_dir):
    predictor = build_predictor("finetuned", {"kind": "finetuned", "model": str(finetuned_dir), "needs": "x"})
    assert isinstance(predictor, FinetunedPredictor) and predictor.style == "completion"
    exs = examples()
    batched = predict_all(predictor, exs, max_new_tokens=10, batch_size=8)
    single = predict_all(predictor, exs, max_new_tokens=10, batch_size=1)
    assert [p.raw_output for p in batched] == [p.raw_output for p in single]
    assert all(p.output_tokens <= 10 for p in batched)
    # the adapter is applied, merged into the base weights: the unmerged PEFT model answers the same
    model = predictor.generator.model
    unmerged = build_predictor("u", {"kind": "finetuned", "model": str(finetuned_dir), "merge_adapter": False})
    assert type(unmerged.generator.model).__name__.startswith("Peft") and not type(model).__name__.startswith("Peft")
    assert [p.raw_output for p in predict_all(unmerged, exs, max_new_tokens=10, batch_size=8)] == [
        p.raw_output for p in batched]
    assert predictor.generator.tokenizer.convert_tokens_to_ids("<|next_version|>") is not None


def test_finetuned_without_a_model_dir_says_so(tmp_path):
    predictor = build_predictor("finetuned", {"kind": "finetuned", "model": str(tmp_path / "none")})
    with pytest.raises(NepError, match=r"generate\.predictors\.finetuned\.model: .*run the finetune stage"):
        predict_all(predictor, examples()[:1], max_new_tokens=4)


def test_finetuned_in_another_answer_format_fails_before_loading(finetuned_dir, tmp_path):
    """The adapter records the format it was trained in (here the paper's whole version); a run asking
    for another fails in one line naming the keys that differ, before the model loads."""
    from nep.config.schema import Format

    predictor = build_predictor("finetuned", {"kind": "finetuned", "model": str(finetuned_dir)})
    with pytest.raises(NepError, match=r"^generate\.predictors\.finetuned\.model: .* trained in another answer "
                       r"format .*\(answer: 'whole' trained, 'blocks' asked\): set process\.format"):
        predict_all(predictor, examples()[:1], max_new_tokens=4, fmt=Format(answer="blocks"))
    assert predictor._generator is None  # nothing loaded
    with pytest.raises(NepError, match=r"\(history: 'diff' trained, 'blocks' asked\)"):
        predict_all(predictor, examples()[:1], max_new_tokens=4, fmt=Format(history="blocks"))
    # the paper's format, spelled out or left out, and region_lines outside `region` are the same format
    answered = predict_all(predictor, examples()[:1], max_new_tokens=2, fmt=Format(region_lines=3))
    assert len(answered) == 1 and predictor._generator is not None  # accepted: the model loaded and answered
    # an adapter trained in a format records it, and is held to it
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    meta = json.loads((finetuned_dir / "nep_finetune.json").read_text())
    meta["answer_format"] = Format(answer="region", region_lines=4, omit_original=True).model_dump()
    (blocks / "nep_finetune.json").write_text(json.dumps(meta))
    other = build_predictor("finetuned", {"kind": "finetuned", "model": str(blocks)})
    with pytest.raises(NepError, match=r"region_lines: 4 trained, 8 asked"):
        predict_all(other, examples()[:1], fmt=Format(answer="region", omit_original=True))
    # vLLM serving the adapter is held to it too, before vLLM is imported (it is not installed here)
    served = build_predictor("v", {"kind": "vllm", "adapter": str(blocks)})
    with pytest.raises(NepError, match=r"^generate\.predictors\.v\.adapter: .*\(answer: 'region' trained, 'whole'"):
        predict_all(served, examples()[:1])


# --------------------------------------------------------------------------------------------- openai


def test_openai_predictor_against_a_local_server(tmp_path, monkeypatch):
    from nep.predictors.openai import OpenAIPredictor

    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NEP_TEST_KEY", "sk-local-test")
    answer = "Here it is:\n<next_version>\nx = 2\n</next_version>"
    good = make_example(f"# [[answer:{answer}]]\nx = 1\n", f"# [[answer:{answer}]]\nx = 1\ny = 1\n", "x\n")
    bad = make_example("# [[fault:*400]]\na = 1\n", "# [[fault:*400]]\na = 1\nb = 1\n", "a\n")
    plain = make_example("p = 1\n", "p = 1\nq = 1\n", "p\n")
    entry = {"kind": "openai", "model": "gpt-test", "api_key_env": "NEP_TEST_KEY", "max_attempts": 1,
             "prices": {"gpt-test": {"input": 1.0, "output": 2.0}}, "needs": "data/split/test.jsonl"}
    with FakeOpenAI(default_answer="no tags here") as server:
        predictor = build_predictor("api", {**entry, "base_url": server.url})
        assert isinstance(predictor, OpenAIPredictor) and predictor.style == "chat"
        preds = predict_all(predictor, [good, bad, plain], max_new_tokens=64)
        assert server.authorization == {"Bearer sk-local-test"}
    assert preds[0].raw_output == answer and preds[0].output_tokens > 0 and preds[0].skipped is None
    assert extract_next_version(preds[0].raw_output, "chat").text == "x = 2\n"
    assert preds[1].raw_output == "" and preds[1].error == "backend_error.client_error" and preds[1].skipped is None
    assert preds[2].raw_output == "no tags here"
    assert not extract_next_version(preds[2].raw_output, "chat").ok
    assert predictor.report() == {}  # what this run sent depends on earlier runs: timing, not metrics
    run = predictor.timing()
    assert run["llm.requests"] == 3 and run["llm.cache_hits"] == 0 and run["llm.cost_usd"] > 0
    assert not any(k.startswith("llm.failed") for k in run)  # failures are counted once, from the records
    assert "sk-local-test" not in repr(run)


def test_openai_keeps_concurrency_requests_in_flight_with_one_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    exs = [make_example(f"# [[delay:0.2]] {i}\nx = 1\n", f"# [[delay:0.2]] {i}\nx = 2\n", "x\n", path=f"{i}.py")
           for i in range(12)]
    with FakeOpenAI(default_answer="<next_version>\nx = 3\n</next_version>") as server:
        predictor = build_predictor("api", {"kind": "openai", "model": "m", "base_url": server.url,
                                            "api_key_env": "", "concurrency": 6})
        groups = list(predictor.predict(exs, list(range(len(exs))), Settings.of(max_new_tokens=16, batch_size=2)))
        assert server.max_in_flight == 6  # not capped by generate.batch_size
    assert sorted(i for g in groups for i, _ in g) == list(range(12)) and all(len(g) == 1 for g in groups)
    backend = predictor.backend()
    assert predictor.backend() is backend  # one backend (one cache, one event loop) for the run


@pytest.mark.parametrize(("key_env", "message"), [
    ("NEP_ABSENT_KEY", r"generate\.predictors\.api\.api_key_env: .*NEP_ABSENT_KEY"),
    ("", r"generate\.predictors\.api\.base_url: cannot connect"),
])
def test_openai_without_key_or_server_names_the_param(tmp_path, monkeypatch, key_env, message):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NEP_ABSENT_KEY", raising=False)
    predictor = build_predictor("api", {"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                                        "api_key_env": key_env, "max_attempts": 1})
    with pytest.raises(NepError, match=message) as info:
        predict_all(predictor, examples()[:1])
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_vllm_predictor_on_the_tiny_model(tiny_dir):
    pytest.importorskip("vllm")
    predictor = build_predictor(
        "vllm", {"kind": "vllm", "model": str(tiny_dir), "gpu_memory_utilization": 0.3, "max_model_len": 2048}
    )
    exs = examples()
    preds = predict_all(predictor, exs)
    assert len(preds) == len(exs) and all(0 < p.output_tokens <= 8 for p in preds)
    assert [p.raw_output for p in predict_all(predictor, exs)] == [p.raw_output for p in preds]


@pytest.mark.gpu
def test_hf_on_gpu_matches_batched_and_single(tiny_dir):
    predictor = HFPredictor(model=str(tiny_dir), device="cuda", dtype="float32")
    exs = examples()
    batched = predict_all(predictor, exs, batch_size=8)
    single = predict_all(predictor, exs, batch_size=1)
    assert [p.output_tokens for p in batched] == [p.output_tokens for p in single]


def test_constrained_answers_can_always_apply(tiny_dir):
    from nep.config.schema import Format
    from nep.core.formats import Versions, answer_format

    exs = examples()
    blocks = Format(answer="blocks", omit_original=True)
    grammars = [answer_format(blocks).grammar(Versions.of(ex)) for ex in exs]
    entry = {"kind": "hf", "model": str(tiny_dir), "device": "cpu", "stop_repeats": 0}
    free = predict_all(build_predictor("tiny", entry), exs, max_new_tokens=40, batch_size=4, fmt=blocks)
    assert not all(g.allows(p.raw_output) for g, p in zip(grammars, free, strict=True))  # the random model's own
    bound = build_predictor("tiny", {**entry, "constrain": True})
    batched = predict_all(bound, exs, max_new_tokens=40, batch_size=4, fmt=blocks)
    assert all(g.allows(p.raw_output) for g, p in zip(grammars, batched, strict=True))
    assert all(g.may_end(p.raw_output) for g, p in zip(grammars, batched, strict=True) if p.tags["stop"] == "eos")
    # the grammar reads the rows alone: one at a time and drafted from the prompt, the same answers
    single = predict_all(bound, exs, max_new_tokens=40, batch_size=1, fmt=blocks)
    drafted = predict_all(bound, exs, max_new_tokens=40, batch_size=1, fmt=blocks, prompt_lookup_tokens=5)
    assert [p.raw_output for p in single] == [p.raw_output for p in batched] == [p.raw_output for p in drafted]


def test_constrain_needs_a_format_with_a_grammar_and_the_training_prompt(tiny_dir):
    with pytest.raises(ValueError, match=r"generate\.predictors\.x\.constrain: needs the training prompt"):
        check_predictor("x", {"kind": "hf", "model": "m", "chat": True, "constrain": True, "needs": "m"})
    predictor = build_predictor("x", {"kind": "hf", "model": str(tiny_dir), "device": "cpu", "constrain": True})
    with pytest.raises(NepError, match=r"generate\.predictors\.x\.constrain: the answer format 'whole' has no grammar"):
        predict_all(predictor, examples()[:1])


def test_the_grammar_processor_breaks_ties_as_argmax_and_keeps_refused_tokens_out():
    import torch

    from nep.predictors.hf import GrammarProcessor

    class Chars:  # token i is chr(i); 0 is EOS
        def decode(self, ids, skip_special_tokens=False):
            return "".join(chr(i) for i in ids if i)

        def __len__(self):
            return 128

    class OnlyB:  # answers made of "b" only
        def allows(self, prefix):
            return set(prefix) <= {"b"}

        def may_end(self, prefix):
            return prefix == "bb"

    processor = GrammarProcessor(Chars(), 1, [""], [OnlyB()], [0])
    scores = torch.full((1, 128), -5.0)
    scores[0, ord("a")] = scores[0, ord("b")] = scores[0, ord("c")] = 1.0  # a three-way tie: "a" wins argmax
    out = processor(torch.tensor([[7]]), scores.clone())
    assert int(out[0].argmax()) == ord("b") and out[0, ord("a")] == float("-inf")
    assert out[0, ord("z")] == -5.0  # lower scores stay
    scores[0, 0] = 2.0  # EOS first, but "" may not end
    assert int(processor(torch.tensor([[7]]), scores.clone())[0].argmax()) == ord("b")
    done = processor(torch.tensor([[7, ord("b"), ord("b")]]), scores.clone())
    assert int(done[0].argmax()) == 0  # "bb" may end
