"""The results report: evaluate's tables as Markdown and CSV, and nep's charts as SVG images.

`build_report` reads metrics/evaluate.json (p-values), its tables (metrics/evaluate/
predictors.json, languages.json) and DVCLive's training loss, and writes a directory that a reader
opens without DVC: README.md (predictor × metric with 95% confidence intervals, paired p-values
against the reference predictor, the per-language table, the charts), predictors.csv,
languages.csv and one SVG per chart.

The charts are `dvc plots show`'s (nep/evaluate/charts.py); the headline metrics' columns and
charts come from their declarations (nep/evaluate/headline.py). Same inputs give the same bytes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from nep.evaluate.charts import (  # noqa: F401 - CHARTS, Chart, chart_spec, render_svg: the report's API too
    CHARTS,
    LANGUAGES_TABLE,
    PREDICTORS_TABLE,
    Chart,
    chart_spec,
    render_svg,
)
from nep.evaluate.coverage_report import COVERAGE_TABLE, RISK_TABLE, coverage_section
from nep.evaluate.headline import BY_NAME, HEADLINE, HEADLINE_METRICS
from nep.util import paths
from nep.util.errors import NepError

LABELS = {m.name: m.column for m in HEADLINE_METRICS}  # the tables' column names

HEADLINE_FILE = paths.metrics("evaluate")
# measured times cannot be in this report (its bytes must not change on rerun): a pointer to them
LATENCY_LINE = ("Latency (p50/p95 per answer on the named machine, against accuracy): "
                "[../timing/report/README.md](../timing/report/README.md), written by each generate and report run "
                "(measured, not a DVC output).")


# ---------------------------------------------------------------- reading


def read_rows(path: Path, key: str) -> pd.DataFrame:
    """A `{"rows": [...]}` table written by evaluate, as a DataFrame; every row names its `key`."""
    if not path.exists():
        raise NepError(f"{path}: not found (run `dvc repro evaluate` first)")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise NepError(f'{path}: expected a JSON object {{"rows": [...]}} ({e})') from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise NepError(f"{path}: `rows` must be a list of objects")
    if missing := sum(1 for r in rows if not isinstance(r.get(key), str)):
        raise NepError(f"{path}: {missing} of {len(rows)} rows have no `{key}` name")
    return pd.DataFrame(rows)


def with_p_values(table: pd.DataFrame, headline_path: Path) -> pd.DataFrame:
    """`table` with `<metric>_p` columns taken from evaluate's headline (`<predictor>.<metric>_p`)
    where the rows do not carry them (empty for the reference predictor)."""
    if not headline_path.exists():
        raise NepError(f"{headline_path}: not found (run `dvc repro evaluate` first)")
    try:
        headline = json.loads(headline_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise NepError(f"{headline_path}: not JSON ({e})") from None
    if not isinstance(headline, dict):
        raise NepError(f"{headline_path}: expected a flat JSON object")
    table = table.copy()
    for m in HEADLINE:
        if f"{m}_p" not in table:
            table[f"{m}_p"] = [headline.get(f"{name}.{m}_p") for name in table["predictor"]]
    return table


def read_curve(path: Path) -> pd.DataFrame | None:
    """A DVCLive curve (TSV with a `step` column), or None when it was not written."""
    return pd.read_csv(path, sep="\t") if path.exists() else None


def reference_predictor(table: pd.DataFrame) -> str | None:
    """The predictor the p-values compare against: the one row whose `<metric>_p` are all empty."""
    p_cols = [c for c in table.columns if c.endswith("_p")]
    if not p_cols or "predictor" not in table:
        return None
    empty = table[p_cols].isna().all(axis=1)
    names = table.loc[empty, "predictor"].tolist()
    return names[0] if len(names) == 1 else None


# ---------------------------------------------------------------- tables


def csv_columns(columns: list[str], *first: str) -> list[str]:
    """A reader's order: the row's names (`first`), n, each headline metric with its interval and
    p-value, then the rest by name."""
    lead = [*first, "n", *(c for m in HEADLINE for c in (m, f"{m}_lo", f"{m}_hi", f"{m}_p"))]
    return [c for c in lead if c in columns] + sorted(c for c in columns if c not in lead)


LLM_BACKENDS = ("openai",)  # label/judge backends that ask an LLM (`model`); heuristic, all, rules do not


def judge_label(backend: str | None, model: str | None = None) -> str:
    """The judge column's name: what judged (`rules` is not an LLM)."""
    if backend in LLM_BACKENDS:
        return f"LLM judge ({model})" if model else "LLM judge"
    return f"{backend} judge" if backend else "judge"


