"""nep.train.rewards: rewards are the evaluation's metric values, weighted; DPO pair construction."""

from __future__ import annotations

import pytest

from nep.config.schema import PosttrainReward
from nep.core.prompts import NEXT, build_training_text, template_completion
from nep.evaluate.metrics import CONTEXT_LINES, delta_chrf, paper_scores
from nep.evaluate.refined import refined_scores
from nep.train.rewards import (
    Scored,
    make_pair,
    prompt_sections,
    reward_function,
    score_candidate,
)

ORIGINAL = "a = 1\nb = 2\n"
CURRENT = "a = 1\nb = 2\nc = 3\n"
TRUTH = "a = 1\nb = 2\nc = 3\nd = 4\n"
W = PosttrainReward(exact_match=1.0, partial_match=0.5, position_match=0.25, delta_chrf=0.5, reversal=0.5, unextractable=1.0)
SECTIONS = {"original": ORIGINAL, "current": CURRENT, "ground_truth": TRUTH}


@pytest.mark.parametrize(
    "prediction",
    [TRUTH, "a = 1\nb = 2\nc = 3\nd = 5\n", "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\n", "a = 1\nb = 2\n", CURRENT, "zzz\n"],
)
def test_reward_is_the_weighted_metrics(prediction):
    paper = paper_scores(CURRENT, TRUTH, prediction)
    refined = refined_scores(original=ORIGINAL, current=CURRENT, ground_truth=TRUTH, prediction=prediction,
                             context_lines=CONTEXT_LINES)  # what the reward scores with
    expected = (
        1.0 * paper["exact_match"] + 0.5 * bool(paper["partial_match"]) + 0.25 * bool(paper["position_match"])
        + 0.5 * delta_chrf(CURRENT, TRUTH, prediction) - 0.5 * bool(refined.reversal)
    )
    got = score_candidate(template_completion(prediction), weights=W, **SECTIONS)  # as a trained model writes it
    assert got.reward == pytest.approx(expected, abs=1e-6)
    assert got.exact_match == float(paper["exact_match"]) and got.unextractable == 0.0
    assert got.delta_chrf == pytest.approx(delta_chrf(CURRENT, TRUTH, prediction))


def test_hand_made_candidates_rank_as_expected():
    exact = score_candidate(template_completion(TRUTH), weights=W, **SECTIONS)
    assert exact.reward == pytest.approx(2.25) and exact.partial_match == exact.position_match == 1.0
    near = score_candidate(template_completion("a = 1\nb = 2\nc = 3\nd = 5\n"), weights=W, **SECTIONS)
    assert near.exact_match == 0.0 and near.position_match == 1.0 and near.partial_match == 0.0
    reverted = score_candidate(template_completion(ORIGINAL), weights=W, **SECTIONS)  # undoes the history's `c = 3`
    assert reverted.reversal == 1.0 and reverted.reward < 0
    assert exact.reward > near.reward > reverted.reward


def test_unextractable_output_gets_only_the_penalty():
    for raw in ["", "   \n", "<|original_code|>\nx\n"]:  # nothing before a marker is nothing at all
        s = score_candidate(raw, weights=W, **SECTIONS)
        assert s.unextractable == 1.0 and s.reward == -1.0
        assert (s.exact_match, s.partial_match, s.position_match, s.delta_chrf, s.reversal) == (0, 0, 0, 0, 0)


def test_weights_scale_and_zero_out_terms():
    only_chrf = PosttrainReward(exact_match=0.0, partial_match=0.0, position_match=0.0, delta_chrf=1.0, reversal=0.0, unextractable=0.0)
    pred = "a = 1\nb = 2\nc = 3\nd = 5\n"
    assert score_candidate(template_completion(pred), weights=only_chrf, **SECTIONS).reward == pytest.approx(round(delta_chrf(CURRENT, TRUTH, pred), 6))
    assert score_candidate("", weights=only_chrf, **SECTIONS).reward == 0.0


def test_prompt_sections_read_the_training_prompt():
    t = build_training_text(ORIGINAL, CURRENT, TRUTH, path="x.py")
    assert t.prompt.endswith(f"{NEXT}\n")
    assert t.completion == TRUTH + "\n"  # the template newline
    assert prompt_sections({"prompt": t.prompt, "completion": t.completion}) == SECTIONS  # the real next version
    assert prompt_sections({"prompt": t.prompt, "completion": t.completion, "next": "other"})["ground_truth"] == "other"


def _s(reward: float, exact: bool = False) -> Scored:
    return Scored(reward, float(exact), 0.0, 0.0, 0.0, 0.0, 0.0)


def pair(cands, **kw):
    args = {"id": "e", "prompt": "P", "ground_truth": "T", "truth_reward": 2.25, "candidates": cands, **kw}
    return make_pair(**args)


def test_all_wrong_takes_the_ground_truth_as_chosen():
    p, outcome = pair([("x", _s(0.1)), ("y", _s(-1.0)), ("z", _s(0.3))])
    assert outcome == "ground_truth"
    assert (p.chosen, p.rejected, p.chosen_reward, p.rejected_reward) == ("T", "y", 2.25, -1.0)


