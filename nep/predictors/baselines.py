"""The non-learned baselines: `identity` (the current version unchanged, a floor) and `propagate`
(the most recent edit repeated at the next place it applies). Their outputs are next versions by
construction (style `direct`), whatever the answer format."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from nep.core.extract import Style
from nep.core.prompts import parse_prompt
from nep.predictors.base import Prediction, Predictor, by_length
from nep.predictors.propagate import propagate


class OneByOne(Predictor):
    """A cheap predictor answering each example on its own (`predict_one`), in groups of
    `batch_size` so progress is saved as it goes."""

    def predict_one(self, example: dict[str, Any]) -> Prediction:
        raise NotImplementedError

    def predict(self, examples, todo, settings):
        for idx in by_length(examples, todo, settings.batch_size):
            group = []
            for i in idx:
                start = time.perf_counter()
                prediction = self.predict_one(examples[i])
                prediction.latency_s = time.perf_counter() - start
                group.append((i, prediction))
            yield group


@dataclass
class IdentityPredictor(OneByOne):
    kind: ClassVar[str] = "identity"
    style: ClassVar[Style] = "direct"

    def predict_one(self, example):
        return Prediction(parse_prompt(example["prompt"])["current"])


@dataclass
class PropagatePredictor(OneByOne):
    kind: ClassVar[str] = "propagate"
    style: ClassVar[Style] = "direct"

    def predict_one(self, example):
        sections = parse_prompt(example["prompt"])
        result = propagate(sections["original"], sections["current"])
        return Prediction(result.text, tags={"propagate_rule": result.rule})