def _leakage_text(sizes: dict[str, Any]) -> str:
    """"; test examples whose next version, edit or window training also has: 0, 0, 1" (split's
    leakage counts, nep/data/leakage.py), or "" when split did not count them."""
    counts = [sizes.get(f"leakage.{k}") for k in ("next_version", "edit", "window")]
    if any(c is None for c in counts):
        return ""
    return "; test examples whose next version, edit or window training also has: " + ", ".join(map(str, counts))


def provenance(params: dict[str, Any], *, commit: str | None, sizes: dict[str, Any]) -> list[str]:
    """Markdown lines saying what was measured: nep's commit, the model (and plainly when it is the
    tiny smoke model), the data source and sizes, the label and judge backends, the params that
    shape the numbers. Only values that the same commit and params reproduce (no dates, hosts)."""
    ft, ingest, gen = params["finetune"], params["ingest"], params["generate"]
    lines = []
    if ft["base_model"] == "tiny-random":
        lines += ["> **Smoke model.** `finetune.base_model: tiny-random` is a tiny randomly initialised model "
                  "that proves the machinery; its scores say nothing about next-edit prediction. Set a real "
                  "model (docs: the paper's configuration) for results.", ""]
    if ingest["source"] == "git":
        git = ingest["git"]
        pins = {} if git["rev"] else git.get("pins", {})
        source = "git: " + ", ".join(f"`{r}` at `{pins.get(r, git['rev'] or 'HEAD')}`" for r in git["repos"])
    elif ingest["source"] == "hf":
        source = f"hub dataset `{ingest['hf']['dataset']}` at `{ingest['hf']['revision']}`"
    else:
        source = "JSONL: " + ", ".join(f"`{p}`" for p in ingest["jsonl"]["paths"])
    if params["split"]["strategy"] == "external":
        source += f"; test set `{params['split']['external_test']}`"
    size_text = ", ".join(text.format(sizes[k]) for k, text in (
        ("records", "{} commit records"), ("filtered", "{} kept by the filter"), ("train", "{} train examples"),
        ("test", "{} test examples")) if sizes.get(k) is not None)
    label, judge = params["label"], params["judge"]
    kinds = ", ".join(f"`{n}` ({e.get('kind')}{', ' + e['model'] if e.get('model') else ''})"
                      for n, e in gen["predictors"].items())
    post = params["posttrain"]["method"]
    lines += [
        f"- nep code: commit `{commit or 'unknown (not a git checkout)'}` (the last that changed nep/ or stages/)",
        f"- model: `{ft['base_model']}`, LoRA r={ft['lora_r']}, learning rate {ft['learning_rate']}, "
        f"{ft['epochs']} epoch{'s' if ft['epochs'] != 1 else ''}" + (f", at most {ft['max_steps']} steps" if ft["max_steps"] else "")
        + f", sequences of at most {ft['max_seq_length']} tokens"
        + ("" if post == "none" else f"; post-training: {post}"),
        f"- data: {source}" + (f" ({size_text})" if size_text else ""),
        f"- split: {sizes.get('strategy') or params['split']['strategy']}; "
        + (f"prompts cut to {params['process']['context_lines']} context lines" if params["process"]["context_lines"]
           else "whole files in prompts") + _leakage_text(sizes),
        f"- label backend: {label['backend']}" + (f" (`{label['model']}`)" if label["backend"] in LLM_BACKENDS else ""),
        f"- judge: {judge_label(judge['backend'], judge['model'] if judge['backend'] in LLM_BACKENDS else None)}"
        + (" (offline: exact, whitespace and syntax-tree comparison; not an LLM)" if judge["backend"] == "rules" else ""),
        f"- predictors: {kinds}; greedy, at most {gen['max_new_tokens']} new tokens"
        + (f" and {gen['max_growth_tokens']} beyond the current version" if gen.get("max_growth_tokens") else ""),
        f"- intervals: {params['evaluate']['bootstrap_samples']} bootstrap samples, seed {params['evaluate']['seed']}",
    ]
    return lines


