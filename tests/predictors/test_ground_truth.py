"""The ground truth is the real next version, for every predictor: a model trained on the template
writes the file, then the template's newline, then EOS; extraction removes exactly that newline, so
an answer equal to the next file is an exact match whether the file ends with a newline or not.
`evaluate.protocol: paper_offline` scores as the paper's generate_offline.py does instead."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from conftest import make_example
from fake_openai import FakeOpenAI

from nep.core.prompts import paper_prompt, template_completion
from nep.evaluate.evaluation import score_predictor
from nep.evaluate.protocol import paper_offline_extract, scored_pair
from nep.predictors.base import Prediction, Settings
from nep.predictors.runner import generate
from nep.util.jsonl import read_jsonl, write_jsonl
from nep.util.paths import generations as _gen
from nep.util.paths import judgments as _judge

BASE = "".join(f"value_{i} = compute({i})\n" for i in range(12))
CURRENT = BASE.replace("value_2 = compute(2)\n", "value_2 = compute(2)\nlog(value_2)\n")
NEXT = CURRENT.replace("value_8 = compute(8)\n", "value_8 = compute(8)\nlog(value_8)\n")


def example(eol: bool) -> dict:
    """One example whose three versions end with a newline (eol) or not."""
    cut = (lambda t: t) if eol else (lambda t: t.rstrip("\n"))
    ex = make_example(cut(BASE), cut(CURRENT), cut(NEXT), path=f"mod_{eol}.py")
    ex.update(old_file=ex["path"], new_file=ex["path"], commit=f"{int(eol):040x}")
    return ex


EXAMPLES = [example(True), example(False)]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    write_jsonl(tmp_path / "data/split/test.jsonl", EXAMPLES)
    return tmp_path


def run(name: str, entry: dict, protocol: str = "next_version") -> tuple[list[dict], list]:
    """Generate with the predictor, then score it as the evaluate stage does (no judgments)."""
    generate(name, {"needs": "data/split/test.jsonl", **entry}, Settings.of(max_new_tokens=64, batch_size=8, threads=1),
             test_path="data/split/test.jsonl", progress=False)
    Path("data/judge").mkdir(parents=True, exist_ok=True)
    Path(f"data/judge/{name}.jsonl").write_text("")
    records = list(read_jsonl(f"data/generate/{name}.jsonl"))
    scores, _ = score_predictor(name, *predictor_files(name), context_lines=3, protocol=protocol)
    return records, scores


def assert_exact(records, scores):
    for ex, rec, s in zip(EXAMPLES, records, scores, strict=True):
        assert rec["ground_truth"] == ex["next"]  # the real next version
        assert rec["output"] == ex["next"], rec["raw_output"]
        assert s.exact_match and s.partial_match and s.position_match and s.delta_chrf == 1.0


def template_answers(ex: dict) -> str:
    """What a template-trained model writes after the prompt (EOS not included)."""
    return template_completion(ex["next"])


# ------------------------------------------------------------------ finetuned and hf (transformers)
class FakeGenerator:
    """Stands in for TransformersGenerator: answers each prompt as a template-trained model would."""

    def __init__(self, model, tokenizer):
        self.tokenizer = types.SimpleNamespace(chat_template=None)
        self.prompts: list[str] = []

    def generate(self, prompts, *, max_new_tokens, add_special_tokens=True, progress=None, stop_repeats=0,
                 budgets=None):
        self.prompts += prompts
        by_prompt = {ex["prompt"]: ex for ex in EXAMPLES}
        by_paper = {paper_prompt(ex["original"], ex["current"], old_file=ex["path"], new_file=ex["path"]): ex
                    for ex in EXAMPLES}
        return [Prediction(template_answers(by_prompt.get(p) or by_paper[p]), 5) for p in prompts]


@pytest.mark.parametrize("entry", [
    {"kind": "finetuned", "model": "models/finetune"},
    {"kind": "hf", "model": "some/base", "chat": False},
    {"kind": "hf", "model": "lurf21/some-NEP", "chat": False, "template": "paper"},
], ids=["finetuned", "hf", "hf-paper-template"])
def test_transformers_predictors_answer_the_file(project, monkeypatch, entry):
    import nep.predictors.hf as hf

    monkeypatch.setattr(hf, "TransformersGenerator", FakeGenerator)
    monkeypatch.setattr(hf.HFPredictor, "load", lambda self: (None, None))
    monkeypatch.setattr(hf.FinetunedPredictor, "load", lambda self: (None, None))
    records, scores = run("m", entry)
    assert_exact(records, scores)
    assert [r["raw_output"] for r in records] == [template_answers(ex) for ex in EXAMPLES]


# ------------------------------------------------------------------ vllm (a stand-in engine)
def fake_vllm(monkeypatch) -> list[str]:
    """A `vllm` module whose engine answers as a template-trained model; returns the prompts seen."""
    seen: list[str] = []

    class LLM:
        def __init__(self, **kw):
            pass

        def generate(self, prompts, params, lora_request=None, use_tqdm=False):
            seen.extend(prompts)
            by_paper = {paper_prompt(ex["original"], ex["current"], old_file=ex["path"], new_file=ex["path"]): ex
                        for ex in EXAMPLES}
            out = []
            for p in prompts:
                lead = "" if p.endswith("\n") else "\n"  # a prompt ending at the marker: the model writes its newline
                ex = next((e for e in EXAMPLES if e["prompt"] == p + lead), None) or by_paper[p + lead]
                text = lead + template_answers(ex)
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, token_ids=[0] * 5, finish_reason="stop")]))
            return out

    module = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return seen


@pytest.mark.parametrize("template", ["nep", "paper"])
def test_vllm_answers_the_file(project, monkeypatch, template):
    seen = fake_vllm(monkeypatch)
    records, scores = run("fast", {"kind": "vllm", "model": "m", "chat": False, "template": template})
    assert_exact(records, scores)
    if template == "paper":  # the released models get the prompt they were trained on
        assert seen[0].startswith("<|original_code|>\n") and seen[0] + "\n" != EXAMPLES[0]["prompt"]
    assert all(p.endswith("<|next_version|>") for p in seen)  # the marker's newline is the model's (model_boundary)


def test_vllm_gives_each_prompt_its_growth_limit(project, monkeypatch):
    from nep.predictors.vllm import stop_reason

    seen_params = []

    class Tokenizer:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    class LLM:
        def __init__(self, **kw):
            pass

        def get_tokenizer(self):
            return Tokenizer()

        def generate(self, prompts, params, lora_request=None, use_tqdm=False):
            seen_params.append(params)
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
                text="x", token_ids=[0] * p["max_tokens"], finish_reason="length")]) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw))
    generate("v", {"needs": "data/split/test.jsonl", "kind": "vllm", "model": "m", "chat": False},
             Settings.of(max_new_tokens=64, batch_size=8, threads=1, max_growth_tokens=5), test_path="data/split/test.jsonl", progress=False)
    [params] = seen_params
    assert [p["max_tokens"] for p in params] == [min(64, len(ex["current"].split()) + 5) for ex in EXAMPLES]
    metrics = json.loads(Path("metrics/generate/v.json").read_text())
    assert metrics["stop.growth_limit"] == len(EXAMPLES) and metrics["cut"] == len(EXAMPLES)
    assert (stop_reason("stop", 5, 64), stop_reason("length", 5, 64), stop_reason("length", 64, 64)) == (
        "eos", "growth_limit", "max_new_tokens")


def test_vllm_falls_back_to_hf_where_it_cannot_run(project, monkeypatch):
    import nep.predictors.hf as hf

    monkeypatch.setattr("nep.util.device.cuda_available", lambda: False)  # no GPU: vLLM cannot run
    monkeypatch.setattr(hf, "TransformersGenerator", FakeGenerator)
    monkeypatch.setattr(hf.HFPredictor, "load", lambda self: (None, None))
    entry = {"kind": "vllm", "model": "lurf21/some-NEP", "chat": False, "template": "paper", "fallback": "hf"}
    records, scores = run("released", entry)
    assert_exact(records, scores)
    assert json.loads(Path("metrics/generate/released.json").read_text())["vllm.fell_back_to_hf"] == 1
    with pytest.raises(ValueError, match=r"fallback: hf cannot serve an `adapter`"):
        from nep.predictors.kinds import check_predictor

        check_predictor("x", {**entry, "adapter": "models/finetune", "needs": "models/finetune"})


# ------------------------------------------------------------------ openai (a local server)
def test_openai_answers_the_file(tmp_path, monkeypatch):
    """An instruct model writes the tag right after the file, as nep's chat prompt shows the current
    version: the answer is exactly the file. One that puts `</next_version>` on a line of its own
    after a file without a final newline adds one: not exact, exact once line ends are ignored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    exs = []
    for eol, closing in ((True, "own_line"), (False, "inline"), (False, "own_line")):
        ex = example(eol)
        body = ex["next"] if closing == "inline" else ex["next"].rstrip("\n") + "\n"
        answer = f"<next_version>\n{body}</next_version>"
        # the server answers by a marker in the prompt: put it in the original version only
        original = f"# [[answer:{answer}]]\n" + ex["original"]
        exs.append(make_example(original, ex["current"], ex["next"], path=f"{eol}_{closing}.py"))
    write_jsonl(tmp_path / "data/split/test.jsonl", exs)
    with FakeOpenAI() as server:
        records, scores = run("api", {"kind": "openai", "model": "m", "base_url": server.url, "api_key_env": ""})
    exact = [(s.exact_match, s.exact_match_eol) for s in scores]
    # a file with a final newline, the tag on its own line (the newline before it is the file's); a
    # file without one, the tag right after it; the same file, the tag on its own line
    assert exact == [(True, True), (True, True), (False, True)]
    assert [r["output"] for r in records] == [exs[0]["next"], exs[1]["next"], exs[2]["next"] + "\n"]


