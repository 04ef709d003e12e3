"""Extraction of the next version from raw model outputs."""

from __future__ import annotations

import pytest

from nep.core.extract import extract_next_version, last_fenced_block, unwrap_fence
from nep.core.prompts import template_completion

CODE = "def area(w, h):\n    return w * h\n"


def chat(raw: str):
    return extract_next_version(raw, "chat")


def completion(raw: str):
    return extract_next_version(raw, "completion")


def test_closed_tag_with_text_around():
    r = chat(f"Sure, here it is.\n<next_version>\n{CODE}</next_version>\nHope that helps!")
    assert (r.text, r.method, r.ok) == (CODE, "closed_tag", True)


def test_closed_tag_inline_keeps_body_exactly():
    assert chat("<next_version>x = 1</next_version>").text == "x = 1"
    # only the one newline after the opening tag goes; inner blank lines stay
    assert chat("<next_version>\n\nx = 1\n\n</next_version>").text == "\nx = 1\n\n"


def test_last_closed_tag_wins_over_a_mention_while_reasoning():
    raw = f"I will put the file in <next_version>...</next_version>.\n<next_version>\n{CODE}</next_version>"
    assert chat(raw).text == CODE


def test_fence_inside_tag_is_unwrapped():
    raw = f"<next_version>\n```python\n{CODE}```\n</next_version>"
    assert chat(raw).text == CODE


def test_unclosed_tag_gives_everything_after_it():
    r = chat(f"<next_version>\n{CODE}")
    assert (r.text, r.method) == (CODE, "open_tag")


def test_empty_unclosed_tag_is_unextractable():
    r = chat("Here you go: <next_version>\n  ")
    assert (r.text, r.ok, r.method) == (None, False, "none")


def test_chat_without_tag_falls_back_to_the_last_fence():
    raw = f"Before:\n```python\nold = 1\n```\nAfter:\n```python\n{CODE}```\nDone."
    assert (chat(raw).text, chat(raw).method) == (CODE, "fence")


def test_chat_unclosed_fence_runs_to_the_end():
    assert chat(f"```go\n{CODE}").text == CODE


def test_chat_plain_text_is_unextractable():
    r = chat("I cannot tell what the next edit should be.")
    assert not r.ok and r.text is None


def test_longer_fence_keeps_inner_backticks():
    body = "Example:\n```\ncode\n```\n"
    assert last_fenced_block(f"````markdown\n{body}````\n") == body
    assert unwrap_fence(f"````\n{body}````") == body


def test_unwrap_fence_only_when_whole_text_is_one_block():
    text = "```\na\n```\ntrailing text\n"
    assert unwrap_fence(text) == text
    assert unwrap_fence("  \n```js\nlet a;\n```  \n") == "let a;\n"


@pytest.mark.parametrize("code", [CODE, CODE.rstrip("\n"), CODE + "\n", ""], ids=["eol", "no-eol", "blank-end", "empty"])
def test_completion_loses_exactly_the_template_newline(code):
    """A template-trained model writes the file, then the template's newline, then EOS."""
    r = completion(template_completion(code))
    assert (r.text, r.method) == (code, "completion") if code else not r.ok
    if code:
        assert completion(code + "\n<|original_code|>\nanother example\n").text == code  # cut at a marker


def test_completion_without_the_template_newline_is_kept():
    # cut at the token limit mid-line: nothing to remove
    assert completion("def area(w, h):\n    return w").text == "def area(w, h):\n    return w"
    assert completion(CODE + "\r\n").text == CODE + "\r"  # only "\n" is the template's


def test_completion_stops_at_the_next_marker():
    raw = CODE + "\n<|original_code|>\nsomething else\n"
    assert completion(raw).text == CODE


def test_completion_after_an_echoed_prompt():
    raw = "<|current_version|>\nold\n<|next_version|>\n" + CODE + "\n"
    r = completion(raw)
    assert (r.text, r.method) == (CODE, "marker")


def test_completion_in_one_fence_is_unwrapped():
    assert completion(f"```python\n{CODE}```\n\n").text == CODE


def test_completion_with_tags_uses_them():
    assert completion(f"<next_version>\n{CODE}</next_version>").text == CODE


def test_empty_completion_is_unextractable():
    assert not completion("").ok
    assert not completion("  \n").ok
    assert not completion("<|original_code|>\nx\n").ok


def test_direct_style_and_unknown_style():
    assert extract_next_version("", "direct").ok
    assert extract_next_version(CODE, "direct").text == CODE
    with pytest.raises(ValueError, match="unknown output style"):
        extract_next_version(CODE, "json")  # type: ignore[arg-type]
