"""Where the model's tokens begin: nep.core.prompts.model_boundary."""

from __future__ import annotations

from nep.core.prompts import ANSWER_LEAD, NEXT, build_training_text, model_boundary, paper_prompt, strip_lead


def test_a_training_prompt_is_given_up_to_its_marker_and_the_newline_opens_the_answer():
    t = build_training_text("    a = 1\n", "    a = 2\n", "    a = 3\n", path="m.py")
    head, lead = model_boundary(t.prompt)
    assert head.endswith(NEXT) and lead == ANSWER_LEAD == "\n" and head + lead == t.prompt
    paper = paper_prompt("a\n", "b\n", old_file="m.py", new_file="m.py")
    assert model_boundary(paper) == (paper[:-1], "\n")


def test_other_prompts_are_given_whole():
    for prompt in ("<|im_start|>user\nfix it<|im_end|>\n<|im_start|>assistant\n", f"{NEXT}\nx", f"x{NEXT}", ""):
        assert model_boundary(prompt) == (prompt, "")


def test_strip_lead_removes_only_the_lead():
    assert strip_lead("\n    a = 3\n", "\n") == "    a = 3\n"
    assert strip_lead("    a = 3\n", "\n") == "    a = 3\n"  # a model that skipped the newline: kept whole
    assert strip_lead("\n\nx", "\n") == "\nx"  # one newline only: a blank first line stays
    assert strip_lead("\nx", "") == "\nx"
