"""Every answer format through the whole path on the tiny model: training rows, a fine-tune, a
generation run whose records hold full next versions (or why not), and the chat prompt a base
model gets (nep.core.formats)."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_EDITS, make_example
from predictors.test_predictors import chat_model

from nep.config.schema import Format, section
from nep.core.formats import FORMATS, Unrepresentable, answer_format
from nep.core.formats.region import REGION_START
from nep.core.prompts import NEXT, ORIGINAL
from nep.predictors.base import Prediction, Settings
from nep.predictors.baselines import OneByOne
from nep.predictors.kinds import build_predictor
from nep.predictors.prompts import system_instruction
from nep.predictors.runner import generate
from nep.util.jsonl import read_jsonl, write_jsonl

# reasons an answer in some format may give for not applying, besides the styles' own
REASONS = {"none", "incomplete", "diff", "region_malformed", "region_unterminated", "blocks_malformed", "block_empty",
           "block_not_found", "block_ambiguous", "blocks_overlap", "prompt_too_long"}


def examples() -> list[dict]:
    return [make_example(*edit, path=f"f{i}.py") for i, edit in enumerate(TINY_EDITS)]


def fmt(name: str, **options):
    return answer_format(Format(answer=name, region_lines=1, **options))


@pytest.mark.parametrize("name", list(FORMATS))
def test_training_rows_are_in_the_format(name, tiny_dir):
    from transformers import AutoTokenizer

    from nep.train.sft import sft_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    f = fmt(name)
    kept, stats = sft_examples(examples(), tokenizer, 4096, fmt=f)
    assert stats.used == len(kept) == len(TINY_EDITS) - sum(stats.dropped.values())
    writable = []
    for ex in examples():
        try:
            f.completion(ex)
            writable.append(ex)
        except Unrepresentable as e:
            assert stats.dropped[f"format_{e.reason}"] >= 1
    assert len(writable) == len(kept) >= 1
    for row, ex in zip(kept, writable, strict=True):
        assert row["prompt"] == f.prompt(ex) and row["completion"] == f.completion(ex)
        assert row["prompt"].endswith(f"{NEXT}\n")
        # the answer the model learns turns back into the next version
        assert f.read(row["completion"], "completion", ex).text == ex["next"]
    if name == "whole":
        assert [r["prompt"] for r in kept] == [e["prompt"] for e in examples()]
    if name == "region":
        assert all(REGION_START in r["prompt"] for r in kept)
    if name == "blocks":  # search/replace pairs, not the file
        assert all(r["completion"].startswith("<<<<<<< ORIGINAL\n") for r in kept)


def test_omit_original_rows_have_no_original_section(tiny_dir):
    from transformers import AutoTokenizer

    from nep.train.sft import sft_examples

    kept, _ = sft_examples(examples(), AutoTokenizer.from_pretrained(tiny_dir), 4096, fmt=fmt("whole", omit_original=True))
    assert kept and all(ORIGINAL not in r["prompt"] for r in kept)


class Oracle(OneByOne):
    """Answers with the training completion of the run's format (a perfectly trained model)."""

    kind = "oracle"

    def predict(self, examples, todo, settings):
        self.fmt = settings.answer_format
        yield from super().predict(examples, todo, settings)

    def predict_one(self, example):
        return Prediction(self.fmt.completion(example))


@pytest.mark.parametrize("name", list(FORMATS))
def test_records_hold_the_full_next_version_in_every_format(name, tmp_path, monkeypatch):
    import nep.predictors.runner as runner

    test = tmp_path / "test.jsonl"
    write_jsonl(test, examples())
    monkeypatch.setattr(runner, "build_predictor", lambda n, e: Oracle())
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.jsonl"
    metrics = generate("oracle", {"kind": "oracle"}, Settings.of(max_new_tokens=8, fmt=Format(answer=name, region_lines=8)),
                       test_path=test, out_path=out, metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json",
                       progress=False)
    records = list(read_jsonl(out))
    assert [r["output"] for r in records] == [e["next"] for e in examples()]
    assert metrics["extracted"] == len(records)
    assert all(r["prompt"] == e["prompt"] for r, e in zip(records, examples(), strict=True))  # evaluate parses it


