"""The project's own errors, told to the user once and short, with the setting to change.

An asset that meets one (an unreachable lake, refused credentials, a damaged vendor file, an
unreadable golden sample) raises `dagster.Failure` with the error's own one-line message. The
error stays attached as its cause (its class and message are what tests and the event log
identify it by) but without its frames: Dagster shows the message, not a chain of tracebacks
through the libraries that noticed the problem. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable

from dagster import Failure, MetadataValue

from rlx_assets.capture.encryption import GoldenKeyError
from rlx_assets.engine.golden import GoldenFormatError
from rlx_assets.lake.errors import LakeAccessError
from rlx_assets.schema import SourceSchemaError

PROJECT_ERRORS: tuple[type[Exception], ...] = (
    LakeAccessError,
    SourceSchemaError,
    GoldenFormatError,
    GoldenKeyError,
)
# A setting the message names (RLX_LAKE_URL, AWS_ACCESS_KEY_ID, ...): the thing to change.
SETTING = re.compile(r"\b(RLX_[A-Z0-9_]+|AWS_[A-Z_]+)\b")


def as_failure(error: Exception) -> Failure:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    metadata = {"error": MetadataValue.text(type(error).__name__)}
    settings = sorted(set(SETTING.findall(str(error))))
    if settings:
        metadata["settings"] = MetadataValue.text(", ".join(settings))
    return Failure(description=message, metadata=metadata, allow_retries=False)


def _without_frames(error: Exception) -> Exception:
    """The error alone: no traceback, no chain of the library exceptions behind it."""
    error.__cause__ = error.__context__ = None
    error.__suppress_context__ = True
    return error.with_traceback(None)


def user_errors(compute_fn: Callable) -> Callable:
    """Put it under `@observed` (or right under `@asset`): project errors become `Failure`s."""
    if inspect.isgeneratorfunction(compute_fn):

        @functools.wraps(compute_fn)
        def generator(*args, **kwargs):
            try:
                yield from compute_fn(*args, **kwargs)
            except PROJECT_ERRORS as error:
                raise as_failure(error) from _without_frames(error)

        return generator

    @functools.wraps(compute_fn)
    def function(*args, **kwargs):
        try:
            return compute_fn(*args, **kwargs)
        except PROJECT_ERRORS as error:
            raise as_failure(error) from _without_frames(error)

    return function
