"""Answer formats: each one's answer turns back into the next version, and an answer that does not
apply gives no next version and says why (nep.core.formats)."""

from __future__ import annotations

import pytest

from nep.config.schema import Format, section
from nep.core.examples import make_example
from nep.core.formats import FORMATS, PAPER, Unrepresentable, Versions, answer_format
from nep.core.formats.blocks import DIVIDER, ORIGINAL, UPDATED
from nep.core.formats.region import REGION_END, REGION_START
from nep.core.prompts import CURRENT, EDITS_DIFF, NEXT, strip_template_newline
from nep.core.prompts import ORIGINAL as ORIGINAL_MARKER

LINES = [f"x{i} = {i}\n" for i in range(30)]
ORIGINAL_TEXT = "".join(LINES)
# the history renamed x3 and x4; the next edit renames x6
CURRENT_TEXT = ORIGINAL_TEXT.replace("x3 = 3", "y3 = 3").replace("x4 = 4", "y4 = 4")
NEXT_TEXT = CURRENT_TEXT.replace("x6 = 6", "y6 = 6")


def example(original=ORIGINAL_TEXT, current=CURRENT_TEXT, next_version=NEXT_TEXT, path="m.py"):
    return make_example(id="e", repos="r", commit="c", old_file=path, new_file=path, language="Python",
                        timestamp=None, original=original, current=current, next=next_version).to_dict()


def fmt(answer, **options):
    return answer_format(Format(answer=answer, **options))


CASES = [
    ("a rename", ORIGINAL_TEXT, CURRENT_TEXT, NEXT_TEXT),
    ("a deleted line", ORIGINAL_TEXT, CURRENT_TEXT, CURRENT_TEXT.replace("x6 = 6\n", "")),
    ("an inserted line", ORIGINAL_TEXT, CURRENT_TEXT, CURRENT_TEXT.replace("x5 = 5\n", "x5 = 5\nz = 0\n")),
    ("a blank line deleted among blanks", "a\n\nb\n\nc\n", "a\n\nB\n\nc\n", "a\n\nB\nc\n"),
    ("no final newline, last line edited", "a\nb\nc", "A\nb\nc", "A\nb\nC"),
    ("a final newline added", "a\nb", "A\nb", "A\nb\n"),
    ("an edit at the first line", "a\nb\nc\n", "a\nb\nC\n", "A\nb\nC\n"),
    ("CRLF lines", "a\r\nb\r\nc\r\n", "A\r\nb\r\nc\r\n", "A\r\nB\r\nc\r\n"),
]


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_training_answer_gives_the_next_version(name, case):
    _, original, current, next_version = case
    ex = example(original, current, next_version)
    f = fmt(name, region_lines=3)
    completion = f.completion(ex)  # raises Unrepresentable when it cannot write it (checked inside)
    # read back as a fine-tuned model's raw output (the completion without EOS)
    got = f.read(completion, "completion", ex)
    assert got.text == next_version, (got, completion)
    # and as a chat answer inside the tags
    chat = f.read(f"Sure.\n<next_version>\n{strip_template_newline(completion)}</next_version>", "chat", ex)
    assert chat.text == next_version


def test_whole_is_the_paper_prompt_and_completion_byte_for_byte():
    ex = example()
    assert PAPER.prompt(ex) == ex["prompt"] and PAPER.completion(ex) == ex["completion"]
    assert fmt("whole").prompt(ex) == ex["prompt"]
    assert PAPER.read(ex["completion"], "completion", ex).text == NEXT_TEXT


def test_omit_original_leaves_the_section_out_and_nothing_else():
    ex = example()
    lean = fmt("whole", omit_original=True).prompt(ex)
    assert ORIGINAL_MARKER not in lean and ex["prompt"].endswith(lean)
    assert lean.startswith(EDITS_DIFF) and lean.endswith(f"{NEXT}\n")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_history_as_blocks_gives_the_current_version_from_the_original(case):
    _, original, current, next_version = case
    ex = example(original, current, next_version)
    f = fmt("blocks", omit_original=True, history="blocks")
    history = f.history_text(Versions.of(ex))
    # the blocks the prompt shows, applied to the original, are the edit history: they give the current version
    assert fmt("blocks").apply(history, Versions(original, original)).text == current
    prompt = f.prompt(ex)
    assert prompt == f"{EDITS_DIFF}\n{history}{CURRENT}\n{current if current.endswith(chr(10)) else current + chr(10)}{NEXT}\n"
    assert "@@" not in prompt and not f.is_paper


