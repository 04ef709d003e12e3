"""The predictor kinds, their registry, and the check of a `generate.predictors` entry.

The interface is nep.predictors.base. Kinds (`generate.predictors.<name>.kind`;
options are the dataclass fields of each class):

- ``identity``: the current version unchanged (a floor).
- ``propagate``: repeats the most recent edit at the next place it applies (nep.predictors.propagate).
- ``lookup``: the training split's most frequent one-line replacement of a line it holds
  (nep.predictors.lookup).
- ``finetuned`` / ``hf``: transformers, greedy, `batch_size` prompts of similar length at a time
  (nep.predictors.hf).
- ``vllm``: the offline vLLM engine, every remaining prompt at once (nep.predictors.vllm).
- ``openai``: an OpenAI-compatible endpoint, `concurrency` requests in flight (nep.predictors.openai).
- ``file``: generations made elsewhere, read from a JSONL file and matched to the test set
  (nep.predictors.file).
- ``hybrid``: `propagate` where one of its rules applies, a model's generations (a file) everywhere
  else (nep.predictors.hybrid).

Classes load lazily through nep.util.registry: importing this module, or checking an entry with
`check_predictor`, imports no heavy library.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from nep.util.registry import Registry

KINDS: dict[str, str] = {
    "finetuned": "nep.predictors.hf:FinetunedPredictor",
    "hf": "nep.predictors.hf:HFPredictor",
    "vllm": "nep.predictors.vllm:VLLMPredictor",
    "openai": "nep.predictors.openai:OpenAIPredictor",
    "file": "nep.predictors.file:FilePredictor",
    "identity": "nep.predictors.baselines:IdentityPredictor",
    "propagate": "nep.predictors.baselines:PropagatePredictor",
    "lookup": "nep.predictors.lookup:LookupPredictor",
    "hybrid": "nep.predictors.hybrid:HybridPredictor",
}
# Keys of a predictor's params entry that are not options of its class.
RESERVED_KEYS = ("kind", "needs")
# Options every kind takes (the base class's policy), with their types.
# `format`: this predictor's own answer format, a `process.format` section (nep.config.schema.Format) that
# replaces the run's for it alone (the fair base model asked for the whole next version while the
# fine-tuned model answers in edit blocks).
COMMON_OPTIONS: dict[str, Any] = {"max_failure_rate": float, "format": dict}


# ---------------------------------------------------------------------------------------------
# Registry and the check of a params entry


def registry(name: str = "<name>") -> Registry:
    return Registry(f"generate.predictors.{name}.kind", KINDS)


def _type_name(hint: Any) -> str:
    name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
    return name.replace("None", "null")


def check_predictor(name: str, entry: dict[str, Any]) -> None:
    """ValueError with one line naming `generate.predictors.<name>.<key>` when the params entry has
    no or an unknown kind (with a did-you-mean), no `needs` path (dvc.yaml's deps use it), an
    unknown option, a value of the wrong type, or a missing required option. Imports no heavy
    library."""
    _check(name, entry)
    if not entry.get("needs"):
        raise ValueError(f"generate.predictors.{name}.needs: missing (the one path this predictor depends on: "
                         "its model directory or file, else data/split/test.jsonl)")


def _check(name: str, entry: dict[str, Any]) -> None:
    from pydantic import TypeAdapter, ValidationError

    where = f"generate.predictors.{name}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with a `kind`, got {entry!r}")
    kinds = registry(name)
    if "kind" not in entry:
        raise ValueError(f"{where}.kind: missing (choose one of {', '.join(kinds.names())})")
    kinds.check(entry["kind"])
    cls = kinds.get(entry["kind"])
    known = {**cls.options(), **COMMON_OPTIONS}
    if "needs" in entry and not isinstance(entry["needs"], str):
        raise ValueError(f"{where}.needs: expected a path (str), got {entry['needs']!r}")
    options = {k: v for k, v in entry.items() if k not in RESERVED_KEYS}
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{where}.{key}: unknown option for kind {entry['kind']!r} (known: {allowed}){hint}")
        try:
            TypeAdapter(known[key]).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"{where}.{key}: expected {_type_name(known[key])}, got {value!r}") from None
        if not _finite(value):
            raise ValueError(f"{where}.{key}: {value!r} is not a finite number")
    rate = options.get("max_failure_rate", 0.0)
    if not 0 <= rate <= 1:
        raise ValueError(f"{where}.max_failure_rate: {rate!r} is out of range (allowed: 0 to 1)")
    if "format" in options:
        own_format(name, options["format"])
    problem = cls.check_options({k: v for k, v in options.items() if k not in COMMON_OPTIONS})
    if problem:
        raise ValueError(f"{where}.{problem[0]}: {problem[1]}")


def own_format(name: str, section: dict[str, Any]):
    """The answer format a predictor's `format` option names (nep.core.formats), or ValueError naming
    `generate.predictors.<name>.format.<key>`."""
    from pydantic import ValidationError

    from nep.config.schema import Format
    from nep.core.formats import answer_format

    where = f"generate.predictors.{name}.format"
    try:
        return answer_format(Format.model_validate(section))
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ").removeprefix(f"process.format.{key}: ")
        raise ValueError(f"{where}{'.' + key if key else ''}: {msg}") from None


def _finite(value: Any) -> bool:
    """False for an inf/nan float anywhere in a value (YAML reads 1e400 as inf)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def build_predictor(name: str, entry: dict[str, Any]):
    """The predictor `generate.predictors.<name>` describes (checked first, `needs` aside). Nothing
    is loaded until it predicts."""
    _check(name, entry)
    cls = registry(name).get(entry["kind"])
    skip = (*RESERVED_KEYS, *COMMON_OPTIONS)
    predictor = cls(**{k: v for k, v in entry.items() if k not in skip})
    predictor.name = name
    predictor.max_failure_rate = float(entry.get("max_failure_rate", 0.0))
    return predictor
