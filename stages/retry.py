"""Stage retry: mark each predictor whose last generation tolerated failures, so that this
`dvc repro` runs its generate@P again and asks only them (nep.predictors.retry).

Run: `dvc repro` runs it every time (`always_changed`, a fraction of a second), before generate.
Reads `params.yaml: generate.predictors` (the names) and data/retry/*.json, which generate@P
writes; writes data/retry/P.json for each predictor: `"retry": true` added where failures remain,
`{"failed": []}` for a predictor that has none yet.
"""

from __future__ import annotations

from nep.config.params import load_section
from nep.predictors.retry import mark
from nep.util import paths


def main() -> None:
    marked = mark(paths.RETRY, load_section("generate").predictors)
    for name, n in marked.items():
        print(f"retry: generate@{name} asks its {n} tolerated failure(s) again")


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "retry")
