"""The per-example page: one static HTML file (no network, no external asset) showing, for every
test example, the true next edit and each predictor's edit as unified diffs of the current
version, with that prediction's scores; sortable by any metric of any predictor (worst first by
default) and filterable by predictor, by file name and to the examples a predictor gets wrong; the
view is kept in the address (`examples.html#predictor=propagate&metric=delta_chrf&order=worst&wrong=1`),
so a link opens it as it was.

Written by the evaluate stage (metrics/evaluate/examples.html, linked from the report) and by
`nep score --output DIR` (DIR/examples.html). The diffs are what was scored under
`evaluate.protocol` (nep.evaluate.protocol), so what the page shows is what the metrics saw.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from nep.core.edits import unified_diff
from nep.core.prompts import parse_prompt
from nep.evaluate.evaluation import PER_EXAMPLE, Evaluation
from nep.evaluate.headline import HEADLINE_METRICS
from nep.evaluate.protocol import scored_pair
from nep.util.jsonl import atomic_file, read_jsonl

# The per-example metrics shown: the headline ones (nep/evaluate/headline.py), then nep's edit
# similarity; (key of PER_EXAMPLE, label).
SHOWN = (*((m.name, m.label) for m in HEADLINE_METRICS), ("edit_similarity", "edit similarity"))
LOWER_IS_BETTER = tuple(m.name for m in HEADLINE_METRICS if not m.higher_is_better)
MAX_DIFF_LINES = 300  # a diff longer than this is cut (a rewritten file), saying how many lines are left out


def diff_html(current: str, new: str, path: str, *, missing: str | None = None) -> str:
    """A unified diff current → new as escaped HTML lines (classes add/del/hunk/ctx)."""
    if missing:
        return f'<div class="note">{html.escape(missing)}</div>'
    text = unified_diff(current, new, old_name=f"a/{path}", new_name=f"b/{path}")
    if not text:
        return '<div class="note">no change (the current version as is)</div>'
    lines = text.splitlines()[2:]  # the ---/+++ header names the file, shown above
    cut = len(lines) - MAX_DIFF_LINES
    out = []
    for line in lines[:MAX_DIFF_LINES]:
        cls = {"+": "add", "-": "del", "@": "hunk", "\\": "note"}.get(line[:1], "ctx")
        out.append(f'<span class="{cls}">{html.escape(line) or " "}</span>')
    if cut > 0:
        out.append(f'<span class="note">… {cut} more diff lines not shown</span>')
    return '<pre class="diff">' + "".join(out) + "</pre>"  # each line a block of its own


def _value(v: Any) -> float | None:
    return None if v is None else float(v)


def _chip(label: str, v: float | None) -> str:
    if v is None:
        return f'<span class="chip na" title="undefined for this example">{label} –</span>'
    shade = "good" if v >= 0.999 else "bad" if v <= 0.001 else "mid"
    shown = f"{v:.0f}" if v in (0.0, 1.0) else f"{v:.3f}"
    return f'<span class="chip {shade}">{label} {shown}</span>'


def page_data(ev: Evaluation, generations: dict[str, Path], protocol: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(predictors, examples): each example's file, language, true diff HTML and, per predictor,
    its diff HTML and per-example values (None = undefined), in the first predictor's test order."""
    predictors = list(ev.scores)
    records: dict[str, dict[str, dict[str, Any]]] = {
        name: {r["id"]: r for r in read_jsonl(generations[name], drops=Counter()) if isinstance(r.get("id"), str)}
        for name in predictors
    }
    order: list[str] = []
    for name in predictors:
        order += [s.id for s in ev.scores[name] if s.id not in order]
    scores = {name: {s.id: s for s in ev.scores[name]} for name in predictors}
    examples = []
    for eid in order:
        some = next(records[n][eid] for n in predictors if eid in records[n])
        path = some.get("path") or some.get("new_file") or "file"
        current = parse_prompt(some["prompt"])["current"]
        truth, _, _ = scored_pair(some, protocol)
        entry: dict[str, Any] = {"id": eid, "path": path, "language": str(some.get("language") or "unknown"),
                                 "truth": diff_html(current, truth, path), "predictions": {}}
        for name in predictors:
            s, rec = scores[name].get(eid), records[name].get(eid)
            if s is None or rec is None:
                continue
            _, prediction, answered = scored_pair(rec, protocol)
            why = None
            if s.missing:
                why = "no prediction for this example (missing from the predictions file)"
            elif not answered:
                why = f"no next version ({rec.get('extraction') or 'unextracted'})"
            entry["predictions"][name] = {
                "diff": diff_html(current, prediction, path, missing=why),
                "values": {key: _value(PER_EXAMPLE[key](s)) for key, _ in SHOWN},
            }
        examples.append(entry)
    return predictors, examples


