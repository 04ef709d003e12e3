"""The report stage (nep.evaluate.report) and the offline `dvc plots` page and templates."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from configobj import ConfigObj
from conftest import REPO_ROOT, copy_project, git, run_dvc

from nep.evaluate.charts import CHARTS, chart_spec, dvc_plots_yaml, render_svg
from nep.evaluate.headline import HEADLINE, HEADLINE_METRICS, HeadlineMetric
from nep.evaluate.report import build_report, headline_table, reference_predictor, with_p_values
from nep.util import paths
from nep.util.errors import NepError

TEMPLATES = REPO_ROOT / paths.PLOT_TEMPLATES
# one chart of each template (drawing all of them takes seconds: the slow test does)
SOME_CHARTS = tuple({chart.template: chart for chart in reversed(CHARTS)}.values())
# exact, partial, position, judge, delta chrF per predictor (any further headline metric: the last
# value again); None: not computed
VALUES = {
    "finetuned": (0.31, 0.42, 0.55, 0.38, 0.12),
    "identity": (0.0, 0.0, 0.05, 0.0, 0.0),
    "propagate": (0.08, 0.15, 0.21, None, -0.03),
}


def evaluate_tables(root: Path) -> None:
    """metrics/evaluate.json and metrics/evaluate/{predictors,languages}.json under `root`, in
    evaluate's shape: p-values (against finetuned) in the headline only; every row has the same
    keys (DVC reads rows with differing keys as no data), null where absent."""
    rows, lang_rows, headline = [], [], {}
    for name, values in VALUES.items():
        row = {"predictor": name, "n": 30}
        for metric, v in zip(HEADLINE, values + values[-1:] * (len(HEADLINE) - len(values)), strict=True):
            row[metric] = v
            row[f"{metric}_lo"] = None if v is None else round(v - 0.05, 3)
            row[f"{metric}_hi"] = None if v is None else round(v + 0.05, 3)
            headline |= {f"{name}.{k}": row[k] for k in (metric, f"{metric}_lo", f"{metric}_hi") if row[k] is not None}
            if name != "finetuned":
                headline[f"{name}.{metric}_p"] = 0.0004 if name == "identity" else 0.03
        rows.append(row)
        for language, n in (("Python", 20), ("Go", 10)):
            lang_rows.append({"predictor": name, "language": language, "n": n,
                              **{m: row[m] for m in HEADLINE}})
    out = root / "metrics/evaluate"
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictors.json").write_text(json.dumps({"rows": rows}, indent=2))
    (out / "languages.json").write_text(json.dumps({"rows": lang_rows}, indent=2))
    (root / "metrics/evaluate.json").write_text(json.dumps(headline, indent=2))


def loss_curve(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train_loss.tsv").write_text("step\ttrain_loss\n0\t2.5\n1\t2.25\n2\t1.75\n")


def posttrain_curves(directory: Path, *, rows: bool = True) -> None:
    """posttrain's DVCLive curves as a DPO run leaves them (reward and kl header-only), or every
    one header-only (`rows=False`, posttrain.method none)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in (("loss", [0.693, 0.61]), ("reward_margin", [0.0, 0.4]), ("reward", []), ("kl", [])):
        body = "".join(f"{i}\t{v}\n" for i, v in enumerate(values)) if rows else ""
        (directory / f"{name}.tsv").write_text(f"step\t{name}\n{body}")


# ---------------------------------------------------------------- the page and the templates


def test_plots_page_inlines_vega_and_is_the_configured_template():
    page = (TEMPLATES / "page.html").read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1
    assert "{scripts}" not in page  # DVC's CDN <script src=...> tags are never inserted
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    for library in ("vega 5.", "vega-lite 5.", "vega-embed 6."):
        assert f"/* {library}" in page
    template = ConfigObj(str(REPO_ROOT / ".dvc/config"))["plots"]["html_template"]  # DVC's reader
    assert (REPO_ROOT / ".dvc" / template).resolve() == (TEMPLATES / "page.html").resolve()


