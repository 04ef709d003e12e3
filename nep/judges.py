"""Judges: is a predicted next version right? `rules` (offline, deterministic) or `openai` (an LLM).

Both give (judgment, reason) per generation record: judgment 1 (yes), 0 (no) or None (failed),
reason a short explanation. `rules` says yes iff the prediction equals the ground truth exactly,
ignoring whitespace, or as an equivalent syntax tree (Python's `ast`; tree-sitter for other
languages, comments and layout ignored). The LLM judge asks whether the predicted edit is a
reasonable next edit given the edit history, the current version and the true next edit.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from nep.edits import unified_diff
from nep.llm import (
    ChatRequest,
    backend_config,
    check_failure_metrics,
    get_backend,
    in_request_order,
    yes_no_verdict,
)
from nep.prompts import parse_prompt

# Reasons of the rules judge (also the keys of its metrics).
EXACT, WHITESPACE, SYNTAX_TREE, DIFFERENT, NOT_EXTRACTED = (
    "exact", "whitespace", "syntax_tree", "different", "not_extracted")

# language (lowercase, as in the records' `lang`) -> (grammar package, function returning the language).
GRAMMARS: dict[str, tuple[str, str]] = {
    "java": ("tree_sitter_java", "language"),
    "go": ("tree_sitter_go", "language"),
    "c": ("tree_sitter_c", "language"),
    "c++": ("tree_sitter_cpp", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
}
PACK_NAMES = {"c++": "cpp", "c#": "csharp", "objective-c": "objc", "shell": "bash"}
INDENT_SENSITIVE = {"python", "yaml", "haskell", "f#", "nim", "coffeescript"}


def normalize_whitespace(text: str, language: str) -> str:
    """Text with layout removed: runs of whitespace collapse, blank lines go. Indentation stays for
    indentation-sensitive languages (Python...)."""
    if language.lower() in INDENT_SENSITIVE:
        return "\n".join(
            line[: len(line) - len(line.lstrip())] + " ".join(line.split())
            for line in text.splitlines() if line.strip()
        )
    return " ".join(text.split())


@cache
def tree_sitter_parser(language: str) -> Any:
    """A tree-sitter Parser for `language`, or None when no grammar is installed.

    Tries the per-language grammar packages (tree-sitter-java, ...; offline wheels) first, then
    tree-sitter-language-pack (which may download a grammar on first use)."""
    import importlib

    import tree_sitter

    key = language.lower()
    if key in GRAMMARS:
        module, fn = GRAMMARS[key]
        try:
            return tree_sitter.Parser(tree_sitter.Language(getattr(importlib.import_module(module), fn)()))
        except (ImportError, AttributeError, ValueError):
            pass
    try:
        import tree_sitter_language_pack as pack

        name = PACK_NAMES.get(key, key)
        if not pack.has_language(name):
            return None
        lang = pack.get_language(name)
        return tree_sitter.Parser(lang if isinstance(lang, tree_sitter.Language) else tree_sitter.Language(lang))
    except Exception:  # no grammar offline, or an incompatible pack: no tree comparison
        return None


def syntax_tokens(text: str, parser: Any) -> list[tuple[str, ...]]:
    """Pre-order (type, [leaf text]) of the tree-sitter tree, without comments."""
    tree = parser.parse(text.encode())
    out: list[tuple[str, ...]] = []
    stack: list[Any] = [tree.root_node]
    while stack:
        node = stack.pop()
        if node is None:  # end of an inner node's children
            out.append((")",))
        elif "comment" in node.type:
            continue
        elif node.child_count == 0:
            out.append((node.type, node.text.decode(errors="replace") if node.text is not None else ""))
        else:
            out.append((node.type,))
            stack.append(None)
            stack.extend(reversed(node.children))
    return out


def same_syntax_tree(a: str, b: str, language: str) -> bool | None:
    """True/False when both parse as equal/different trees; None when no parser is available."""
    if language.lower() == "python":
        try:
            return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
        except (SyntaxError, ValueError, RecursionError):
            return False
    parser = tree_sitter_parser(language)
    if parser is None:
        return None
    return syntax_tokens(a, parser) == syntax_tokens(b, parser)


def rules_judgment(output: str, ground_truth: str, language: str, extracted: bool = True) -> tuple[int, str]:
    """(1, how it matched) or (0, why not) for one prediction."""
    if not extracted:
        return 0, NOT_EXTRACTED
    if output == ground_truth:
        return 1, EXACT
    if normalize_whitespace(output, language) == normalize_whitespace(ground_truth, language):
        return 1, WHITESPACE
    if same_syntax_tree(output, ground_truth, language):
        return 1, SYNTAX_TREE
    return 0, DIFFERENT


# --- the LLM judge ------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade tools that predict a programmer's next code edit. You see the edits the programmer has "
    "made so far, the current version of the file, the edit the programmer really made next, and the "
    "edit a tool predicted. Say yes when the predicted edit is a reasonable next edit: it makes the "
    "same change as the real one, or an equivalent one (other names for new local variables, another "
    "layout, an equally valid way to continue the earlier edits). Say no when it changes something "
    "else, leaves out the essential part of the real edit, breaks the code, or predicts no edit. "
    "Reply with one word: yes or no."
)


def judge_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages asking whether `record`'s prediction is a reasonable next edit."""
    sections = parse_prompt(record["prompt"])
    current, path = sections["current"], record.get("path", "") or "file"
    true_edit = unified_diff(current, record["ground_truth"], old_name=f"a/{path}", new_name=f"b/{path}")
    predicted = unified_diff(current, record["output"], old_name=f"a/{path}", new_name=f"b/{path}")
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": (
            f"Language: {record.get('language', '')}\n\n"
            f"Edits made so far (original → current version):\n{sections['diff'] or '(none)'}\n"
            f"Current version:\n{current}\n"
            f"The real next edit (current → next version):\n{true_edit or '(no change)'}\n"
            f"The predicted next edit (current → predicted version):\n{predicted or '(no change)'}\n"
            "Is the predicted edit a reasonable next edit? Answer yes or no."
        )},
    ]


