"""Judges (`judge.backend`) and the judge stage's work (`judge_file`): is a predicted next version right?

`rules` (offline, deterministic) or `openai` (an LLM); both are nep.llm.verdicts backends giving each
generation record a Verdict: 1 (yes), 0 (no) or None (failed), with a reason. `rules` says yes iff the prediction equals the ground truth exactly,
ignoring whitespace, or as an equivalent syntax tree (Python's `ast`; tree-sitter for other
languages, comments and layout ignored). The LLM judge asks whether the predicted edit is a
reasonable next edit given the edit history, the current version and the true next edit.
"""

from __future__ import annotations

import ast
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from nep.core.edits import unified_diff
from nep.core.prompts import parse_prompt
from nep.llm.verdicts import LLMVerdicts, Report, Tally, Verdict, VerdictBackend, build
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, read_jsonl, write_jsonl
from nep.util.registry import Registry

JUDGES = Registry("judge.backend", {"rules": "nep.evaluate.judges:RulesJudge", "openai": "nep.evaluate.judges:LLMJudge"})
REQUIRED = ("id", "prompt", "output", "ground_truth")  # text fields every generation record needs

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


@dataclass
class RulesJudge(VerdictBackend):
    what: ClassVar[str] = "judgments"

    def decide(self, records: list[dict[str, Any]]) -> Iterator[Verdict]:
        for r in records:
            judgment, reason = rules_judgment(r["output"], r["ground_truth"], r.get("language", ""),
                                              r.get("extracted", True))
            yield Verdict(str(r["id"]), judgment, reason, reason)


@dataclass
class LLMJudge(LLMVerdicts):
    """The LLM judge. Unextracted outputs are 0 without a request; with `shortcut_exact`, outputs
    equal to the ground truth (ignoring whitespace) are 1 without a request."""

    shortcut_exact: bool = True
    what: ClassVar[str] = "judgments"

    def messages(self, record: dict[str, Any]) -> list[dict[str, str]]:
        return judge_messages(record)

    def shortcut(self, record: dict[str, Any]) -> tuple[int, str] | None:
        if not record.get("extracted", True):
            return 0, NOT_EXTRACTED
        language = record.get("language", "")
        if self.shortcut_exact and normalize_whitespace(record["output"], language) == normalize_whitespace(
                record["ground_truth"], language):
            return 1, EXACT
        return None


def judge_file(input_path: Path, output_path: Path, cfg: Any, desc: str = "judge") -> Report:
    """Judge the generation records of `input_path` with the judge `cfg.backend` (the `judge:` params); write one
    judgment per record, in input order (`id`, `judgment` 1/0/None, `reason`; `answer` for LLM
    judges). Records lacking a field are kept, judged None (`invalid_generation_record`); the others
    are joined to their verdicts by id. The caller writes metrics and timing, then `report.check()`."""
    from tqdm import tqdm

    from nep.util.console import bars

    start = time.perf_counter()
    drops: Counter = Counter()
    records = list(read_jsonl(input_path, drops))
    if not records:
        raise NepError(f"{input_path}: no generation records to judge")
    problems = [[k for k in REQUIRED if not isinstance(r.get(k), str)] for r in records]
    valid = [r for r, missing in zip(records, problems) if not missing]
    ids = Counter(r["id"] for r in valid)
    if duplicated := [i for i, n in ids.items() if n > 1]:
        raise NepError(f"{input_path}: duplicate generation ids {duplicated[:5]}")
    judge = build(JUDGES, cfg)
    verdicts = {v.id: v for v in tqdm(judge.verdicts(valid), total=len(valid), desc=desc, unit="rec", disable=bars())}
    tally = Tally()

    def judgment(record: dict[str, Any], missing: list[str]) -> dict[str, Any]:
        if missing:
            v = tally.add(Verdict(str(record.get("id")), None, "invalid generation record: "
                                  f"{', '.join(missing)} missing or not text", "invalid_generation_record"))
            return {"id": record.get("id"), "judgment": None, "reason": v.reason}
        v = tally.add(verdicts[record["id"]])
        out = {"id": record["id"], "judgment": v.value, "reason": v.reason}
        return {**out, "answer": v.answer} if judge.uses_llm else out

    n = write_jsonl(output_path, (judgment(r, m) for r, m in zip(records, problems)))
    metrics = {"backend": cfg.backend, "records": n, **tally.metrics(), **flat_counts("dropped", drops),
               **judge.metrics()}
    timing = {"wall_time_s": round(time.perf_counter() - start, 3), **judge.timing()}
    return Report(metrics, timing, judge)