def test_a_correct_sample_is_chosen_over_the_ground_truth():
    p, outcome = pair([("x", _s(0.1)), ("good", _s(2.25, exact=True)), ("y", _s(-1.0))])
    assert outcome == "sample" and (p.chosen, p.rejected) == ("good", "y")


def test_all_right_is_skipped():
    assert pair([("T", _s(2.25, True)), ("T", _s(2.25, True))]) == (None, "all_correct")


def test_ties_are_skipped_and_margin_applies():
    assert pair([("x", _s(0.2)), ("y", _s(0.2))], add_ground_truth=False) == (None, "tie")
    assert pair([("x", _s(0.3)), ("y", _s(0.2))], add_ground_truth=False, margin=0.1)[1] == "tie"
    p, outcome = pair([("x", _s(0.35)), ("y", _s(0.2))], add_ground_truth=False, margin=0.1)
    assert outcome == "sample" and (p.chosen, p.rejected) == ("x", "y")
    assert pair([], add_ground_truth=True) == (None, "no_candidates")


def test_equal_rewards_break_by_sampling_order():
    p, _ = pair([("a", _s(1.0)), ("b", _s(1.0)), ("c", _s(0.0)), ("d", _s(0.0))], add_ground_truth=False)
    assert (p.chosen, p.rejected) == ("a", "c")


def test_grpo_reward_function_decodes_ids_and_scores_each_completion():
    fn = reward_function(W, decode=lambda ids: template_completion(TRUTH) if ids == [1] else "")
    got = fn(prompts=["p", "p"], completions=["ignored", "ignored"], completion_ids=[[1], [2]],
             original=[ORIGINAL] * 2, current=[CURRENT] * 2, ground_truth=[TRUTH] * 2, trainer_state=None)
    assert got == [pytest.approx(2.25), -1.0]
    plain = reward_function(W)(prompts=["p"], completions=[template_completion(TRUTH)], original=[ORIGINAL], current=[CURRENT], ground_truth=[TRUTH])
    assert plain == [pytest.approx(2.25)]


def test_grpo_reward_strips_each_rows_lead_only():
    """Prompts given up to the marker (model_boundary): the completion's leading newline is the
    marker's, not the answer's; a row without a lead keeps its text whole."""
    text = "\n" + template_completion(TRUTH)
    got = reward_function(W)(prompts=["p", "p"], completions=[text, text], lead=["\n", ""],
                             original=[ORIGINAL] * 2, current=[CURRENT] * 2, ground_truth=[TRUTH] * 2)
    assert got[0] == pytest.approx(2.25) and got[1] < got[0]


def test_a_completion_that_did_not_end_gets_only_the_penalty():
    """Cut at max_new_tokens, even the right text is no next version (as in evaluation)."""
    cut = score_candidate(template_completion(TRUTH), weights=W, complete=False, **SECTIONS)
    assert (cut.unextractable, cut.reward, cut.exact_match, cut.delta_chrf) == (1.0, -1.0, 0, 0)
    ended = reward_function(W, decode=lambda ids: template_completion(TRUTH), ended=lambda ids: ids[-1] == 0)
    got = ended(prompts=["p", "p"], completions=["", ""], completion_ids=[[5, 0], [5, 6]],
                original=[ORIGINAL] * 2, current=[CURRENT] * 2, ground_truth=[TRUTH] * 2)
    assert got == [pytest.approx(2.25), -1.0]  # the second ran to the length limit: no EOS id at its end


# ---------------------------------------------------------------- answer formats (process.format)


def test_rewards_read_candidates_in_the_answer_format():
    from nep.config.schema import Format
    from nep.core.formats import answer_format

    blocks = answer_format(Format(answer="blocks"))
    right = "<<<<<<< ORIGINAL\nc = 3\n=======\nc = 3\nd = 4\n>>>>>>> UPDATED\n\n"
    assert score_candidate(right, weights=W, fmt=blocks, **SECTIONS).exact_match == 1.0
    # the same text is no next version in the paper's format, and a block that is nowhere is none in blocks
    assert score_candidate(right, weights=W, **SECTIONS).exact_match == 0.0
    missing = score_candidate(right.replace("c = 3\n=", "z = 9\n="), weights=W, fmt=blocks, **SECTIONS)
    assert missing.unextractable == 1.0 and missing.reward == -1.0
    reward = reward_function(W, fmt=blocks)
    assert reward(prompts=["p"], completions=[right], original=[ORIGINAL], current=[CURRENT], ground_truth=[TRUTH]) == [
        score_candidate(right, weights=W, fmt=blocks, **SECTIONS).reward]


def test_posttrain_records_in_a_format_keep_their_versions():
    from nep.config.schema import Format
    from nep.core.formats import answer_format
    from nep.train.posttrain import in_format

    text = build_training_text(ORIGINAL, CURRENT, TRUTH, path="f.py")
    record = {"id": "x", "prompt": text.prompt, "completion": text.completion, "original": ORIGINAL,
              "current": CURRENT, "next": TRUTH}
    region = answer_format(Format(answer="region", region_lines=1, omit_original=True))
    (converted,), unwritable = in_format([record], region)
    assert not unwritable and converted["prompt"] == region.prompt(record) != record["prompt"]
    assert prompt_sections(converted, region) == SECTIONS
    assert in_format([record], answer_format(None)) == ([record], {})