# posttrain.json keys shown before → after training (the same prompts re-sampled with the same seeds)
POSTTRAIN_BEFORE_AFTER = (("mean_reward", "mean reward of the samples"), ("best_of_k_reward", "best-of-k reward"),
                          ("exact_match", "exact match of the samples"), ("unextractable", "unextractable samples"))


def posttrain_lines(metrics: dict[str, Any]) -> list[str]:
    """What post-training did (method, prompts, samples, pairs, steps) and each sampled reward
    before and after it, as Markdown lines."""
    method = metrics.get("method", "?")
    done = [f"`{method}`: {metrics.get('prompts', 0)} training prompts, {metrics.get('candidates', 0)} samples"]
    if method == "dpo":
        done.append(f"{metrics.get('pairs', 0)} preference pairs")
    done.append(f"{metrics.get('steps', 0)} optimizer steps, last loss {metrics.get('train_loss', float('nan')):.4f}")
    rows = ["| sampled answers | before | after | change |", "|---|---:|---:|---:|"]
    for key, label in POSTTRAIN_BEFORE_AFTER:
        before, after = metrics.get(key), metrics.get(f"{key}_after")
        if before is None:
            continue
        change = "–" if after is None else f"{after - before:+.4f}"
        rows.append(f"| {label} | {before:.4f} | {'–' if after is None else f'{after:.4f}'} | {change} |")
    return [", ".join(done) + ".", "", *rows, "",
            "Rewards: nep/train/rewards.py (`posttrain.reward.*`); \"after\" re-samples the same prompts with the "
            "same seeds once training is done (`posttrain.rescore`)."]


