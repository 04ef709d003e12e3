"""The `hybrid` predictor: a rule where it applies, a model's answers everywhere else.

    generate.predictors.hybrid: {kind: hybrid, rule: propagate, path: data/generate/finetuned.jsonl,
                                 needs: data/generate/finetuned.jsonl}

For each test example, `propagate` (nep.predictors.propagate) answers when one of its rules applies
(its next version differs from the current one); every other example gets the answer of the
generations in `path`, a model's (another predictor's data/generate/<name>.jsonl, or any file the
`file` kind reads, matched to the test set the same way). A model-plus-heuristic combination,
reported beside the model, never instead of it: the model's own answers stay its own predictor's.
metrics/generate/<name>.json counts the answers of each side (`hybrid_source.rule`, `hybrid_source.model`,
the rule's `propagate_rule.<rule>`) beside the file's match counts (`file.*`).

`needs` names the generations file, so DVC runs the model's generate stage first; the rule is
computed here (no file of its own to wait for).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar, Literal

from nep.predictors.base import current_version
from nep.predictors.baselines import PropagatePredictor
from nep.predictors.file import FilePredictor


@dataclass
class HybridPredictor(FilePredictor):
    """`rule`: the heuristic that answers where it applies (propagate); `path`: the model's generations."""

    kind: ClassVar[str] = "hybrid"
    rule: Literal["propagate"] = "propagate"

    def predict(self, examples, todo, settings):
        model = {i: p for group in super().predict(examples, todo, settings) for i, p in group}
        rule = PropagatePredictor()
        group = []
        for i in todo:
            start = time.perf_counter()
            prediction = rule.predict_one(examples[i])
            if prediction.raw_output != current_version(examples[i]):
                prediction.style, prediction.latency_s = rule.style, time.perf_counter() - start
                prediction.tags = {**prediction.tags, "hybrid_source": "rule"}
            else:
                prediction = model[i]
                prediction.tags = {**prediction.tags, "hybrid_source": "model"}
            group.append((i, prediction))
        yield group