def test_a_predictor_with_its_own_format_is_asked_and_read_in_it(tmp_path, monkeypatch):
    """`generate.predictors.P.format` replaces the run's answer format for P alone (the fair base
    model asked for the whole next version while the run trains edit blocks): P is asked in it,
    its answers read in it, and its checkpoint keyed on it; a bad section fails in one line."""
    import nep.predictors.runner as runner

    test = tmp_path / "test.jsonl"
    write_jsonl(test, examples())
    oracle = Oracle()
    monkeypatch.setattr(runner, "build_predictor", lambda n, e: oracle)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    run = Settings.of(max_new_tokens=8, fmt=Format(answer="blocks"))

    def records(entry):
        out = tmp_path / "out.jsonl"
        generate("oracle", entry, run, test_path=test, out_path=out, metrics_path=tmp_path / "m.json",
                 timing_path=tmp_path / "t.json", progress=False)
        return list(read_jsonl(out))

    own = records({"kind": "oracle", "format": {"answer": "whole"}})
    assert oracle.fmt.name == "whole" and [r["output"] for r in own] == [e["next"] for e in examples()]
    assert [r["raw_output"].split("\n")[0] for r in own] != ["<<<<<<< ORIGINAL"] * len(own)
    runs = records({"kind": "oracle"})  # the run's blocks: a new checkpoint, not the whole answers again
    assert oracle.fmt.name == "blocks" and all(r["raw_output"].startswith("<<<<<<< ORIGINAL") for r in runs)
    assert [r["output"] for r in runs] == [e["next"] for e in examples()]
    with pytest.raises(ValueError, match=r"^generate.predictors.b.format.answer: unknown 'wholee' .*did you mean 'whole'"):
        build_predictor("b", {"kind": "identity", "format": {"answer": "wholee"}})


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_finetuned_tiny_model_in_each_format(name, tmp_path, monkeypatch):
    """Fine-tune the tiny model for two steps in the format and generate with it: every record is a
    full next version or names why not (its answers are noise; the path is what is tested)."""
    from nep.train.sft import run_finetune

    cfg = section("finetune", {
        "base_model": "tiny-random", "backend": "hf", "max_steps": 2, "gradient_accumulation_steps": 1,
        "warmup_steps": 0,
        "tiny": {"vocab_size": 400, "hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_seq_length": 1024},
    })
    f = Format(answer=name, region_lines=1)
    model = tmp_path / "model"
    result = run_finetune(examples(), model, cfg, progress=False, fmt=answer_format(f))
    assert result.metrics["examples_used"] >= 1
    meta = json.loads((model / "nep_finetune.json").read_text())
    assert meta.get("answer_format", {}).get("answer", "whole") == name
    test = tmp_path / "test.jsonl"
    write_jsonl(test, examples())
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.jsonl"
    metrics = generate("ft", {"kind": "finetuned", "model": str(model), "needs": str(model)},
                       Settings.of(max_new_tokens=24, threads=1, fmt=f), test_path=test, out_path=out,
                       metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json", progress=False)
    records = list(read_jsonl(out))
    assert metrics["examples"] == len(records) == len(TINY_EDITS)
    for r in records:
        assert r["extracted"] == (r["extraction"] not in REASONS), r
    counted = sum(v for k, v in metrics.items() if k.startswith("extraction."))
    assert counted == len(records)  # every answer counted once, with how it was read or why it was not


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_base_model_chat_prompt_asks_for_the_format(name, tiny_dir, tmp_path):
    chat_dir = chat_model(tiny_dir, tmp_path)
    predictor = build_predictor("base_chat", {"kind": "hf", "model": str(chat_dir), "chat": True, "device": "cpu"})
    f = fmt(name)
    groups = list(predictor.predict(examples()[:1], [0], Settings.of(max_new_tokens=4, threads=1, fmt=f)))
    rendered = predictor.render(examples()[0])
    assert rendered.startswith(f"<|system|>\n{system_instruction(f)}") and rendered.endswith("<|assistant|>\n")
    assert f.chat_answer in rendered and f.chat_request in rendered
    assert (REGION_START in rendered) == (name == "region")
    assert groups[0][0][1].output_tokens > 0


def test_imported_generations_are_next_versions_whatever_the_format(tmp_path, monkeypatch):
    ex = examples()[0]
    test, theirs = tmp_path / "test.jsonl", tmp_path / "theirs.jsonl"
    write_jsonl(test, [ex])
    write_jsonl(theirs, [{"id": ex["id"], "output": ex["next"]}])
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.jsonl"
    generate("theirs", {"kind": "file", "path": str(theirs), "needs": str(theirs)},
             Settings.of(max_new_tokens=8, fmt=Format(answer="blocks")), test_path=test, out_path=out,
             metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json", progress=False)
    assert next(iter(read_jsonl(out)))["output"] == ex["next"]