STYLE = """
body{font:14px/1.4 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #d0d7de;padding:10px 16px;z-index:1}
h1{font-size:17px;margin:0 0 6px}
.controls{display:flex;flex-wrap:wrap;gap:12px;align-items:center}
.controls label{font-size:13px;color:#57606a}
select,input{font:inherit;font-size:13px;padding:2px 4px}
main{padding:12px 16px}
.ex{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin:0 0 14px;padding:8px 12px}
.ex h2{font-size:14px;margin:0 0 6px;font-weight:600}
.ex h2 .meta{color:#57606a;font-weight:400}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:10px}
.truth{grid-column:1/-1}
.block h3{font-size:13px;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px;align-items:center}
.block h3 .who{margin-right:6px}
pre.diff{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:0;padding:4px 0;
 border:1px solid #d0d7de;border-radius:4px;overflow:auto;max-height:420px;background:#fff}
pre.diff span{display:block;padding:0 6px;white-space:pre}
.add{background:#dafbe1}.del{background:#ffebe9}.hunk{color:#0550ae;background:#f1f8ff}.ctx{color:#424a53}
.note{color:#57606a;font-style:italic;padding:4px 6px}
.chip{font-size:12px;font-weight:500;border-radius:10px;padding:0 7px;border:1px solid transparent}
.good{background:#dafbe1;border-color:#8ddb9e}.bad{background:#ffebe9;border-color:#ffb3ad}
.mid{background:#fff8c5;border-color:#eac54f}.na{background:#f6f8fa;border-color:#d0d7de;color:#57606a}
.count{color:#57606a;font-size:13px}
"""

SCRIPT = """
const D = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
const cards = Array.from(document.querySelectorAll('.ex'));
function value(i, p, m) {
  const e = D.examples[i];
  const ps = p === '*' ? D.predictors : [p];
  const vs = ps.map(q => (e.predictions[q] || {}).values).filter(v => v && v[m] !== null && v[m] !== undefined)
               .map(v => v[m]);
  return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null;
}
function update() {
  const p = $('predictor').value, m = $('metric').value, order = $('order').value;
  const text = $('file').value.toLowerCase(), wrong = $('wrong').checked;
  let shown = 0;
  const keyed = cards.map(c => { const i = +c.dataset.i; return [c, i, value(i, p, m)]; });
  if (order !== 'test') {
    const sign = (order === 'worst' ? 1 : -1) * (D.lower.includes(m) ? -1 : 1);
    keyed.sort((a, b) => (a[2] === null) - (b[2] === null) || sign * (a[2] - b[2]) || a[1] - b[1]);
  } else keyed.sort((a, b) => a[1] - b[1]);
  const main = document.querySelector('main');
  for (const [c, i, v] of keyed) {
    const e = D.examples[i];
    const hit = (!text || e.path.toLowerCase().includes(text) || e.id.toLowerCase().includes(text))
      && (!wrong || (v !== null && (D.lower.includes(m) ? v > 0 : v < 1)));
    c.hidden = !hit; shown += hit;
    for (const b of c.querySelectorAll('.pred')) b.hidden = p !== '*' && b.dataset.p !== p;
    main.appendChild(c);
  }
  $('count').textContent = shown + ' of ' + cards.length + ' examples';
}
const CONTROLS = ['predictor', 'metric', 'order', 'file', 'wrong'];
// the view in the address: #predictor=NAME&metric=delta_chrf&order=best&wrong=1&file=TEXT (a link to it)
for (const [k, v] of new URLSearchParams(location.hash.slice(1))) {
  const el = CONTROLS.includes(k) && $(k);
  if (el && el.type === 'checkbox') el.checked = v === '1'; else if (el) el.value = v;
}
function remember() {
  const q = new URLSearchParams();
  for (const k of CONTROLS) { const el = $(k); q.set(k, el.type === 'checkbox' ? (el.checked ? '1' : '0') : el.value); }
  history.replaceState(null, '', '#' + q.toString());
}
for (const id of CONTROLS) $(id).addEventListener('input', () => { update(); remember(); });
update();
"""