def judge_with_llm(
    records: Iterable[dict[str, Any]],
    *,
    shortcut_exact: bool = True,
    max_failure_rate: float = 0.0,
    prices: dict[str, dict[str, float]] | None = None,
    metrics: dict[str, Any] | None = None,
    check: bool = True,
    **params: Any,
) -> Iterator[tuple[int | None, str, str | None]]:
    """(judgment, reason, raw answer) per generation record, in input order.

    Unextracted outputs are 0 without a request; with `shortcut_exact`, outputs equal to the ground
    truth (ignoring whitespace) are 1 without a request. `metrics` is filled with the accounting;
    with `check`, TooManyFailures is raised at the end when null judgments exceed `max_failure_rate`.
    """
    records = list(records)
    decided: dict[int, tuple[int, str]] = {}
    requests: list[ChatRequest] = []
    for i, r in enumerate(records):
        if not r.get("extracted", True):
            decided[i] = (0, NOT_EXTRACTED)
        elif shortcut_exact and normalize_whitespace(r["output"], r.get("language", "")) == normalize_whitespace(
                r["ground_truth"], r.get("language", "")):
            decided[i] = (1, EXACT)
        else:
            try:
                requests.append(ChatRequest(id=str(i), messages=judge_messages(r)))
            except ValueError as e:
                raise ValueError(f"generation record {r.get('id')}: its prompt is not a nep prompt ({e})") from e
    backend = get_backend("openai", **backend_config(params))
    answers = in_request_order(backend.complete_many(requests), requests)
    unparseable = 0
    for i in range(len(records)):
        if i in decided:
            yield (*decided[i], None)
            continue
        result = next(answers)
        verdict, reason = yes_no_verdict(result)
        unparseable += verdict is None and result.error is None
        yield verdict, reason, result.text  # text is None when the request failed
    accounting = {**backend.stats.metrics(prices), "llm.unparseable": unparseable, "llm.shortcuts": len(decided)}
    if metrics is not None:
        metrics.update(accounting)
    if check:
        check_failure_metrics(accounting, len(records), max_failure_rate, what="judgments")