def test_charts_are_dvc_yamls_top_level_plots():
    """dvc.yaml draws every chart of CHARTS (two per headline metric of nep/evaluate/headline.py):
    when one is missing or differs, the message is the YAML to paste into dvc.yaml's `plots:`."""
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    declared = {title: spec for entry in dvc_yaml["plots"] for title, spec in entry.items()}
    differing = tuple(chart for chart in CHARTS if declared.get(chart.title) != chart.dvc_definition())
    assert not differing, "dvc.yaml's plots: lack or differ from these entries:\n" + dvc_plots_yaml(differing)
    # and every chart of evaluate's tables or finetune's loss is one the report draws
    sources = {chart.source.as_posix() for chart in CHARTS}
    drawn = {chart.title for chart in CHARTS}
    assert {title for title, spec in declared.items() if set(spec.get("y", {})) & sources} == drawn
    for chart in CHARTS:
        assert (TEMPLATES / f"{chart.template}.json").is_file()


def test_every_headline_metric_has_a_column_and_two_charts_in_dvc_yaml_order():
    by_predictor = [c.x for c in CHARTS if c.template == "nep_bars"]
    by_language = [c.x for c in CHARTS if c.template == "nep_language_bars"]
    assert by_predictor == by_language == list(HEADLINE)
    titles = {c.title for c in CHARTS}
    assert {f"{m.title} by predictor" for m in HEADLINE_METRICS} <= titles
    assert "Delta chrF (Zed) by predictor" in titles and "Exact match by language" in titles


def test_a_lower_is_better_metric_says_so_in_its_column(monkeypatch):
    import nep.evaluate.report as report

    error = HeadlineMetric("miss_rate", "miss rate", "misses (share of examples)")
    assert error.column == "miss rate"
    error = HeadlineMetric("miss_rate", "miss rate", "misses (share of examples)", higher_is_better=False)
    monkeypatch.setattr(report, "HEADLINE", ("miss_rate",))
    monkeypatch.setattr(report, "LABELS", {"miss_rate": error.column})
    import pandas as pd

    table = headline_table(pd.DataFrame([{"predictor": "a", "n": 3, "miss_rate": 0.5}]))
    assert list(table.columns) == ["predictor", "n", "miss rate (lower is better)"]


def test_finetune_curves_are_not_a_stage_plot():
    """A stage-level plot draws every DVCLive file (epoch, learning rate): only the loss is drawn."""
    finetune = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["finetune"]
    assert "plots" not in finetune
    assert {"metrics/finetune/plots/metrics": {"cache": False}} in finetune["outs"]


def test_bar_chart_labels_values_missing_and_intervals(tmp_path):
    evaluate_tables(tmp_path)
    rows = json.loads((tmp_path / "metrics/evaluate/predictors.json").read_text())["rows"]
    judge = next(c for c in CHARTS if c.x == "llm_judge" and c.template == "nep_bars")
    svg = render_svg(chart_spec(judge, rows, TEMPLATES))
    assert re.search(r">missing  n=\d+<", svg)  # propagate has no judge value: said, not drawn as 0
    # each bar says its value, its interval and n, the examples behind it
    assert re.search(r">0.380 \[0.330, 0.430\]  n=\d+<", svg)
    assert re.search(r">0.000 \[−0.050, 0.050\]  n=\d+<", svg)
    assert "judged correct (share; judge.backend: rules or an LLM)" in svg and "metrics/" not in svg
    exact = next(c for c in CHARTS if c.x == "exact_match" and c.template == "nep_bars")
    svg = render_svg(chart_spec(exact, rows, TEMPLATES))
    # sorted by value, best first (the axis draws its labels top to bottom)
    assert re.findall(r">(finetuned|identity|propagate)<", svg)[:3] == ["finetuned", "propagate", "identity"]


def test_language_chart_names_the_predictor_on_each_bar(tmp_path):
    evaluate_tables(tmp_path)
    rows = json.loads((tmp_path / "metrics/evaluate/languages.json").read_text())["rows"]
    chart = next(c for c in CHARTS if c.x == "exact_match" and c.template == "nep_language_bars")
    svg = render_svg(chart_spec(chart, rows, TEMPLATES))
    assert re.search(r">finetuned: 0.310  n=\d+<", svg) and re.search(r">identity: 0.000  n=\d+<", svg)
    assert " / " not in svg  # no "Python / finetuned" group labels


