"""nep's charts: dvc.yaml's top-level `plots:` as data (CHARTS), drawn to SVG for the report.

Each chart is filled from the same Vega-Lite template in .dvc/plots/ by dvc-render, as
`dvc plots show` does, then drawn offline by vl-convert. CHARTS repeats dvc.yaml's plots: a test
keeps them equal (and prints the entries to paste when a headline metric was added, see
`dvc_plots_yaml`). Same inputs give the same bytes (no dates, fixed fonts, clip ids renumbered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nep.evaluate.headline import HEADLINE_METRICS
from nep.util import paths
from nep.util.errors import NepError

REVISION = "workspace"  # the `rev` DVC gives the working tree's rows; the report draws only it
VEGA_LITE = "5.21"  # vl-convert's newest Vega-Lite 5 (the page inlines 5.23; the specs use neither's news)


@dataclass(frozen=True)
class Chart:
    """One chart, as a dvc.yaml top-level plot: `template` from .dvc/plots/, `x` the metric,
    `y` the category field of `source` (a JSON table or a TSV curve)."""

    title: str
    template: str
    source: Path
    x: str
    y: str
    x_label: str
    y_label: str

    @property
    def file_name(self) -> str:
        """The title as a plain file name: "Delta chrF (Zed) by predictor" -> delta_chrf_zed_by_predictor.svg."""
        words = "".join(c if c.isalnum() else " " for c in self.title.lower()).split()
        return "_".join(words) + ".svg"

    def dvc_definition(self) -> dict[str, Any]:
        """This chart as dvc.yaml's `plots:` entry value."""
        return {"template": self.template, "x": self.x, "x_label": self.x_label,
                "y_label": self.y_label, "y": {self.source.as_posix(): self.y}}


PREDICTORS_TABLE = paths.metrics("evaluate", "predictors")
LANGUAGES_TABLE = paths.metrics("evaluate", "languages")

CHARTS: tuple[Chart, ...] = (
    Chart("Training loss", "nep_loss", paths.FINETUNE_CURVES / "train_loss.tsv", "step",
          "train_loss", "optimizer step", "loss"),
    # posttrain's curves: drawn when posttrain.method trained (header-only files are skipped)
    Chart("Post-training loss", "nep_loss", paths.POSTTRAIN_CURVES / "loss.tsv", "step",
          "loss", "optimizer step", "DPO / GRPO loss"),
    Chart("Post-training reward", "nep_loss", paths.POSTTRAIN_CURVES / "reward.tsv", "step",
          "reward", "optimizer step", "mean reward of the step's rollouts (GRPO)"),
    Chart("DPO reward margin", "nep_loss", paths.POSTTRAIN_CURVES / "reward_margin.tsv", "step",
          "reward_margin", "optimizer step", "chosen - rejected implicit reward (DPO)"),
    # two per headline metric (nep/evaluate/headline.py)
    *(Chart(f"{m.title} by predictor", "nep_bars", PREDICTORS_TABLE, m.name, "predictor", m.axis, "predictor")
      for m in HEADLINE_METRICS),
    *(Chart(f"{m.title} by language", "nep_language_bars", LANGUAGES_TABLE, m.name, "language", m.axis, "language")
      for m in HEADLINE_METRICS),
)


def _without_revision(node: Any) -> Any:
    """The spec for one revision: no colour, offset or dash per `rev` and no facet header."""
    if isinstance(node, list):
        return [_without_revision(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value.get("field") == "rev":
            if key in ("color", "yOffset", "strokeDash"):
                continue
            if key in ("column", "row"):
                value = {**value, "header": {"labels": False, "title": None}}
        out[key] = _without_revision(value)
    return out


def chart_spec(chart: Chart, rows: list[dict[str, Any]], template_dir: Path) -> dict[str, Any]:
    """The Vega-Lite spec `dvc plots show` would draw for `rows` (DVC's renderer, the repository's
    template), for one revision."""
    from dvc_render import VegaRenderer

    datapoints = [{"rev": REVISION, "filename": chart.source.name, "field": chart.y, **row}
                  for row in rows]
    renderer = VegaRenderer(
        datapoints, chart.title, template=chart.template, template_dir=str(template_dir),
        title=chart.title, x=chart.x, y=chart.y, x_label=chart.x_label, y_label=chart.y_label,
    )
    return _without_revision(renderer.get_filled_template())


def render_svg(spec: dict[str, Any]) -> str:
    """SVG of a Vega-Lite spec, drawn offline (vl-convert bundles Vega and its fonts)."""
    try:
        import vl_convert
    except ImportError:
        raise NepError("the report needs vl-convert-python: pip install -r requirements.txt") from None
    return _stable_clip_ids(vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE))


def _stable_clip_ids(svg: str) -> str:
    """Vega numbers clip paths with a counter that lives as long as the process: renumber them in
    order of appearance, so one chart gives the same bytes whatever was drawn before it."""
    numbers: dict[str, str] = {}
    return re.sub(r"\bclip(\d+)\b", lambda m: "clip" + numbers.setdefault(m[1], str(len(numbers) + 1)), svg)


def dvc_plots_yaml(charts: tuple[Chart, ...] = CHARTS) -> str:
    """`charts` as dvc.yaml's top-level `plots:` entries (YAML, to paste into dvc.yaml)."""
    import yaml

    return yaml.safe_dump([{c.title: c.dvc_definition()} for c in charts], sort_keys=False, allow_unicode=True)
