"""What a prediction is scored against: `evaluate.protocol`.

- ``next_version`` (default): the real next version (an example's `next`; `new_contents` for NEP
  records) against the extracted answer (`output`, a file: nep.core.extract removes a
  template-trained model's template newline). What the paper's `generate_api.py` does for API
  models, and what a user of any predictor means by "the next file".
- ``paper_offline``: as the paper's `evaluate/generate_offline.py` scores its local models (the
  fine-tuned "-NEP" rows and the base models' rows of its tables): the ground truth is the text
  after `<|next_version|>\\n` in the record's `text` (`new_contents` plus the template newline;
  the generation record's `template_ground_truth`), and the answer is the raw output, cut to the
  part between `<next_version>\\n` and the next `\\n</next_version>` when both are there (else the
  whole output), nothing else removed. An example without an answer (skipped, missing) scores 0.
"""

from __future__ import annotations

from typing import Any, Literal

from nep.core.prompts import template_completion

Protocol = Literal["next_version", "paper_offline"]
PROTOCOLS: tuple[str, ...] = ("next_version", "paper_offline")

_START, _END = "<next_version>\n", "\n</next_version>"


def paper_offline_extract(raw: str) -> str:
    """The paper's offline extraction: between the first `<next_version>\\n` and the first
    `\\n</next_version>` after it, else the output unchanged."""
    start = raw.find(_START)
    if start == -1:
        return raw
    start += len(_START)
    end = raw.find(_END, start)
    return raw if end == -1 else raw[start:end]


def scored_pair(record: dict[str, Any], protocol: str) -> tuple[str, str, bool]:
    """(ground truth, prediction, extracted) of a generation record under `protocol`."""
    extracted = bool(record.get("extracted", True))
    if protocol == "next_version":
        return record["ground_truth"], record["output"], extracted
    if protocol == "paper_offline":
        truth = record.get("template_ground_truth")
        if not isinstance(truth, str):
            truth = template_completion(record["ground_truth"])
        raw = record.get("raw_output")
        raw = raw if isinstance(raw, str) else record["output"]
        answered = bool(raw) or extracted  # skipped and missing examples have no raw output
        return truth, paper_offline_extract(raw), answered
    raise ValueError(f"evaluate.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
