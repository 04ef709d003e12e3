"""LoRA fine-tuning through trl's SFTTrainer on the tiny model: markers, completion-only labels,
training, save and load, fail-before-paying checks, and (slow) two processes under accelerate."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nep.config.schema import Finetune, section
from nep.core.prompts import MARKERS, NEXT, build_training_text, model_boundary
from nep.train.model import (
    add_markers,
    check_base_model,
    load_base_hf,
    load_finetuned,
    prepare_hf,
    resolve_backend,
    save_finetuned,
)
from nep.train.sft import build_sft_trainer, sft_examples, trainer_kwargs
from nep.train.tiny import build_tiny_model
from nep.util.errors import NepError

IGNORE = -100
ORIGINAL = "total = 0\nfor x in xs:\n    total += x\n"
CURRENT = "total = 0\ncount = 0\nfor x in xs:\n    total += x\n"
NEXT_VERSION = "total = 0\ncount = 0\nfor x in xs:\n    total += x\n    count += 1\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def example(i: int) -> dict[str, str]:
    t = build_training_text(ORIGINAL, CURRENT.replace("count", f"n{i}"), NEXT_VERSION.replace("count", f"n{i}"), path="sum.py")
    return {"prompt": t.prompt, "completion": t.completion}


SMALL = section("finetune",
    {"tiny": {"max_steps": 3}, "gradient_accumulation_steps": 2, "warmup_steps": 1, "learning_rate": 1e-2, "embedding_learning_rate": 1e-2}
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [e["prompt"] + e["completion"] for e in map(example, range(8))]
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny"), vocab_size=400)


@pytest.fixture(scope="module")
def trainer(tiny_dir, tmp_path_factory):
    """An SFTTrainer over 8 examples of the tiny model (not trained yet)."""
    model, tokenizer = prepare_hf(tiny_dir, SMALL)
    examples, _ = sft_examples(map(example, range(8)), tokenizer, 512)
    return build_sft_trainer(model, tokenizer, examples, SMALL, tmp_path_factory.mktemp("scratch"), progress=False)


@pytest.fixture(scope="module")
def trained(trainer, tiny_dir, tmp_path_factory):
    """A few LoRA steps, saved; returns (peft model, tokenizer, base state, params before, out dir)."""
    import torch

    base_state = {k: v.clone() for k, v in load_base_hf(tiny_dir, device="cpu")[0].state_dict().items()}
    model, tokenizer = trainer.model, trainer.processing_class
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    output = trainer.train()
    assert output.global_step == 3
    assert torch.isfinite(torch.tensor(output.training_loss))
    out = tmp_path_factory.mktemp("finetuned")
    save_finetuned(model, tokenizer, out, {"base_model": str(tiny_dir), "backend": "hf", "params": SMALL.model_dump()})
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


def test_loss_masked_on_prompt_through_the_next_version_line(trainer):
    """SFTTrainer's prepared data: every prompt token (up to and including the `<|next_version|>`
    line) is labelled -100; the completion and the appended EOS are the labels."""
    tokenizer = trainer.processing_class
    e = example(0)
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    head, lead = model_boundary(e["prompt"])
    n_prompt = len(tokenizer(head)["input_ids"])
    assert ids[:n_prompt] == tokenizer(head)["input_ids"]  # the prompt as generation sees it
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert ids[n_prompt - 1] == tokenizer.convert_tokens_to_ids(NEXT)  # ...<|next_version|> | "\n" + completion
    assert labels[n_prompt:] == ids[n_prompt:]
    assert labels[-1] == tokenizer.eos_token_id and labels.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(labels[n_prompt:-1]) == lead + e["completion"] and lead == "\n"


def _logit_grads(trainer, batch, loss_fn):
    """The gradient of `loss_fn(inputs)`'s loss with respect to the decoder's last hidden states, per
    position: the LM head maps position t's state to position t's logits alone, so a position gets
    a gradient exactly when its logits count (whether or not the head ran on the others)."""
    model = trainer.model
    captured = {}

    def keep(_module, _args, output):
        output.retain_grad()
        captured["logits"] = output

    handle = model.get_base_model().model.norm.register_forward_hook(keep)
    try:
        model.zero_grad()
        loss = loss_fn(dict(batch))
        loss.backward()
    finally:
        handle.remove()
        model.zero_grad()
    return loss.detach(), captured["logits"].grad[0].abs().sum(-1)


def test_prompt_tokens_carry_no_loss(trainer):
    """Completion-only, checked on the loss itself: the gradient of the trainer's loss reaches no
    logit that predicts a prompt token (positions before the `<|next_version|>` token), and every
    logit that predicts an answer token or EOS; so does the weighted loss (changed_token_weight)."""
    import torch

    row = trainer.train_dataset[0]
    n_prompt = row["labels"].index(next(x for x in row["labels"] if x != IGNORE))
    batch = trainer.data_collator([{"input_ids": row["input_ids"], "labels": row["labels"]}])
    trainer.model.train()
    loss, grads = _logit_grads(trainer, batch, lambda inputs: trainer.compute_loss(trainer.model, inputs))
    # position t predicts token t + 1: positions 0 .. n_prompt - 2 predict prompt tokens
    assert torch.all(grads[: n_prompt - 1] == 0)
    assert torch.all(grads[n_prompt - 1 : -1] > 0) and grads[-1] == 0  # the last position predicts nothing
    weights = torch.ones_like(batch["input_ids"], dtype=torch.float)
    weights[0, n_prompt + 2] = 5.0  # any weight on an answer token, any on the prompt
    weights[0, : n_prompt] = 7.0
    weighted, wgrads = _logit_grads(trainer, batch, lambda inputs: trainer.label_loss(
        trainer.model, {**inputs, "token_weights": weights}))
    assert torch.all(wgrads[: n_prompt - 1] == 0) and torch.all(wgrads[n_prompt - 1 : -1] > 0)
    # all weights 1: the weighted loss is the model's own, which is transformers' loss on every logit
    same = trainer.label_loss(trainer.model, {**batch, "token_weights": torch.ones_like(weights)})
    assert same.item() == pytest.approx(loss.item(), rel=1e-5)
    with torch.no_grad():
        own = trainer.model(**batch).loss  # the model's forward with labels: logits at every position
    assert loss.item() == pytest.approx(own.item(), rel=1e-5)
    trainer.model.eval()


def test_the_loss_on_a_padded_batch_is_the_models_own(trainer):
    """Two rows of different lengths in one batch (padding, answers starting at different
    positions): the loss that runs the LM head from the first labelled position on equals the
    model's own loss over every logit."""
    import torch

    row = trainer.train_dataset[0]
    rows = [row, {"input_ids": row["input_ids"][7:], "labels": row["labels"][7:]}]  # 7 prompt tokens fewer
    batch = trainer.data_collator([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows])
    assert batch["attention_mask"].sum(1).tolist() != [batch["input_ids"].shape[1]] * 2  # one row is padded
    with torch.no_grad():
        ours = trainer.label_loss(trainer.model, dict(batch))
        own = trainer.model(**batch).loss
    assert ours.item() == pytest.approx(own.item(), rel=1e-5)


