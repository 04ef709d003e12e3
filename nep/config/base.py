"""What every section of the params schema (nep/config/schema.py) shares: the error type, the
strict base model, and the bounds of seeds, worker processes and threads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nep.util.errors import NepError


class ParamsError(NepError, ValueError, SystemExit):
    """params.yaml does not fit the schema. One line per problem; uncaught, it exits with status 1
    and prints only the message (no traceback), since it is the user's input, not a bug."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message


class Section(BaseModel):
    # allow_inf_nan: YAML reads 1.0e400 as inf, which would train a NaN model
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit unsigned
MAX_WORKERS = 64  # worker processes of a data stage; each is a fork of the stage
MAX_THREADS = 256  # torch threads


def _seed(default: int) -> Any:
    return Field(default, ge=0, le=MAX_SEED)


def _workers() -> Any:
    return Field(0, ge=0, le=MAX_WORKERS)


def _threads() -> Any:
    return Field(0, ge=0, le=MAX_THREADS)


def _default(model: type[BaseModel]) -> Any:
    return Field(default_factory=model)
