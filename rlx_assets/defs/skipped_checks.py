"""Checks an asset skips on purpose, said once and plainly.

A check result an asset does not yield is recorded as skipped (the UI shows it so). Dagster also
logs `op '...' did not yield or return expected outputs {...}` for it, which reads as an error;
for the checks skipped on purpose that line is replaced by the asset's own reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from dagster import AssetExecutionContext

OMITTED_OUTPUTS = "did not yield or return expected outputs"


class _SkippedOnPurpose(logging.Filter):
    def __init__(self, check_outputs: set[str]) -> None:
        super().__init__()
        self.check_outputs = check_outputs

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if OMITTED_OUTPUTS not in message:
            return True
        # Only when every output the line names is one of ours: anything else stays visible.
        named = message.split(OMITTED_OUTPUTS, 1)[1]
        return not all(f"'{name}'" in named for name in self.check_outputs) or (
            named.count("'") != 2 * len(self.check_outputs)
        )


def skip_checks(
    context: AssetExecutionContext, asset_name: str, check_names: Iterable[str], reason: str
) -> None:
    """Log why the checks are skipped (INFO), and keep Dagster's omitted-output line for them
    out of the step's log."""
    names = sorted(check_names)
    context.log.info(f"{asset_name}: checks {', '.join(names)} skipped: {reason}")
    context.log.addFilter(_SkippedOnPurpose({f"{asset_name}_{name}" for name in names}))