# ------------------------------------------------------------------ file (imported generations)
@pytest.mark.parametrize("style", ["auto", "completion"])
def test_file_rows_are_the_file_or_a_template_models_raw_output(project, style):
    rows = [{"commit": ex["commit"], "new_file": ex["new_file"],
             "output": ex["next"] if style == "auto" else template_answers(ex)} for ex in EXAMPLES]
    Path("theirs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, scores = run("theirs", {"kind": "file", "path": "theirs.jsonl", "style": style})
    assert_exact(records, scores)


# ------------------------------------------------------------------ the paper's offline protocol
def test_paper_offline_extraction():
    assert paper_offline_extract("a\nb\n") == "a\nb\n"
    assert paper_offline_extract("x<next_version>\na\n\n</next_version>y") == "a\n"
    assert paper_offline_extract("<next_version>\na</next_version>") == "<next_version>\na</next_version>"
    assert paper_offline_extract("<next_version>\na\n") == "<next_version>\na\n"


def test_paper_offline_scores_both_sides_with_the_template_newline(project, monkeypatch):
    """generate_offline.py: ground truth = the text after `<|next_version|>\\n` (next + newline), the
    answer = the raw output. A template-trained model's answer is exact under both protocols; an
    answer without the template newline (the file alone) only under next_version."""
    rows = [{"commit": ex["commit"], "new_file": ex["new_file"], "output": template_answers(ex)} for ex in EXAMPLES]
    Path("raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for protocol in ("next_version", "paper_offline"):
        _, scores = run("raw", {"kind": "file", "path": "raw.jsonl", "style": "completion"}, protocol)
        assert all(s.exact_match for s in scores), protocol
        _, plain = run("plain", {"kind": "identity"}, protocol)  # the current file: never the next one
        assert not any(s.exact_match for s in plain)
    files = [{"commit": ex["commit"], "new_file": ex["new_file"], "output": ex["next"]} for ex in EXAMPLES]
    Path("files.jsonl").write_text("".join(json.dumps(r) + "\n" for r in files))
    _, scores = run("files", {"kind": "file", "path": "files.jsonl"}, "paper_offline")
    assert not any(s.exact_match for s in scores)
    # the file without a final newline is exact once line ends are ignored; the one with it is not
    # (its ground truth ends with a blank line there)
    assert [s.exact_match_eol for s in scores] == [False, True]
    record = {"ground_truth": "a", "output": "", "raw_output": "", "extracted": False, "extraction": "missing"}
    assert scored_pair(record, "paper_offline") == ("a\n", "", False)  # no answer: a miss


def predictor_files(name: str):
    """The pipeline's generations and judgments files of predictor `name` (relative to the cwd)."""
    return _gen(name), _judge(name)