def test_loss_chart_draws_training_and_evaluation_loss_in_one_chart():
    loss = next(c for c in CHARTS if c.template == "nep_loss")
    rows = [{"step": s, loss.y: 2.0 - s / 4, "filename": "train_loss.tsv"} for s in range(3)]
    rows += [{"step": 2, loss.y: 1.9, "filename": "eval_loss.tsv"}]
    svg = render_svg(chart_spec(loss, rows, TEMPLATES))
    assert ">training<" in svg and ">evaluation<" in svg  # the series (any curve: loss, reward...)
    assert ">optimizer step<" in svg and ".tsv" not in svg


# ---------------------------------------------------------------- the report


def test_report_tables_charts_and_same_bytes_on_rerun(tmp_path):
    evaluate_tables(tmp_path)
    loss_curve(tmp_path / "curves")
    out = tmp_path / "report"
    kwargs = dict(
        headline_path=tmp_path / "metrics/evaluate.json",
        predictors_path=tmp_path / "metrics/evaluate/predictors.json",
        languages_path=tmp_path / "metrics/evaluate/languages.json",
        curves_dir=tmp_path / "curves", template_dir=TEMPLATES, charts=SOME_CHARTS,
    )
    counts = build_report(out, **kwargs)
    assert counts == {"predictors": 3, "languages": 2, "charts": 3, "charts_skipped": 0}
    readme = (out / "README.md").read_text()
    assert "| finetuned   |  30 | **0.310 [0.260, 0.360]**" in readme  # the best exact match: bold
    assert "against `finetuned`" in readme and "< 0.001" in readme
    assert "| propagate   | 0.030" in readme
    judge_column = [line.split("|")[6].strip() for line in readme.splitlines() if line.startswith("| propagate ")]
    assert judge_column[0] == "–"  # missing, not 0 or nan
    assert "nan" not in readme
    for chart in SOME_CHARTS:
        assert f"]({chart.file_name})" in readme
        assert (out / chart.file_name).read_text().startswith("<svg")
    assert (out / "predictors.csv").read_text().splitlines()[0].startswith("predictor,n,exact_match,")
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    build_report(out, **kwargs)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_report_without_loss_curve_skips_that_chart(tmp_path):
    evaluate_tables(tmp_path)
    counts = build_report(
        tmp_path / "report",
        headline_path=tmp_path / "metrics/evaluate.json",
        predictors_path=tmp_path / "metrics/evaluate/predictors.json",
        languages_path=tmp_path / "metrics/evaluate/languages.json",
        curves_dir=tmp_path / "no-curves", template_dir=TEMPLATES, charts=SOME_CHARTS,
    )
    assert counts["charts_skipped"] == 1
    assert "training_loss.svg" not in (tmp_path / "report/README.md").read_text()


def test_report_draws_posttrain_curves_with_rows_and_its_before_after_table(tmp_path):
    evaluate_tables(tmp_path)
    loss_curve(tmp_path / "curves")
    kwargs = dict(
        headline_path=tmp_path / "metrics/evaluate.json",
        predictors_path=tmp_path / "metrics/evaluate/predictors.json",
        languages_path=tmp_path / "metrics/evaluate/languages.json",
        curves_dir=tmp_path / "curves", posttrain_curves_dir=tmp_path / "post", template_dir=TEMPLATES,
    )
    posttrain_curves(tmp_path / "post", rows=False)  # method none: header-only curves, no section
    counts = build_report(tmp_path / "none", **kwargs)
    assert counts["charts"] == len(CHARTS) - 3
    assert "Post-training" not in (tmp_path / "none/README.md").read_text()

    posttrain_curves(tmp_path / "post")  # a DPO run: loss and reward margin have rows
    metrics = {"method": "dpo", "prompts": 8, "candidates": 32, "pairs": 8, "steps": 4, "train_loss": 0.61,
               "mean_reward": 0.1, "mean_reward_after": 0.25, "best_of_k_reward": 0.3, "best_of_k_reward_after": 0.3}
    counts = build_report(tmp_path / "dpo", posttrain=metrics, **kwargs)
    readme = (tmp_path / "dpo/README.md").read_text()
    assert counts["charts"] == len(CHARTS) - 1  # GRPO's reward curve is header-only
    assert "](post_training_loss.svg)" in readme and "](dpo_reward_margin.svg)" in readme
    assert "](post_training_reward.svg)" not in readme
    assert "`dpo`: 8 training prompts, 32 samples, 8 preference pairs, 4 optimizer steps" in readme
    assert "| mean reward of the samples | 0.1000 | 0.2500 | +0.1500 |" in readme
    assert "| best-of-k reward | 0.3000 | 0.3000 | +0.0000 |" in readme


