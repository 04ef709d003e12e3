"""nep compare (nep/commands/compare.py): the experiment table fits its width, wraps experiments into further blocks, and
reads the headline keys DVC gives (prefixed or not)."""

from __future__ import annotations

import pytest

from nep.commands.compare import Experiment, cell, headline, render_markdown, render_text
from nep.util.errors import NepError


def experiment(name: str, shift: float = 0.0, prefix: str = "") -> Experiment:
    values = {"generate.predictors.propagate.kind": "propagate", "generate.predictors.finetuned.kind": "finetuned",
              "judge.backend": "rules"}
    for predictor in ("finetuned", "propagate"):
        values[f"{prefix}{predictor}.n"] = 38
        for metric in ("delta_chrf", "exact_match", "llm_judge", "partial_match", "position_match"):
            key = f"{prefix}{predictor}.{metric}"
            values.update({key: 0.25 + shift, f"{key}_lo": 0.125 + shift, f"{key}_hi": 0.5 + shift})
            if predictor == "propagate":
                values[f"{key}_p"] = 0.01
    return Experiment(name, values)


def test_headline_order_follows_params_then_paper_metrics():
    predictors, metrics = headline([experiment("workspace")])
    assert predictors == ["propagate", "finetuned"]  # params.yaml's order, not alphabetical
    assert metrics == ["exact_match", "partial_match", "position_match", "llm_judge", "delta_chrf"]


def test_cell_is_percent_with_interval_and_significance():
    exp = experiment("e")
    assert cell(exp, "finetuned", "exact_match") == "25.0 [12.5, 50.0]"
    assert cell(exp, "propagate", "exact_match") == "25.0 [12.5, 50.0]*"
    assert cell(exp, "missing", "exact_match") == "-"


@pytest.mark.parametrize("width", [60, 80, 120])
def test_text_fits_the_width_and_wraps_experiments(width):
    exps = [experiment(f"exp{i}", shift=i / 10) for i in range(6)]
    text = render_text(exps, width)
    assert max(len(line) for line in text.splitlines()) <= width
    headers = [line for line in text.splitlines() if line.strip().startswith("exp")]
    assert sorted(name for h in headers for name in h.split()) == [f"exp{i}" for i in range(6)]
    assert len(headers) > 1  # six experiments never fit one block at these widths
    assert text.count("propagate (n=38)") == len(headers)
    assert "offline 'rules' judge" in text


def test_markdown_has_one_row_per_predictor_and_metric():
    lines = render_markdown([experiment("a"), experiment("b", 0.1)]).splitlines()
    assert lines[0] == "| predictor | metric | a | b |"
    assert sum(line.startswith("| finetuned |") for line in lines) == 5
    assert "| propagate | exact_match | 25.0 [12.5, 50.0]\\* | 35.0 [22.5, 60.0]\\* |" in lines


def test_no_headline_metrics_is_one_line():
    with pytest.raises(NepError, match="run `dvc repro` first"):
        render_text([Experiment("workspace", {"train_loss": 7.6})])


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def test_declared_metrics_share_no_column_name():
    """`dvc exp show` prefixes a column two files (or a file and params.yaml) share with the path,
    which breaks `--keep 'train_loss'` recipes: the declared metrics' keys are all distinct."""
    import json
    from pathlib import Path

    import yaml

    stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    declared = [next(iter(m)) if isinstance(m, dict) else m
                for stage in stages.values() for m in (stage.get("do", stage).get("metrics") or [])]
    assert set(declared) == {"metrics/finetune/metrics.json", "metrics/posttrain.json", "metrics/split.json",
                             "metrics/evaluate.json"}
    seen: dict[str, str] = {key: "params.yaml" for key in _flat(yaml.safe_load(Path("params.yaml").read_text()))}
    for path in declared:
        for key in _flat(json.loads(Path(path).read_text())):
            assert key not in seen, f"{key} in both {seen[key]} and {path}"
            seen[key] = path
    # post-training's keys live under "posttraining." whatever the method writes there
    assert list(json.loads(Path("metrics/posttrain.json").read_text())) == ["posttraining"]


def test_a_command_started_in_a_subdirectory_runs_at_the_project_root(tmp_path, monkeypatch):
    from pathlib import Path

    from nep.util.paths import enter_project_root

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "data" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "data" / "x")
    assert enter_project_root() == tmp_path.resolve() and Path.cwd() == tmp_path.resolve()
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(NepError, match="run from the project root"):
        enter_project_root()


def test_a_lower_is_better_metric_is_marked(monkeypatch):
    import nep.commands.compare as compare
    from nep.evaluate.headline import HeadlineMetric

    error = HeadlineMetric("miss_rate", "miss rate", "misses", higher_is_better=False)
    monkeypatch.setitem(compare.BY_NAME, "miss_rate", error)
    exp = experiment("a")
    exp.values |= {"finetuned.miss_rate": 0.5, "finetuned.miss_rate_lo": 0.25, "finetuned.miss_rate_hi": 0.75}
    assert "\n  miss_rate (lower is better)   50.0 [25.0, 75.0]\n" in render_text([exp], 120)
    assert compare.metric_name("exact_match") == "exact_match"
