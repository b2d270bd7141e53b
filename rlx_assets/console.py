"""The console of a run (`dagster asset materialize`, the scripts): short, and an error once.

Dagster's default console logger prints every DEBUG event and, for a failed step, the error with
the stack of Dagster's own frames; the same error again for the run. This logger prints INFO and
above plus the run's start and end, and for the project's own errors (raised as
`dagster.Failure`, see `rlx_assets.defs.errors`) one line: the message, once per run, then a
short line for each further step that failed the same way. Any other error (a bug) keeps its
full traceback. The event log in the instance (the UI) keeps everything.
"""

from __future__ import annotations

import logging
import sys

from dagster import DagsterEventType, Field, logger
from dagster._core.log_manager import LOG_RECORD_METADATA_ATTR

# Shown whatever the level: a user wants to know the run started and how it ended.
RUN_EVENTS = {
    DagsterEventType.RUN_START,
    DagsterEventType.RUN_SUCCESS,
    DagsterEventType.RUN_FAILURE,
}
NOT_EXECUTING = "Dependencies for step"
_FAILURES_SHOWN: dict[str, set[str]] = {}  # run id -> project errors already printed


class _RunConsole(logging.Filter):
    """Rewrites each record's message to its short form, or drops it (see the module doc)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, LOG_RECORD_METADATA_ATTR, None)
        if meta is None:
            return record.levelno >= self.level
        event = meta.get("dagster_event")
        # CRITICAL: silent but for critical records (the scripts print their own lines).
        forced = self.level < logging.CRITICAL and event is not None
        if record.levelno < self.level:
            if not (forced and event.event_type in RUN_EVENTS):
                return False
            record.levelno, record.levelname = logging.INFO, "INFO"  # Dagster logs them as DEBUG
        # The run's records and its steps' come through separate loggers: one memory per run.
        self.failures_shown = _FAILURES_SHOWN.setdefault(meta.get("run_id") or "", set())
        parts = [meta.get("step_key") or meta.get("job_name") or "dagster"]
        if event is not None:
            parts.append(event.event_type.name)
        parts.append(meta.get("orig_message", ""))
        message = " - ".join(part for part in parts if part)
        error = getattr(event.event_specific_data, "error", None) if event is not None else None
        if error is not None:
            if error.cls_name == "Failure":
                reason = _failure_reason(event, error)
                if reason in self.failures_shown or (
                    event.event_type == DagsterEventType.RUN_FAILURE and self.failures_shown
                ):
                    message += " (the error above)"
                else:
                    self.failures_shown.add(reason)
                    message = f"{message.rstrip('.')}: {reason}"
            else:
                message += f"\n\n{error.to_string()}"
        elif self.failures_shown and meta.get("orig_message", "").startswith(NOT_EXECUTING):
            return False  # the steps that could not run because of an error already shown
        record.msg, record.args = message, ()
        return True


def _failure_reason(event, error) -> str:
    """A `Failure`'s own description (the project's one-line message)."""
    failure = getattr(event.event_specific_data, "user_failure_data", None)
    if failure is not None and failure.description:
        return failure.description
    return error.message.split(": ", 1)[-1].strip()


@logger(
    Field(
        {"log_level": Field(str, is_required=False, default_value="INFO")},
        description="Console logger: INFO and above, project errors in one line.",
    ),
    description="Console logger: INFO and above, the run's start and end, project errors in one "
    "line (tracebacks for anything else).",
)
def run_console_logger(init_context) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    console = logging.Logger("rlx_assets.run", level=logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_RunConsole(level if isinstance(level, int) else logging.INFO))
    console.addHandler(handler)
    return console