def render(predictors: list[str], examples: list[dict[str, Any]], *, title: str, note: str = "") -> str:
    """The page's HTML (self-contained)."""
    esc = html.escape
    options = "".join(f'<option value="{esc(p)}">{esc(p)}</option>' for p in predictors)
    metrics = "".join(f'<option value="{k}">{esc(label)}</option>' for k, label in SHOWN)
    cards = []
    for i, ex in enumerate(examples):
        blocks = [f'<div class="block truth"><h3><span class="who">true edit</span></h3>{ex["truth"]}</div>']
        for name in predictors:
            pred = ex["predictions"].get(name)
            if pred is None:
                continue
            chips = "".join(_chip(label, pred["values"][key]) for key, label in SHOWN)
            blocks.append(f'<div class="block pred" data-p="{esc(name)}"><h3><span class="who">{esc(name)}</span>'
                          f'{chips}</h3>{pred["diff"]}</div>')
        cards.append(f'<section class="ex" data-i="{i}"><h2>{esc(ex["path"])} <span class="meta">'
                     f'{esc(ex["language"])} · {esc(ex["id"])}</span></h2><div class="cols">{"".join(blocks)}'
                     "</div></section>")
    data = {"predictors": predictors, "lower": list(LOWER_IS_BETTER),
            "examples": [{"id": e["id"], "path": e["path"],
                          "predictions": {n: {"values": p["values"]} for n, p in e["predictions"].items()}}
                         for e in examples]}
    payload = json.dumps(data, sort_keys=True, ensure_ascii=False).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>"
        + (f'<div class="count">{esc(note)}</div>' if note else "")
        + '<div class="controls">'
        f'<label>predictor <select id="predictor"><option value="*">all</option>{options}</select></label>'
        f'<label>sort by <select id="metric">{metrics}</select></label>'
        '<label>order <select id="order"><option value="worst">worst first</option>'
        '<option value="best">best first</option><option value="test">test-set order</option></select></label>'
        '<label><input type="checkbox" id="wrong"> only imperfect</label>'
        '<label>file <input id="file" placeholder="filter by file or id" size="22"></label>'
        '<span class="count" id="count"></span></div></header>'
        f"<main>{''.join(cards)}</main>"
        f'<script type="application/json" id="data">{payload}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_page(path: Path, ev: Evaluation, generations: dict[str, Path], *, protocol: str,
               title: str = "nep: every test example") -> None:
    """Write the per-example page of `ev` (its generation records: `generations`) to `path`."""
    predictors, examples = page_data(ev, generations, protocol)
    note = (f"{len(examples)} examples × {len(predictors)} predictors; diffs of the current version, as scored "
            f"(evaluate.protocol {protocol}); sort: the chosen predictor's value (all: their mean)")
    with atomic_file(path) as f:
        f.write(render(predictors, examples, title=title, note=note))
