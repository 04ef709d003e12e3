"""Every value the schema accepts runs, or the schema refuses it in one line naming the param
(issue 31, item 4): finetune.lr_scheduler (transformers' schedulers that need no more than nep
gives them) and the tiny model's shapes (finetune.tiny.hidden_size / num_heads)."""

from __future__ import annotations

import typing

import pytest

from nep.config.schema import Finetune, FinetuneTiny, ParamsError, validate

SCHEDULERS = typing.get_args(Finetune.model_fields["lr_scheduler"].annotation)


def refusal(params: dict) -> str:
    with pytest.raises(ParamsError) as error:
        validate(params)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_lr_scheduler_names_are_transformers_and_each_one_builds_and_steps(tmp_path):
    import torch
    from transformers import SchedulerType, TrainingArguments, get_scheduler

    assert set(SCHEDULERS) <= {s.value for s in SchedulerType}
    for name in SCHEDULERS:
        validate({"finetune": {"lr_scheduler": name}})
        TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type=name, report_to=[], use_cpu=True)
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=2, num_training_steps=6)
        for _ in range(6):
            optimizer.step()
            scheduler.step()
    # the others need an evaluation or lr_scheduler_kwargs, which nep does not give: refused up front
    for name in sorted({s.value for s in SchedulerType} - set(SCHEDULERS)):
        assert refusal({"finetune": {"lr_scheduler": name}}).startswith(
            f"params.yaml: finetune.lr_scheduler: '{name}' is not allowed (allowed: 'linear', ")


def test_a_bogus_scheduler_is_refused_by_the_config_check():
    """The reproduction: `finetune.lr_scheduler: bogus` crashed finetune with `ValueError ... not a
    valid SchedulerType`."""
    line = refusal({"finetune": {"lr_scheduler": "bogus"}})
    assert line == ("params.yaml: finetune.lr_scheduler: 'bogus' is not allowed (allowed: 'linear', 'cosine', "
                    "'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup' or 'inverse_sqrt')")


def test_tiny_heads_that_do_not_fit_are_refused_naming_the_param():
    """The reproduction: `finetune.tiny.num_heads: 3` crashed in the model (`size of tensor a (21)`)."""
    assert refusal({"finetune": {"tiny": {"num_heads": 3}}}) == (
        "params.yaml: finetune.tiny.num_heads: 3 does not divide finetune.tiny.hidden_size 64 (each head gets "
        "hidden_size / num_heads dimensions)")
    assert refusal({"finetune": {"tiny": {"num_heads": 64}}}).startswith(
        "params.yaml: finetune.tiny.num_heads: 64 heads of 64 dimensions give 1 per head, an odd number")


SHAPES = [(hidden, heads) for hidden in (64, 48, 12) for heads in range(1, hidden + 1)]


def test_every_tiny_shape_the_schema_accepts_builds_and_runs(tmp_path):
    """For each (hidden_size, num_heads) with hidden_size 64, 48, 12 and every head count: refused
    in one line, or the tiny model builds and runs forward and backward."""
    import torch
    from conftest import make_example

    from nep.train.tiny import build_tiny_model

    texts = [make_example("a = 1\n", "a = 1\nb = 2\n", "a = 1\nb = 2\nc = 3\n")["text"]]
    accepted = []
    for hidden, heads in SHAPES:
        try:
            FinetuneTiny(hidden_size=hidden, num_heads=heads)
        except Exception:  # noqa: BLE001 - the one-line form is checked on the whole file below
            assert refusal({"finetune": {"tiny": {"hidden_size": hidden, "num_heads": heads}}}).startswith(
                "params.yaml: finetune.tiny.num_heads: ")
            continue
        accepted.append((hidden, heads))
    assert (64, 4) in accepted and (48, 3) in accepted and (64, 3) not in accepted
    from transformers import AutoModelForCausalLM

    for hidden, heads in accepted:
        out = build_tiny_model(texts, tmp_path / f"{hidden}-{heads}", vocab_size=64, hidden_size=hidden,
                               num_heads=heads, num_layers=1, max_position_embeddings=64)
        model = AutoModelForCausalLM.from_pretrained(out)
        ids = torch.randint(0, model.config.vocab_size, (2, 9))
        model(input_ids=ids, labels=ids).loss.backward()
