"""The headline metrics: one declaration each, read by everything that shows them.

A headline metric is scored per example (a field of `ExampleScore`, nep/evaluate/metrics.py, or a
function of one), summarized with a 95% interval and a paired p-value against the reference
predictor, and shown everywhere a reader looks first:

- evaluate (nep/evaluate/evaluation.py): `<p>.<name>`, `_lo`, `_hi`, `_p` in metrics/evaluate.json,
  and a column of the predictor and language tables; `binary` picks the paired test (exact
  McNemar for 0/1 values, a paired permutation test otherwise);
- the report (nep/evaluate/report.py, charts.py): a column `label` of the tables, two bar charts
  (by predictor, by language) titled from `label`, their axis `axis`;
- `nep compare`: a row per metric, in this order;
- dvc.yaml's top-level `plots:`: the same two charts (tests/evaluate/test_report.py checks that
  dvc.yaml holds exactly `nep.evaluate.charts.CHARTS` and prints the entries to paste when not).

`higher_is_better` is False for a metric where less is better (an error rate): the report and
compare mark its label "(lower is better)". Adding a headline metric: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOWER_IS_BETTER = " (lower is better)"


@dataclass(frozen=True)
class HeadlineMetric:
    """One headline metric. `name`: its key in evaluate's outputs and, unless `value` says
    otherwise, the `ExampleScore` field it reads (None = undefined for the example). This module
    imports nothing of nep's, so the report and compare read it without the scoring code."""

    name: str
    label: str  # the tables' column and the charts' title ("exact match" -> "Exact match by predictor")
    axis: str  # the charts' value axis
    binary: bool = True  # 0/1 per example (McNemar); False: a number (paired permutation test)
    higher_is_better: bool = True
    value: Callable[[Any], Any] | None = None  # of an ExampleScore; default: its field `name`

    def of(self, score: Any) -> float | bool | None:
        """This metric's value on one example (None = undefined)."""
        return self.value(score) if self.value else getattr(score, self.name)

    @property
    def column(self) -> str:
        """The label as a table column: marked when lower is better."""
        return self.label + ("" if self.higher_is_better else LOWER_IS_BETTER)

    @property
    def title(self) -> str:
        """The label as a chart title's start: "exact match" -> "Exact match"."""
        return self.label[0].upper() + self.label[1:]


HEADLINE_METRICS: tuple[HeadlineMetric, ...] = (
    # the paper's, in its order
    HeadlineMetric("exact_match", "exact match", "exact match (share of examples)"),
    HeadlineMetric("partial_match", "partial match", "partial match (share of examples)"),
    HeadlineMetric("position_match", "position match", "position match (share of examples)"),
    # the judge stage's verdict: an LLM's, or the offline rules' (judge.backend)
    HeadlineMetric("llm_judge", "judge", "judged correct (share; judge.backend: rules or an LLM)",
                   value=lambda s: s.judgment == 1),
    # Zed's (nep/evaluate/zed.py, kept_rate.py)
    HeadlineMetric("delta_chrf", "delta chrF (Zed)", "delta chrF (Zed's definition, 0–1)", binary=False),
    HeadlineMetric("kept_rate", "kept rate (Zed)", "kept rate: share of the edit's characters the truth keeps (Zed)",
                   binary=False),
)
HEADLINE: tuple[str, ...] = tuple(m.name for m in HEADLINE_METRICS)
BY_NAME: dict[str, HeadlineMetric] = {m.name: m for m in HEADLINE_METRICS}
