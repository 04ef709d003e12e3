"""Values the schema accepted that crashed finetune later (issue 31, items 4 and 8): each
reproduction ends in one line naming the param a user can act on, exit 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, problem_lines
from pipeline.test_finetune_stage import processed_examples

from nep.util.jsonl import write_jsonl

FAST = {"tiny": {"vocab_size": 400, "max_seq_length": 256, "max_steps": 1}}


def run(tmp_path: Path, command: list[str], finetune: dict) -> str:
    """Run `command` in a project whose params.yaml holds `finetune` and whose split is written;
    return its one line of trouble."""
    write_jsonl(tmp_path / "data" / "split" / "train.jsonl", processed_examples(4))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"finetune": finetune}))
    done = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in problem_lines(done.stdout + done.stderr)
             if not line.startswith(("INFO", "WARNING", "WARN ", "smoke", "OK"))]
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


@pytest.mark.slow  # builds the tiny model in a stage: seconds of CPU
def test_target_modules_naming_no_module_of_the_model(tmp_path):
    line = run(tmp_path, ["stages.finetune"], {**FAST, "target_modules": ["q_proj", "nosuch_proj"]})
    assert line.startswith("finetune.target_modules: 'nosuch_proj' names no module of "), line
    assert "(its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)" in line


@pytest.mark.slow  # builds the tiny model in a stage: seconds of CPU
def test_a_tiny_max_seq_length_names_the_tiny_param(tmp_path):
    """The tiny model reads finetune.tiny.max_seq_length, not finetune.max_seq_length."""
    line = run(tmp_path, ["stages.finetune"], {"tiny": {**FAST["tiny"], "max_seq_length": 8}})
    assert line == ("finetune.tiny.max_seq_length: no training example left within 8 tokens (see the drop counts) "
                    "(raise finetune.tiny.max_seq_length)"), line


@pytest.mark.parametrize(("finetune", "start"), [
    ({"lr_scheduler": "bogus"}, "params.yaml: finetune.lr_scheduler: 'bogus' is not allowed (allowed: 'linear'"),
    ({"tiny": {"num_heads": 3}}, "params.yaml: finetune.tiny.num_heads: 3 does not divide finetune.tiny.hidden_size"),
])
def test_the_config_check_refuses_what_finetune_would_crash_on(tmp_path, finetune, start):
    for command in (["nep", "config"], ["stages.finetune"]):
        line = run(tmp_path, command, finetune)
        assert line.removeprefix("finetune: ").startswith(start), (command, line)