def _with_ci(value: Any, lo: Any, hi: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _p_value(p: Any) -> str:
    if p is None or pd.isna(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def best(values: list[Any], higher_is_better: bool = True) -> list[bool]:
    """Which values are the column's best (the highest, or the lowest where lower is better; ties
    included); none when every value is the same or fewer than two are present (nothing to single out)."""
    present = [float(v) for v in values if v is not None and not pd.isna(v)]
    if len(present) < 2 or max(present) == min(present):
        return [False] * len(values)
    top = max(present) if higher_is_better else min(present)
    return [v is not None and not pd.isna(v) and float(v) == top for v in values]


def headline_table(table: pd.DataFrame, *, bold: bool = False) -> pd.DataFrame:
    """Predictor × headline metric, each cell "value [95% CI low, high]" (– where absent); with
    `bold`, each column's best value (by the metric's `higher_is_better`) in Markdown bold."""
    out = pd.DataFrame({"predictor": table["predictor"], "n": table.get("n")})
    for m in HEADLINE:
        col = table.get(m, pd.Series([None] * len(table)))
        lo = table.get(f"{m}_lo", pd.Series([None] * len(table)))
        hi = table.get(f"{m}_hi", pd.Series([None] * len(table)))
        marks = best(list(col), BY_NAME[m].higher_is_better) if bold else [False] * len(table)
        out[LABELS[m]] = [f"**{_with_ci(v, a, b)}**" if mark else _with_ci(v, a, b)
                          for v, a, b, mark in zip(col, lo, hi, marks, strict=True)]
    return out


def p_value_table(table: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Predictor × headline metric paired p-values against the reference (its own row left out)."""
    rows = table[table["predictor"] != reference] if reference else table
    out = pd.DataFrame({"predictor": rows["predictor"]})
    for m in HEADLINE:
        col = rows.get(f"{m}_p", pd.Series([None] * len(rows), index=rows.index))
        out[LABELS[m]] = [_p_value(p) for p in col]
    return out


def language_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per language and predictor: n and the headline metrics (languages with the most
    examples first, then by name and predictor)."""
    cols = ["language", "predictor", "n", *[m for m in HEADLINE if m in table]]
    out = table[[c for c in cols if c in table]].copy()
    size = out.groupby("language")["n"].transform("max") if "n" in out else 0
    out = out.assign(_size=size).sort_values(["_size", "language", "predictor"],
                                              ascending=[False, True, True], kind="stable")
    return out.drop(columns="_size").rename(columns=LABELS).reset_index(drop=True)


# ---------------------------------------------------------------- the report


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts, NaN as None (the templates label it "missing")."""
    return json.loads(frame.to_json(orient="records"))


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (tabulate): 3 decimals, – for a missing value."""
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_markdown(index=False, floatfmt=".3f", missingval="–")


def build_report(
    out_dir: Path = paths.REPORT,
    *,
    headline_path: Path = HEADLINE_FILE,
    predictors_path: Path = PREDICTORS_TABLE,
    languages_path: Path = LANGUAGES_TABLE,
    curves_dir: Path = paths.FINETUNE_CURVES,
    posttrain_curves_dir: Path = paths.POSTTRAIN_CURVES,
    posttrain: dict[str, Any] | None = None,
    template_dir: Path = paths.PLOT_TEMPLATES,
    charts: tuple[Chart, ...] = CHARTS,
    about: list[str] | None = None,
    judge: str = "judge",
    coverage_path: Path = COVERAGE_TABLE,
    risk_path: Path = RISK_TABLE,
    examples_page: Path | None = paths.EXAMPLES_PAGE,
) -> dict[str, Any]:
    """Write the report into `out_dir` (README.md, CSVs, one SVG per chart of `charts` whose data
    exists and has rows); `about`: the provenance lines (see `provenance`), `judge`: the judge
    column's name (see `judge_label`), `posttrain`: metrics/posttrain.json when posttrain.method
    trained (its before/after table); `examples_page`: evaluate's per-example page, linked when it
    exists; return flat counts."""
    predictors = with_p_values(read_rows(predictors_path, "predictor"), headline_path)
    languages = read_rows(languages_path, "language")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.svg"):
        stale.unlink()
    predictors = predictors[csv_columns(list(predictors.columns), "predictor")]
    languages = languages[csv_columns(list(languages.columns), "language", "predictor")]
    predictors.to_csv(out_dir / "predictors.csv", index=False, float_format="%.6g", lineterminator="\n")
    languages.to_csv(out_dir / "languages.csv", index=False, float_format="%.6g", lineterminator="\n")

    sources = {PREDICTORS_TABLE: predictors, LANGUAGES_TABLE: languages}
    drawn: list[Chart] = []
    for chart in charts:
        frame = sources.get(chart.source)
        if frame is None:  # a curve: read from its stage's curve directory under its own name
            folder = posttrain_curves_dir if chart.source.parent == paths.POSTTRAIN_CURVES else curves_dir
            frame = read_curve(folder / chart.source.name)
        if frame is None or frame.empty or chart.x not in frame or chart.y not in frame:
            continue
        (out_dir / chart.file_name).write_text(render_svg(chart_spec(chart, _records(frame), template_dir)))
        drawn.append(chart)

    reference = reference_predictor(predictors)
    parts = [
        "# nep results",
        "",
        "Written by `python -m stages.report` (`dvc repro report`) from metrics/evaluate/. "
        "Tables: predictors.csv, languages.csv. Interactive charts: `dvc plots show`.",
        "",
        *(["## What was measured", "", *about, ""] if about else []),
        "## Predictors",
        "",
        "Share of test examples (delta chrF: Zed's definition, on 0–1), with the 95% bootstrap "
        "confidence interval in brackets; – where a metric was not computed; the best value of each "
        "column in bold.",
        "",
        _markdown(headline_table(predictors, bold=True).rename(columns={LABELS["llm_judge"]: judge})),
        "",
    ]
    if examples_page is not None and examples_page.exists():
        link = Path(os.path.relpath(examples_page, out_dir)).as_posix()
        parts += [f"Every test example, its true edit and each predictor's edit as diffs with their scores "
                  f"(sortable, worst first; opens offline): [{examples_page.name}]({link}).", ""]
    if reference:
        parts += [
            f"Paired p-values against `{reference}` (the reference predictor):",
            "",
            _markdown(p_value_table(predictors, reference).rename(columns={LABELS["llm_judge"]: judge})),
            "",
        ]
    if posttrain:
        parts += ["## Post-training", "", *posttrain_lines(posttrain), ""]
    parts += coverage_section(out_dir, judge, coverage_path=coverage_path, risk_path=risk_path)
    parts += [LATENCY_LINE, ""]
    parts += ["## Languages", "", _markdown(language_table(languages).rename(columns={LABELS["llm_judge"]: judge})),
              "", "## Charts", ""]
    parts += [f"![{chart.title}]({chart.file_name})\n" for chart in drawn]
    (out_dir / "README.md").write_text("\n".join(parts).rstrip() + "\n", encoding="utf-8")
    return {
        "predictors": int(len(predictors)),
        "languages": int(languages["language"].nunique()),
        "charts": len(drawn),
        "charts_skipped": len(charts) - len(drawn),
    }