def test_report_names_a_missing_or_malformed_table(tmp_path):
    with pytest.raises(NepError, match="predictors.json: not found"):
        build_report(tmp_path / "r", predictors_path=tmp_path / "predictors.json")
    bad = tmp_path / "predictors.json"
    bad.write_text('[{"predictor": "x"}]')
    with pytest.raises(NepError, match=r'predictors.json: expected a JSON object \{"rows"'):
        build_report(tmp_path / "r", predictors_path=bad)
    bad.write_text('{"rows": [{"predictor": "x"}, {"n": 3}]}')
    with pytest.raises(NepError, match="predictors.json: 1 of 2 rows have no `predictor` name"):
        build_report(tmp_path / "r", predictors_path=bad)


def test_reference_predictor_is_the_one_without_p_values(tmp_path):
    evaluate_tables(tmp_path)
    import pandas as pd

    rows = json.loads((tmp_path / "metrics/evaluate/predictors.json").read_text())["rows"]
    table = with_p_values(pd.DataFrame(rows), tmp_path / "metrics/evaluate.json")
    p_values = table.set_index("predictor")["exact_match_p"]
    assert p_values.isna()["finetuned"] and p_values[["identity", "propagate"]].tolist() == [0.0004, 0.03]
    assert reference_predictor(table) == "finetuned"
    assert reference_predictor(pd.DataFrame([{"predictor": "a", "exact_match": 0.1}])) is None


# ---------------------------------------------------------------- end to end with dvc