def test_the_history_as_blocks_changes_only_the_history_section():
    ex = example()
    diff, blocks = fmt("whole"), fmt("whole", history="blocks")
    assert not blocks.is_paper and diff.is_paper
    shown = blocks.prompt(ex)
    assert shown.startswith(ORIGINAL_MARKER) and "@@" not in shown and "@@" in ex["prompt"]
    before, after = ex["prompt"].split(EDITS_DIFF), shown.split(EDITS_DIFF)
    assert before[0] == after[0]  # the original section
    assert before[1][before[1].index(CURRENT):] == after[1][after[1].index(CURRENT):]  # the current one on
    # x3 and x4 renamed: one block of two lines, unique without context
    assert after[1][: after[1].index(CURRENT)] == (
        f"\n{ORIGINAL}\nx3 = 3\nx4 = 4\n{DIVIDER}\ny3 = 3\ny4 = 4\n{UPDATED}\n")
    # the completion (the answer) is the same as with the diff
    assert blocks.completion(ex) == diff.completion(ex)


def test_an_unknown_history_is_refused_by_the_schema():
    with pytest.raises(ValueError, match="history"):
        section("process", {"format": {"history": "unified"}})


def test_region_marks_lines_around_the_last_change_and_writes_only_them():
    ex = example()
    f = fmt("region", region_lines=2)
    prompt = f.prompt(ex)
    shown = prompt[prompt.index(CURRENT) :]
    # the history's last change is lines 3-4 (y3, y4: one chunk); 2 lines each side: lines 1..6
    assert f"x0 = 0\n{REGION_START}\nx1 = 1\nx2 = 2\ny3 = 3\ny4 = 4\nx5 = 5\nx6 = 6\n{REGION_END}\nx7 = 7\n" in shown
    assert f.completion(ex) == "x1 = 1\nx2 = 2\ny3 = 3\ny4 = 4\nx5 = 5\ny6 = 6\n\n"


def test_region_cannot_write_an_edit_outside_it():
    far = CURRENT_TEXT.replace("x20 = 20", "y20 = 20")
    with pytest.raises(Unrepresentable) as e:
        fmt("region", region_lines=2).completion(example(next_version=far))
    assert e.value.reason == "edit_outside_region"
    assert fmt("region", region_lines=20).completion(example(next_version=far))  # a wider region can


@pytest.mark.parametrize(("answer", "reason"), [
    (f"{REGION_START}\nx2 = 2\n", "region_malformed"),
    ("x2 = 2\ny3 = 3", "region_unterminated"),  # would run into the line after the region
])
def test_region_answers_that_do_not_apply(answer, reason):
    got = fmt("region", region_lines=2).read(answer + "\n", "completion", example())
    assert (got.text, got.method) == (None, reason)


def block(original: list[str], updated: list[str]) -> str:
    return "\n".join([ORIGINAL, *original, DIVIDER, *updated, UPDATED]) + "\n"


def test_blocks_write_only_the_changed_lines():
    completion = fmt("blocks").completion(example())
    assert completion == block(["x6 = 6"], ["y6 = 6"]) + "\n"


def test_blocks_add_context_until_the_original_is_unique():
    current = "a\n\nb\n\nc\n"
    answer = strip_template_newline(fmt("blocks").completion(example("a\n\nb\n\nC\n", current, "a\n\nb\nc\n")))
    assert answer == block(["b", "", "c"], ["b", "c"])


@pytest.mark.parametrize(("answer", "reason"), [
    (block(["x99 = 99"], ["y"]), "block_not_found"),
    (block([], ["y"]), "block_empty"),
    (block(["x6 = 6", "x7 = 7"], ["a"]) + block(["x7 = 7"], ["b"]), "blocks_overlap"),
    ("x6 = 6 -> y6 = 6\n", "blocks_malformed"),
    (f"{ORIGINAL}\nx6 = 6\n{DIVIDER}\ny6 = 6\n", "blocks_malformed"),  # never closed
])
def test_blocks_that_do_not_apply_say_why(answer, reason):
    got = fmt("blocks").read(answer + "\n", "completion", example())
    assert (got.text, got.method) == (None, reason)


def test_a_block_found_in_two_places_is_refused():
    ex = example("a\nb\na\nc\n", "a\nb\na\nC\n", "A\nb\na\nC\n")
    got = fmt("blocks").read(block(["a"], ["A"]) + "\n", "completion", ex)
    assert (got.text, got.method) == (None, "block_ambiguous")
    assert fmt("blocks").read(block(["a", "b"], ["A", "b"]) + "\n", "completion", ex).text == "A\nb\na\nC\n"


def test_an_empty_blocks_answer_means_no_change():
    ex = example()
    assert fmt("blocks").read("\n", "completion", ex).text == CURRENT_TEXT
    assert fmt("blocks").read("<next_version>\n</next_version>", "chat", ex).text == CURRENT_TEXT
    # the whole version: an empty answer is no next version
    assert PAPER.read("\n", "completion", ex).text is None


def test_direct_outputs_are_next_versions_in_every_format():
    for name in FORMATS:
        assert fmt(name).read("anything", "direct", example()).text == "anything"


def test_versions_prefer_the_examples_own_fields():
    ex = example(current="a\nb")  # the prompt's section gains a newline; the field does not
    assert Versions.of(ex).current == "a\nb"
    assert Versions.of({"prompt": ex["prompt"]}).current == "a\nb\n"