def test_changed_token_weights_mark_the_lines_the_edit_writes(trainer):
    from nep.train.sft import changed_token_weights, training_row

    tokenizer = trainer.processing_class
    e = example(0)
    current = CURRENT.replace("count", "n0")
    row = training_row(tokenizer, e["prompt"], e["completion"])
    weights = changed_token_weights(tokenizer, e["prompt"], e["completion"], current, 4.0)
    n_prompt = len(row["input_ids"]) - sum(row["completion_mask"])
    assert len(weights) == len(row["input_ids"]) and weights[:n_prompt] == [0.0] * n_prompt and weights[-1] == 1.0
    heavy = [t for t, w in zip(row["input_ids"], weights) if w == 4.0]
    assert tokenizer.decode(heavy).strip() == "n0 += 1"  # the one line the next version adds
    assert set(weights[n_prompt:]) == {1.0, 4.0}
    assert changed_token_weights(tokenizer, e["prompt"], e["completion"], e["completion"][:-1], 4.0)[n_prompt:] == \
        [1.0] * (len(weights) - n_prompt)  # a copy of the current version: nothing changed


def test_changed_token_weight_trains_with_the_weights_column(tiny_dir, tmp_path):
    import torch

    cfg = SMALL.model_copy(update={"changed_token_weight": 3.0, "tiny": SMALL.tiny.model_copy(update={"max_steps": 1})})
    model, tokenizer = prepare_hf(tiny_dir, cfg)
    examples, _ = sft_examples(map(example, range(4)), tokenizer, 512)
    weighted = build_sft_trainer(model, tokenizer, examples, cfg, tmp_path, progress=False)
    row = weighted.train_dataset[0]
    assert len(row["token_weights"]) == len(row["input_ids"]) and 3.0 in row["token_weights"]
    batch = weighted.data_collator([weighted.train_dataset[0], weighted.train_dataset[1]])
    assert batch["token_weights"].shape == batch["input_ids"].shape
    assert torch.all(batch["token_weights"][batch["attention_mask"] == 0] == 0)
    output = weighted.train()
    assert output.global_step == 1 and torch.isfinite(torch.tensor(output.training_loss))