@pytest.mark.slow
def test_dvc_plots_show_writes_an_offline_page_with_every_chart(tmp_path):
    project = copy_project(tmp_path / "project")
    evaluate_tables(project)
    loss_curve(project / paths.FINETUNE_CURVES)
    posttrain_curves(project / paths.POSTTRAIN_CURVES)
    (project / paths.POSTTRAIN_CURVES / "reward.tsv").write_text("step\treward\n0\t0.1\n1\t0.2\n")
    git(project, "init", "-q", "-b", "main")
    output = run_dvc(project, "plots", "show", with_stderr=True)
    problems = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not [line for line in problems if re.search(r"evaluate|train_loss|" + "|".join(HEADLINE), line)], output
    page = (project / "dvc_plots/index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    ids = re.findall(r'<div id = "([^"]+)"', page)
    assert {re.sub(r"[^\w-]", "_", chart.title) for chart in CHARTS} <= set(ids)
    assert not any("epoch" in i or "learning_rate" in i for i in ids)
    # the report stage draws the same charts, every one of them
    result = subprocess.run([sys.executable, "-m", "stages.report"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((project / "metrics/report.json").read_text())["charts"] == len(CHARTS)
    # ... and the risk-coverage chart beside them (nep.evaluate.coverage_report, its own table)
    from nep.evaluate.coverage_report import RISK_CHART

    svgs = {p.name for p in (project / paths.REPORT).glob("*.svg")}
    assert RISK_CHART in svgs and len(svgs - {RISK_CHART}) == len(CHARTS)


def test_provenance_names_model_data_backends_and_warns_of_the_smoke_model():
    from nep.config.schema import defaults
    from nep.evaluate.report import judge_label, provenance

    params = defaults()
    lines = provenance(params, commit="0" * 40, sizes={"records": 190, "filtered": 19, "train": 13, "test": 5,
                                                     "strategy": "time"})
    text = "\n".join(lines)
    assert "Smoke model" in text and "tiny-random" in text
    assert f"nep code: commit `{'0' * 40}`" in text
    assert "`.` at `f19d35db8f82419e1a9b66f801f6b96218ee4912`" in text and "13 train examples, 5 test examples" in text
    assert "judge: rules judge (offline" in text and "not an LLM" in text and "label backend: heuristic" in text
    assert "training also has" not in text  # split did not count leakage: nothing said
    leaks = {"leakage.next_version": 0, "leakage.edit": 2, "leakage.window": 1}
    assert ("; test examples whose next version, edit or window training also has: 0, 2, 1"
            in "\n".join(provenance(params, commit=None, sizes={"strategy": "time", **leaks})))
    params["label"]["backend"] = "all"  # no labeling model asked: none named
    assert "- label backend: all" in provenance(params, commit=None, sizes={})
    params["label"].update(backend="openai", model="gpt-4o-mini")
    assert "- label backend: openai (`gpt-4o-mini`)" in provenance(params, commit=None, sizes={})
    params["finetune"]["base_model"] = "Qwen/Qwen2.5-Coder-7B"
    assert "Smoke model" not in "\n".join(provenance(params, commit=None, sizes={}))
    params["finetune"].update(epochs=1, max_seq_length=1024)
    params["generate"]["max_growth_tokens"] = 96
    text = "\n".join(provenance(params, commit=None, sizes={}))
    assert "1 epoch, sequences of at most 1024 tokens" in text
    assert "new tokens and 96 beyond the current version" in text
    assert judge_label("rules") == "rules judge" and judge_label("openai", "gpt-4.1-mini") == "LLM judge (gpt-4.1-mini)"


def test_csv_columns_put_names_and_headline_first():
    from nep.evaluate.report import csv_columns

    cols = ["zeta", "exact_match_hi", "predictor", "n", "exact_match", "exact_match_lo", "alpha", "delta_chrf"]
    assert csv_columns(cols, "predictor") == ["predictor", "n", "exact_match", "exact_match_lo", "exact_match_hi",
                                              "delta_chrf", "alpha", "zeta"]


def test_the_report_stage_reads_posttrains_nested_metrics(tmp_path, monkeypatch):
    from stages.report import posttrain_metrics

    monkeypatch.chdir(tmp_path)
    assert posttrain_metrics("none") is None
    with pytest.raises(NepError, match=r"metrics/posttrain\.json: cannot read it"):
        posttrain_metrics("dpo")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/posttrain.json").write_text(json.dumps({"posttraining": {"method": "dpo", "steps": 8}}))
    assert posttrain_metrics("dpo") == {"method": "dpo", "steps": 8}


def test_the_table_bolds_each_columns_best_value_whoever_has_it():
    """The README's real-model table once bolded finetuned's delta chrF (0.038) though propagate's
    (0.085) was higher: the bold goes to the best value, ties included, and nowhere when all agree."""
    import pandas as pd

    from nep.evaluate.report import best, headline_table

    table = pd.DataFrame({"predictor": ["finetuned", "propagate", "identity"], "n": [108] * 3,
                          "exact_match": [0.009, 0.028, 0.0], "delta_chrf": [0.038, 0.085, 0.0],
                          "llm_judge": [0.1, 0.1, 0.05], "partial_match": [0.0, 0.0, 0.0]})
    out = headline_table(table, bold=True).set_index("predictor")
    assert out.loc["propagate", "delta chrF (Zed)"] == "**0.085**"
    assert out.loc["finetuned", "delta chrF (Zed)"] == "0.038"
    assert [out.loc[p, "judge"] for p in ("finetuned", "propagate", "identity")] == ["**0.100**", "**0.100**", "0.050"]
    assert "**" not in "".join(out["partial match"])  # all equal: nothing to single out
    assert best([None, 0.2, float("nan")]) == [False, False, False]
    assert "**" not in "".join(headline_table(table)["delta chrF (Zed)"])  # bold only when asked
