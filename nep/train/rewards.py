"""Rewards nep can check, and preference pairs built from them (the posttrain stage's data side).

A candidate is a raw model output for a training prompt. Its next version is read the way the
evaluation reads a fine-tuned model's output (nep.core.extract, `completion` style) and scored with the
evaluation's own functions (nep.evaluate.metrics.score_example), so a reward is a weighted sum of the
numbers `evaluate` reports:

    reward = w.exact_match    * exact_match
           + w.partial_match  * partial_match       (the paper's; undefined counts 0)
           + w.position_match * position_match      (the paper's; undefined counts 0)
           + w.delta_chrf     * delta_chrf          (edit-level chrF, in [0, 1])
           - w.reversal       * reversal            (a predicted chunk undoes the edit history)
           - w.unextractable  * (nothing extracted)  (every other term is then 0)

Pairs for DPO (`make_pair`): per prompt, the best candidate is chosen (the ground truth instead
when no candidate is an exact match and `add_ground_truth` is on) and the worst one rejected;
a pair whose rewards differ by no more than `margin` is skipped and counted (`tie`, or
`all_correct` when every candidate is an exact match). Imports no heavy library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nep.config.schema import PosttrainReward
from nep.core.formats import PAPER, AnswerFormat, Versions
from nep.core.prompts import parse_prompt, strip_lead, strip_template_newline
from nep.evaluate.metrics import ExampleScore, score_example

# The reward's weights are the `posttrain.reward:` params themselves (nep.config.schema.PosttrainReward);
# the last two are penalties (subtracted).
COMPONENTS = tuple(PosttrainReward.model_fields)


@dataclass(frozen=True)
class Scored:
    """One candidate's reward and the metric values it was computed from (0/1 for flags)."""

    reward: float
    exact_match: float
    partial_match: float
    position_match: float
    delta_chrf: float
    reversal: float
    unextractable: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def reward_from_score(score: ExampleScore, weights: PosttrainReward) -> Scored:
    """The reward of an evaluation score (undefined partial/position/reversal count 0)."""
    parts = {
        "exact_match": float(score.exact_match),
        "partial_match": float(bool(score.partial_match)),
        "position_match": float(bool(score.position_match)),
        "delta_chrf": float(score.delta_chrf),
        "reversal": float(bool(score.reversal)),
        "unextractable": float(not score.extracted),
    }
    reward = sum(getattr(weights, k) * parts[k] for k in COMPONENTS[:4])
    reward -= weights.reversal * parts["reversal"] + weights.unextractable * parts["unextractable"]
    return Scored(reward=round(reward, 6), **parts)


def score_candidate(
    raw: str, *, original: str, current: str, ground_truth: str, weights: PosttrainReward,
    complete: bool = True, fmt: AnswerFormat = PAPER,
) -> Scored:
    """Extract the next version from a raw completion and score it against the ground truth. A
    completion that did not end at EOS (`complete` false: cut at max_new_tokens) has no next
    version, as in evaluation (nep.predictors.stop.INCOMPLETE): only the unextractable penalty.
    The completion is an answer in format `fmt` (nep.core.formats), turned into the next version first.
    Position is matched with evaluate.context_lines's default (nep.evaluate.metrics.CONTEXT_LINES)."""
    extraction = fmt.read(raw, "completion", {"original": original, "current": current})
    ok = extraction.ok and complete
    score = score_example(
        original=original, current=current, ground_truth=ground_truth,
        prediction=extraction.text if ok else "", extracted=ok,
    )
    return reward_from_score(score, weights)


def prompt_sections(record: dict[str, Any], fmt: AnswerFormat = PAPER) -> dict[str, str]:
    """original, current and ground truth (the real next version: `next`, else the completion
    without its template newline) of a training record (in another answer format than the paper's,
    its own `original` and `current`: its prompt is the format's)."""
    if not fmt.is_paper:
        v = Versions.of(record)
        return {"original": v.original, "current": v.current, "ground_truth": record["next"]}
    sections = parse_prompt(record["prompt"])
    truth = record.get("next")
    if not isinstance(truth, str):
        truth = strip_template_newline(record["completion"])
    return {"original": sections["original"], "current": sections["current"], "ground_truth": truth}


@dataclass(frozen=True)
class Pair:
    """One DPO preference pair (data/posttrain/pairs.jsonl)."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float
    chosen_source: str  # sample | ground_truth

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_pair(
    *, id: str, prompt: str, ground_truth: str, truth_reward: float, candidates: Sequence[tuple[str, Scored]],
    margin: float = 0.0, add_ground_truth: bool = True,
) -> tuple[Pair | None, str]:
    """(pair, outcome) for one prompt's scored candidates (raw text, Scored), in sampling order;
    `truth_reward` is the ground truth's own reward (`score_candidate` of it).
    Outcomes: `sample` / `ground_truth` (the chosen side's source), or why no pair was made:
    `no_candidates`, `all_correct`, `tie` (rewards within `margin`, or the same text)."""
    if not candidates:
        return None, "no_candidates"
    best = max(range(len(candidates)), key=lambda i: (candidates[i][1].reward, -i))
    worst = min(range(len(candidates)), key=lambda i: (candidates[i][1].reward, i))
    any_exact = any(s.exact_match for _, s in candidates)
    chosen, chosen_reward, source = candidates[best][0], candidates[best][1].reward, "sample"
    if not any_exact and add_ground_truth:
        chosen, chosen_reward, source = ground_truth, truth_reward, "ground_truth"
    rejected, rejected_reward = candidates[worst][0], candidates[worst][1].reward
    if chosen_reward - rejected_reward <= margin or chosen == rejected:
        return None, "all_correct" if all(s.exact_match for _, s in candidates) else "tie"
    return Pair(id, prompt, chosen, rejected, chosen_reward, rejected_reward, source), source


def reward_function(
    weights: PosttrainReward, *, decode: Callable[[list[int]], str] | None = None,
    ended: Callable[[list[int]], bool] | None = None, fmt: AnswerFormat = PAPER,
) -> Callable[..., list[float]]:
    """A reward function for trl's GRPOTrainer: the dataset's `original`, `current` and
    `ground_truth` columns arrive as lists; `decode` (token ids → text, special tokens kept) reads
    the completions from their ids, so a marker the model writes still ends the next version;
    `ended` (token ids → whether the completion ended at EOS; trl keeps the EOS id) marks a
    completion cut at the length limit as incomplete; a `lead` column (what each completion's tokens
    begin with, nep.core.prompts.model_boundary) is stripped before scoring."""

    def nep_reward(prompts, completions, original, current, ground_truth, completion_ids=None, lead=None, **_):
        texts = [decode(ids) for ids in completion_ids] if decode is not None and completion_ids is not None else completions
        if lead is not None:  # what each completion's tokens begin with (nep.core.prompts.model_boundary)
            texts = [strip_lead(t, x) for t, x in zip(texts, lead, strict=True)]
        complete = ([ended(ids) for ids in completion_ids] if ended is not None and completion_ids is not None
                    else [True] * len(texts))
        return [
            score_candidate(t, original=o, current=c, ground_truth=g, weights=weights,
                            complete=done, fmt=fmt).reward
            for t, o, c, g, done in zip(texts, original, current, ground_truth, complete, strict=True)
        ]

    return nep_reward