def test_bf16_on_the_cpu_trains_under_autocast_over_fp32_weights(tiny_dir, tmp_path):
    """finetune.precision bf16 on the CPU: the Trainer's autocast runs the forward pass in bf16 (its
    logits are bf16), the weights and LoRA matrices stay fp32, the adapter moves, and the loss is
    not fp32's (the precision really changed). fp32 and auto are today's CPU run."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU")
    one = SMALL.tiny.model_copy(update={"max_steps": 1})
    losses, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        cfg = SMALL.model_copy(update={"precision": precision, "tiny": one, "warmup_steps": 0})
        model, tokenizer = prepare_hf(tiny_dir, cfg)
        examples, _ = sft_examples(map(example, range(4)), tokenizer, 512)
        run = build_sft_trainer(model, tokenizer, examples, cfg, tmp_path / precision, progress=False)
        assert run.args.bf16 is (precision == "bf16")
        seen = []
        hook = model.get_base_model().lm_head.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.dtype))
        lora = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_B" in k}
        losses[precision] = run.train().training_loss
        hook.remove()
        dtypes[precision] = seen[0]
        assert all(v.dtype == torch.float32 for v in model.parameters())
        assert all(not torch.equal(lora[k], p.detach()) for k, p in model.named_parameters() if k in lora)
    assert dtypes == {"fp32": torch.float32, "bf16": torch.bfloat16}
    assert math.isfinite(losses["bf16"]) and losses["bf16"] != losses["fp32"]


def test_precision_the_device_cannot_run_fails_before_loading(monkeypatch, tmp_path):
    import nep.util.device
    from nep.train.sft import run_finetune

    if nep.util.device.cuda_available():
        pytest.skip("checks the CPU")
    loaded = []
    monkeypatch.setattr("nep.train.sft.build_base", lambda *a, **k: loaded.append(a))
    with pytest.raises(NepError, match=r"^finetune\.precision: fp16 training needs a CUDA GPU; on the CPU use bf16 or fp32$"):
        run_finetune([example(0)], tmp_path, SMALL.model_copy(update={"precision": "fp16"}), progress=False)
    assert loaded == []
    assert nep.util.device.mixed_precision("cpu", "auto") == nep.util.device.mixed_precision("cpu", "fp32") == "no"
    assert nep.util.device.weights_dtype("cpu", "bf16") == "auto"  # fp32 weights under autocast


def test_collator_pads_labels_with_ignore_index(trainer):
    batch = trainer.data_collator([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    pad = trainer.processing_class.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, pad, pad]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_overlong_examples_truncated_or_dropped_and_counted(tiny_dir, tmp_path):
    _, tokenizer = load_base_hf(tiny_dir, device="cpu")
    add_markers(tokenizer)
    e = example(0)
    n_prompt = len(tokenizer(model_boundary(e["prompt"])[0])["input_ids"])
    kept, stats = sft_examples([e], tokenizer, n_prompt + 3)
    assert [{k: r[k] for k in e} for r in kept] == [e] and stats.truncated == 1 and stats.tokens == n_prompt + 3 and stats.completion_tokens == 3
    assert sft_examples([e], tokenizer, n_prompt + 3, "drop")[1].dropped == {"too_long": 1}
    assert sft_examples([e], tokenizer, n_prompt)[1].dropped == {"prompt_too_long": 1}
    records = [e, {"prompt": "no marker", "completion": "x"}, {"prompt": e["prompt"]}]
    kept, stats = sft_examples(records, tokenizer, n_prompt + 3)
    assert len(kept) == stats.used == 1 and stats.truncated == 1 and stats.examples == 3
    assert stats.dropped == {"prompt_without_next_marker": 1, "missing_prompt_or_completion": 1}
    # and SFTTrainer cuts the truncated example's completion at the window, losing EOS
    cfg = section("finetune", {"base_model": str(tiny_dir), "max_seq_length": n_prompt + 3})
    model, tokenizer = prepare_hf(tiny_dir, cfg)
    row = build_sft_trainer(model, tokenizer, kept, cfg, tmp_path, progress=False).train_dataset[0]
    assert len(row["input_ids"]) == n_prompt + 3 and row["labels"][-1] != tokenizer.eos_token_id
    assert sum(label != IGNORE for label in row["labels"]) == 3


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


def test_embeddings_train_at_their_own_learning_rate(trainer):
    groups = trainer.optimizer.param_groups
    assert [g["initial_lr"] for g in groups] == [SMALL.learning_rate, SMALL.embedding_learning_rate]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all("lora_" in names[id(p)] for p in groups[0]["params"])
    assert all("modules_to_save" in names[id(p)] for p in groups[1]["params"])


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
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"])  # not PEFT's hash order
    # nothing that names the peft release: a peft upgrade alone leaves the model directory's bytes
    assert "peft_version" not in config and None not in config.values()
    assert not (out / "README.md").exists()  # peft's blank model card


def test_config_defaults_are_the_papers_and_params_parse():
    from nep.config.params import load_yaml

    cfg = Finetune()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 16, 0.0)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (cfg.learning_rate, cfg.embedding_learning_rate, cfg.epochs) == (1e-4, 1e-5, 2)
    assert (cfg.batch_size, cfg.gradient_accumulation_steps, cfg.max_seq_length) == (1, 4, 2048)
    assert (cfg.warmup_steps, cfg.weight_decay, cfg.lr_scheduler, cfg.seed, cfg.threads) == (5, 0.01, "linear", 3407, 0)
    assert section("finetune", load_yaml(REPO_ROOT / "params.yaml")["finetune"]) == Finetune()  # params.yaml mirrors
    # tiny-random's own caps apply to it alone; the main max_steps caps every model
    assert (cfg.effective_max_seq_length, cfg.effective_max_steps) == (cfg.tiny.max_seq_length, cfg.tiny.max_steps)
    real = Finetune(base_model="Qwen/Qwen2.5-Coder-7B")
    assert (real.effective_max_seq_length, real.effective_max_steps) == (2048, 0)
    assert Finetune(max_steps=2).effective_max_steps == 2
    with pytest.raises(ValueError, match=r"finetune\.lora_rank: unknown key \(did you mean finetune\.lora_r"):
        section("finetune", {"lora_rank": 8})
    with pytest.raises(ValueError, match="finetune.backend"):
        section("finetune", {"backend": "tpu"})


def test_trainer_args_are_the_params_and_keep_the_global_batch(monkeypatch, tmp_path):
    args = trainer_kwargs(Finetune(base_model="x"), tmp_path)
    assert (args["learning_rate"], args["lr_scheduler_type"], args["warmup_steps"], args["weight_decay"]) == (1e-4, "linear", 5, 0.01)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"], args["num_train_epochs"]) == (1, 4, 2)
    assert (args["seed"], args["max_steps"], args["save_strategy"], args["report_to"]) == (3407, -1, "no", "none")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert trainer_kwargs(Finetune(base_model="x"), tmp_path)["gradient_accumulation_steps"] == 2
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="finetune.gradient_accumulation_steps"):
        trainer_kwargs(Finetune(base_model="x"), tmp_path)


def test_backend_fails_before_paying(monkeypatch):
    import nep.util.device

    if nep.util.device.cuda_available():
        pytest.skip("checks the CPU fallback")
    assert resolve_backend("auto") == "hf"
    assert resolve_backend("hf") == "hf"
    with pytest.raises(NepError, match=r"^finetune\.backend: unsloth needs a CUDA GPU.*set finetune\.backend to hf"):
        resolve_backend("unsloth")
    # a GPU but no unsloth: auto falls back, an explicit unsloth names the requirements file
    monkeypatch.setattr(nep.util.device, "cuda_available", lambda: True)
    monkeypatch.setitem(sys.modules, "unsloth", None)  # import unsloth → ImportError
    assert resolve_backend("auto") == "hf"
    with pytest.raises(NepError, match=r"^finetune\.backend: unsloth cannot be imported.*requirements-gpu\.txt"):
        resolve_backend("unsloth")


def test_missing_base_model_is_one_line_naming_the_param(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    check_base_model("tiny-random")
    check_base_model(str(tmp_path))  # a local directory is taken as it is
    with pytest.raises(NepError, match=r"^finetune\.base_model: 'nep-test/no-such-model' ") as e:
        check_base_model("nep-test/no-such-model")
    assert "\n" not in str(e.value)


def test_heavy_imports_are_lazy():
    code = (
        "import sys, nep.train.sft, nep.train.model, nep.train.tiny, stages.finetune; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'unsloth', 'dvclive', 'accelerate', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def _stage_run(project: Path, launcher: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([*launcher, "-m", "stages.finetune"], cwd=project, env=env, check=True, capture_output=True, text=True)
    return json.loads((project / "metrics/finetune/metrics.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): the same global batch (each process
    accumulates half), the same loss curve and the same adapter as one process, within float noise."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from nep.util.jsonl import write_jsonl

    runs = {}
    for name, launcher in {
        "one": [sys.executable],
        "two": [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533"],
    }.items():
        project = tmp_path / name
        write_jsonl(project / "data/split/train.jsonl", [example(i) for i in range(16)])
        params = {"tiny": {"vocab_size": 400, "max_seq_length": 256, "max_steps": 3}, "learning_rate": 1e-2, "embedding_learning_rate": 1e-2}
        (project / "params.yaml").write_text(yaml.safe_dump({"finetune": params}))
        runs[name] = (_stage_run(project, launcher), project)
    (one, p1), (two, p2) = runs["one"], runs["two"]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["steps"] == two["steps"] == 3 and one["examples_used"] == two["examples_used"] == 16
    curves = [(p / "metrics/finetune/plots/metrics/train_loss.tsv").read_text().splitlines() for p in (p1, p2)]
    assert len(curves[0]) == len(curves[1]) == 1 + 3  # one row per optimizer step, written once
    for a, b in zip(curves[0][1:], curves[1][1:]):
        assert float(a.split("\t")[1]) == pytest.approx(float(b.split("\t")[1]), abs=1e-4)
    a, b = (load_file(p / "models/finetune/adapter_model.safetensors") for p in (p1, p2))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert any(not torch.allclose(a[k], torch.zeros_like(a[k])) for k in a if "lora_B" in k)  # it did train


@pytest.mark.gpu
def test_unsloth_backend_trains_and_loads(tmp_path):
    """The real unsloth path on a GPU: tiny model, a few steps, saved, loaded with load_finetuned."""
    pytest.importorskip("unsloth")
    import torch

    from nep.train.sft import run_finetune

    records = [example(i) for i in range(8)]
    cfg = section("finetune", {"backend": "unsloth", "tiny": {"max_steps": 2, "max_seq_length": 512, "vocab_size": 400}})
    metrics = run_finetune(records, tmp_path, cfg, progress=False).metrics
    assert metrics["backend"] == "unsloth" and metrics["steps"] == 2
    model, tokenizer = load_finetuned(tmp_path, device="cuda")
    enc = tokenizer(records[0]["prompt"], return_tensors="pt").to("cuda")
    with torch.no_grad():
        assert torch.isfinite(model(**enc).logits.float()).all()


def test_epoch_mean_losses_group_steps_by_the_epoch_they_ran_in():
    from nep.train.sft import epoch_mean_losses

    history = [{"loss": 4.0, "epoch": 0.5}, {"loss": 2.0, "epoch": 1.0}, {"loss": 1.0, "epoch": 1.5},
               {"loss": 0.0, "epoch": 2.0}, {"train_runtime": 3.0, "epoch": 2.0}]
    assert epoch_mean_losses(history) == {1: 3.0, 2: 0.5}
    assert epoch_mean_losses([]) == {}


def test_losses_are_written_at_the_digits_cpus_agree_on():
    """The same run on two CPUs gave train_loss 7.6336236000061035 and 7.633624076843262 (float32
    summed in another order): written at STABLE_DIGITS significant digits, both are 7.6336."""
    from nep.train.sft import STABLE_DIGITS, live_steps, stable

    assert STABLE_DIGITS == 5
    assert stable(7.6336236000061035) == stable(7.633624076843262) == 7.6336
    assert stable(0.000123456789) == 0.00012346 and math.isnan(stable(float("nan")))

    class Live:
        def __init__(self):
            self.rows = []

        def log_metric(self, name, value):
            self.rows.append((name, value))

        def next_step(self):
            pass

    live = Live()
    state = type("State", (), {"is_world_process_zero": True})()
    live_steps(live).on_log(None, state, None, logs={"loss": 7.633624076843262, "grad_norm": 0.486876904964447})
    assert live.rows == [("train_loss", 7.6336), ("grad_norm", 0.48688)]