def test_an_unknown_format_names_the_param_with_a_did_you_mean():
    with pytest.raises(Exception) as e:
        section("process", {"format": {"answer": "block"}})
    assert "process.format.answer" in str(e.value) and "did you mean 'blocks'" in str(e.value)


def test_new_format_is_one_module_and_one_line(tmp_path, monkeypatch):
    """A format registered by one line in FORMATS is usable everywhere by name."""
    import sys

    (tmp_path / "upper_fmt.py").write_text(
        "from nep.core.formats.base import AnswerFormat, Applied\n"
        "class Upper(AnswerFormat):\n"
        "    name = 'upper'\n"
        "    chat_answer = 'Answer in upper case.'\n"
        "    chat_request = 'Answer.'\n"
        "    def answer(self, v, next_version):\n"
        "        return next_version.upper()\n"
        "    def apply(self, answer, v):\n"
        "        return Applied(answer.lower())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FORMATS, "upper", "upper_fmt:Upper")
    f = answer_format(section("process", {"format": {"answer": "upper"}}).format)
    ex = example(original="a\nb\n", current="A\nb\n", next_version="a\nb\n")
    assert f.completion(ex) == "A\nB\n\n" and f.read("A\nB\n\n", "completion", ex).text == "a\nb\n"
    sys.modules.pop("upper_fmt", None)


# ------------------------------------------------------------------ constrained decoding (blocks' grammar)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_grammar_allows_every_prefix_of_every_training_answer(case):
    _, original, current, next_version = case
    ex = example(original, current, next_version)
    completion = fmt("blocks").completion(ex)
    grammar = fmt("blocks").grammar(Versions.of(ex))
    assert all(grammar.allows(completion[:n]) for n in range(len(completion) + 1))
    assert grammar.may_end(completion)
    inside = [n for n in range(len(completion)) if completion[:n].count(ORIGINAL) > completion[:n].count(UPDATED)]
    assert inside and not any(grammar.may_end(completion[:n]) for n in inside)  # no end inside a block


@pytest.mark.parametrize(("prefix", "allowed"), [
    ("", True),
    (f"{ORIGINAL}\nx6 = ", True),  # continues a line of the current version
    (f"{ORIGINAL}\nx6 = 7", False),  # no such line
    (f"{ORIGINAL}\nx6 = 6\nx8", False),  # not the next line
    (f"{ORIGINAL}\nx6 = 6\n{DIVIDER}\n", True),
    (f"{ORIGINAL}\nx6 = 6\n{DIVIDER}\nanything at all", True),  # the updated lines are free
    (block(["x6 = 6"], ["x6 = 6"]), True),  # a block that changes nothing still applies
    (block(["x6 = 6"], ["y6 = 6"]) + f"{ORIGINAL}\nx6 = 6\n{DIVIDER[:3]}", False),  # overlaps the first block
    (block(["x6 = 6"], ["y6 = 6"]) + f"{ORIGINAL}\nx8 = 8\n{DIVIDER}\n", True),
    ("y6 = 6\n", False),  # outside a block: only the ORIGINAL marker or an empty line
    (" \n", False),
    (block(["x6 = 6"], ["y6 = 6"]) + "\n", True),  # the empty line that ends the answer
    (block(["x6 = 6"], ["y6 = 6"]) + "\n\n", False),  # and then only the end
    (block(["x6 = 6"], ["y6 = 6"]) + f"\n{ORIGINAL[:2]}", False),
])
def test_the_grammar_refuses_answers_that_cannot_apply(prefix, allowed):
    assert fmt("blocks").grammar(Versions.of(example())).allows(prefix) is allowed


def test_the_divider_waits_until_the_original_block_is_unique():
    grammar = fmt("blocks").grammar(Versions.of(example("a\nb\na\nc\n", "a\nb\na\nC\n", "A\nb\na\nC\n")))
    assert not grammar.allows(f"{ORIGINAL}\na\n=")  # "a" occurs twice
    assert grammar.allows(f"{ORIGINAL}\na\nb\n=")
    assert not grammar.may_end(f"{ORIGINAL}\na\nb\n")  # no end inside a block
    assert grammar.may_end("\n") and grammar.may_end("")  # an empty answer: no change


def test_formats_without_a_grammar_say_so():
    assert fmt("whole").grammar(Versions.of(example())) is None
    assert fmt("region").grammar(Versions.of(example())) is None


def test_a_character_cut_between_tokens_fits_only_where_the_line_has_one():
    grammar = fmt("blocks").grammar(Versions.of(example("é = 1\na = 2\n", "é = 1\nA = 2\n", "é = 3\nA = 2\n")))
    assert grammar.allows(f"{ORIGINAL}\n\ufffd")  # the first bytes of é
    assert not grammar.allows(f"{ORIGINAL}\nA\ufffd")  # the line goes on with " ", ASCII
    assert grammar.allows(f"{ORIGINAL}\né = 1\n")
