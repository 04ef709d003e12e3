"""`nep compare`: predictors x headline metrics x experiments, with 95% intervals, in 80
columns.

    nep compare                 # workspace, baseline and its experiments (dvc exp show's rows)
    nep compare --markdown      # one Markdown table, any width
    nep compare -n 2 --width 120  # also the commit before HEAD, a wider terminal

It reads what `dvc exp show` reads, through DVC's Python API (`dvc.api.exp_show`): the headline
metrics of metrics/evaluate.json (`<predictor>.<metric>` with `_lo`/`_hi` bounds, `_p` against the
reference predictor). Cells are percent: `value [lo, hi]`, with `*` when the paired test against the
reference gives p < 0.05. One block per predictor; experiments that do not fit the width continue
in a further set of blocks.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

from nep.evaluate.headline import BY_NAME, HEADLINE, LOWER_IS_BETTER
from nep.util.errors import NepError

ORDER = HEADLINE  # nep/evaluate/headline.py's order; any other metric follows by name
EVALUATE = "metrics/evaluate.json:"
GAP = 2


@dataclass
class Experiment:
    """One row of `dvc exp show`: its name and its metrics/params columns (prefixes removed)."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)

    def number(self, key: str) -> float | None:
        value = self.values.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return None
        return float(value)


def experiments_from_dvc(repo: str = ".", *, revs: list[str] | None = None, num: int = 1) -> list[Experiment]:
    """The rows `dvc exp show` prints (queued and failed experiments left out)."""
    import dvc.api

    try:
        rows = dvc.api.exp_show(repo=repo, revs=revs or None, num=num)
    except Exception as e:  # noqa: BLE001 - not a DVC repository, broken dvc.yaml...
        raise NepError(f"dvc exp show failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                       hint="run from the project root after `dvc repro`") from e
    out = []
    for row in rows:
        if row.get("State") in ("Queued", "Failed"):
            continue
        name = row.get("Experiment") or row.get("rev") or "?"
        values = {(k[len(EVALUATE):] if k.startswith(EVALUATE) else k): v for k, v in row.items()}
        out.append(Experiment(str(name), values))
    return out


def headline(experiments: list[Experiment]) -> tuple[list[str], list[str]]:
    """(predictors, metrics) that any experiment reports with both interval bounds, in a stable order:
    predictors as params.yaml lists them (else by name), metrics as ORDER then by name."""
    found: dict[str, set[str]] = {}
    order: list[str] = []
    for exp in experiments:
        for key in exp.values:
            if key.startswith("generate.predictors.") and key.count(".") >= 3:
                name = key.split(".")[2]
                if name not in order:
                    order.append(name)
            predictor, _, metric = key.rpartition(".")
            if predictor and f"{key}_lo" in exp.values and f"{key}_hi" in exp.values:
                found.setdefault(predictor, set()).add(metric)
    predictors = [p for p in order if p in found] + sorted(p for p in found if p not in order)
    metrics = sorted({m for ms in found.values() for m in ms}, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))
    return predictors, metrics


def metric_name(metric: str) -> str:
    """The metric's key, marked when its declaration says lower is better."""
    known = BY_NAME.get(metric)
    return metric if known is None or known.higher_is_better else metric + LOWER_IS_BETTER


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


def cell(exp: Experiment, predictor: str, metric: str) -> str:
    """`38.1 [30.0, 46.2]*` (percent; * = p < 0.05 against the reference), or `-` when missing."""
    key = f"{predictor}.{metric}"
    value, lo, hi = exp.number(key), exp.number(f"{key}_lo"), exp.number(f"{key}_hi")
    if value is None:
        return "-"
    text = _pct(value) + (f" [{_pct(lo)}, {_pct(hi)}]" if lo is not None and hi is not None else "")
    p = exp.number(f"{key}_p")
    return text + ("*" if p is not None and p < 0.05 else "")


def _notes(experiments: list[Experiment]) -> list[str]:
    backends = sorted({str(e.values.get("judge.backend")) for e in experiments if e.values.get("judge.backend")})
    notes = ["percent, 95% bootstrap interval; * p < 0.05 against the reference predictor (paired test)"]
    if backends and "openai" not in backends:
        notes.append(f"llm_judge here is the offline '{'/'.join(backends)}' judge (judge.backend), not an LLM")
    return notes


def render_text(experiments: list[Experiment], width: int = 80) -> str:
    """Blocks of one predictor each (rows: metrics; columns: experiments); experiments that do not
    fit `width` continue in further blocks."""
    predictors, metrics = headline(experiments)
    if not predictors:
        raise NepError("no headline metrics (metrics/evaluate.json) in any experiment",
                       hint="run `dvc repro` first")
    label_width = 2 + max(len(metric_name(m)) for m in metrics)
    cells = {(i, p, m): cell(e, p, m) for i, e in enumerate(experiments) for p in predictors for m in metrics}
    widths = [max([len(e.name), *(len(cells[i, p, m]) for p in predictors for m in metrics)])
              for i, e in enumerate(experiments)]
    groups: list[list[int]] = [[]]
    used = label_width
    for i, w in enumerate(widths):
        if groups[-1] and used + GAP + w > width:
            groups.append([])
            used = label_width
        groups[-1].append(i)
        used += GAP + w
    lines = [*(w for n in _notes(experiments) for w in textwrap.wrap(n, width)), ""]
    for group in groups:
        names = "".join(" " * GAP + experiments[i].name[: widths[i]].rjust(widths[i]) for i in group)
        lines.append(" " * label_width + names)
        for p in predictors:
            sizes = {experiments[i].number(f"{p}.n") for i in group} - {None}
            n = f" (n={int(sizes.pop())})" if len(sizes) == 1 else ""
            lines.append(f"{p}{n}")
            for m in metrics:
                lines.append(f"  {metric_name(m)}".ljust(label_width)
                             + "".join(" " * GAP + cells[i, p, m].rjust(widths[i]) for i in group))
        lines.append("")
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def render_markdown(experiments: list[Experiment]) -> str:
    """One Markdown table: predictor, metric, one column per experiment."""
    predictors, metrics = headline(experiments)
    if not predictors:
        raise NepError("no headline metrics (metrics/evaluate.json) in any experiment", hint="run `dvc repro` first")
    rows = [["predictor", "metric", *(e.name for e in experiments)], ["---", "---", *("---:" for _ in experiments)]]
    for p in predictors:
        for m in metrics:
            rows.append([p, metric_name(m), *(cell(e, p, m).replace("*", r"\*") for e in experiments)])
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    return table + "\n\n" + "\n".join(f"({n})" for n in _notes(experiments)) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nep compare", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--markdown", action="store_true", help="one Markdown table (any width)")
    parser.add_argument("--width", type=int, default=80, help="columns of the text table (default 80)")
    parser.add_argument("--rev", action="append", help="a commit whose experiments to show (repeatable; default HEAD)")
    parser.add_argument("-n", "--num", type=int, default=1, help="commits back from each --rev (as dvc exp show)")
    args = parser.parse_args(argv)
    experiments = experiments_from_dvc(revs=args.rev, num=args.num)
    print(render_markdown(experiments) if args.markdown else render_text(experiments, args.width), end="")

