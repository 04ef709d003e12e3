"""Params that would break later are refused up front, in one line: non-finite floats, seeds out
of range, worker counts past the bound, predictor names that are not plain, duplicate keys, YAML
1.1 surprises (`1:30` read as 90) and YAML syntax errors (file, line and column)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, problem_lines

from nep.commands.config import main
from nep.config.params import load_params, parse_yaml
from nep.config.schema import MAX_SEED, MAX_WORKERS, ParamsError

CASES = [
    ("finetune:\n  learning_rate: 1.0e400\n", "finetune.learning_rate: inf is not a finite number"),
    ("posttrain:\n  beta: .nan\n", "posttrain.beta: nan is not a finite number"),
    ("label:\n  prices:\n    m: {input: .inf, output: 1}\n", "label.prices.m.input: inf is not a finite number"),
    ("finetune:\n  seed: -1\n", f"finetune.seed: -1 is out of range (allowed: 0 to 2**32-1 = {MAX_SEED})"),
    ("split:\n  seed: 4294967296\n", "split.seed: 4294967296 is out of range"),
    ("evaluate:\n  seed: -3\n", "evaluate.seed: -3 is out of range"),
    ("ingest:\n  workers: 200\n", f"ingest.workers: 200 is out of range (allowed: 0 to {MAX_WORKERS} worker processes"),
    ("filter:\n  workers: 65\n", "filter.workers: 65 is out of range"),
    ("generate:\n  threads: 100000\n", "generate.threads: 100000 is out of range (allowed: 0 to 256"),
    ("generate:\n  predictors:\n    ../../x: {kind: identity, needs: x}\n",
     "generate.predictors: '../../x' is not a plain name"),
    ("generate:\n  predictors:\n    .hidden: {kind: identity, needs: x}\n", "'.hidden' is not a plain name"),
    ("generate:\n  predictors:\n    a b: {kind: identity, needs: x}\n", "'a b' is not a plain name"),
    ("generate:\n  predictors:\n    p: {kind: openai, model: m, timeout_s: .inf, needs: x}\n",
     "generate.predictors.p.timeout_s: inf is not a finite number"),
    ("finetune:\n  seed: 1:30\n", "finetune.seed: '1:30' is not an integer"),
    ("finetune:\n  merge: yes\n", "finetune.merge: 'yes' is not true or false"),
    ("finetune:\n  seed: 1\n  epochs: 2\n  seed: 2\n", ":4:3: duplicate key 'seed' (first at line 2): keep one"),
    ("finetune:\n  seed: 1\nsplit: {}\nfinetune:\n  epochs: 2\n", ":4:1: duplicate key 'finetune' (first at line 1)"),
    ("finetune:\n  seed: [1\n", ":3:1: expected ',' or ']', but got '<stream end>'"),
    ("finetune:\n\tseed: 1\n", ":2:1: found character '\\t' that cannot start any token"),
    ("finetune:\n  seed: 1\n bad: 2\n", ":3:2: "),
    ("a: 'open\n", ":2:1: found unexpected end of stream"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_the_check_command_refuses_in_one_line(tmp_path, capsys, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert main([str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(str(path)) and expected in err, err
    assert "Traceback" not in err


def test_the_good_values_still_pass(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    path.write_text(f"finetune:\n  seed: {MAX_SEED}\n  learning_rate: 2.0e-4\ningest:\n  workers: {MAX_WORKERS}\n"
                    "generate:\n  predictors:\n    gpt-4.1-mini_v2: {kind: identity, needs: x}\n")
    assert main([str(path)]) == 0, capsys.readouterr().err


def test_yaml_12_core_schema_as_dvc_reads_it():
    """The values DVC's ruamel reader (YAML 1.2) gives for `dvc exp run -S` and `dvc params diff`."""
    from ruamel.yaml import YAML

    text = ("a: 1:30\nb: yes\nc: 010\nd: 1e-05\ne: 0x1f\nf: .inf\ng: ~\nh: True\ni: 1_000\nj: 0o17\nk: off\n"
            "l: +5\nm: -.5\nn: 5.\no: null\np: 1.5e3\nq: 2001-12-14\nr: 0b101\n")
    ours = parse_yaml(text)
    assert ours == YAML(typ="safe", pure=True).load(text) | {"q": "2001-12-14", "r": "0b101"}
    assert (ours["a"], ours["b"], ours["c"], ours["k"]) == ("1:30", "yes", 10, "off")


@pytest.mark.parametrize("path", [REPO_ROOT / "params.yaml", *sorted((REPO_ROOT / "presets").glob("*.yaml"))])
def test_the_committed_files_read_as_dvc_reads_them(path):
    from ruamel.yaml import YAML

    assert parse_yaml(path.read_text()) == YAML(typ="safe", pure=True).load(path.read_text())


def test_a_merge_key_is_not_a_duplicate():
    assert parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")["c"] == {"x": 1, "y": 3}


def test_every_stage_stops_on_a_yaml_error_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("ingest:\n  workers: 2\n  workers: 3\n")
    for module in ("stages.ingest", "stages.filter", "stages.split"):
        done = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        assert done.returncode == 1 and done.stdout == ""
        (line,) = problem_lines(done.stderr)  # `<stage>: ` before it when the stage reports it
        assert line.endswith("params.yaml:3:3: duplicate key 'workers' (first at line 2): keep one"), done.stderr
        assert "\n" not in line and "Traceback" not in line


def test_load_params_refuses_a_duplicate_before_the_schema(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("split:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ParamsError, match=r"params\.yaml:3:3: duplicate key 'seed'"):
        load_params("split", path)
    path.write_bytes(b"split:\n  seed: \xff\n")
    with pytest.raises(ParamsError, match="not UTF-8"):
        load_params("split", path)
