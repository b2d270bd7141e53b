"""What the command-line scripts share: user errors in one line, partition keys checked against
the partitions the UI knows, and the summary table of a run.

A user error (a date before RLX_START_DATE, a symbol not in RLX_SYMBOLS, a missing lake) is told
in one line naming what to change, with exit status 2 (usage) or 1 (a run failed); the traceback
only with --verbose.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass


class UserError(Exception):
    """An error the user can fix (the message says how); printed as one line."""


def quiet_warnings() -> None:
    """No library warnings on a user's console (deprecations and Dagster's beta/preview notes
    are for the developers, who see them with --verbose and in the tests)."""
    warnings.simplefilter("ignore")
    logging.captureWarnings(False)


def last_partition_day(start_date: dt.date) -> dt.date:
    """The last day the date dimension has (Dagster's daily partitions end with yesterday UTC)."""
    from rlx_assets.partitions import market_partitions

    dates = market_partitions(start_date, ["X"]).get_partitions_def_for_dimension("date")
    last = dates.get_last_partition_key()
    return dt.date.fromisoformat(last) if last else start_date - dt.timedelta(days=1)


def check_partition_range(
    start: dt.date,
    end: dt.date,
    symbols: Sequence[str],
    start_date: dt.date,
    configured_symbols: Sequence[str],
) -> None:
    """Raise `UserError` unless every `date|symbol` in the range is a partition of the graph."""
    last = last_partition_day(start_date)
    if start < start_date or end > last:
        outside = start if start < start_date else end
        raise UserError(
            f"{outside} is not a partition: dates run from {start_date} (RLX_START_DATE) to "
            f"{last} (yesterday, UTC); set RLX_START_DATE to start earlier"
        )
    unknown = [symbol for symbol in symbols if symbol not in configured_symbols]
    if unknown:
        raise UserError(
            f"symbol(s) {', '.join(unknown)} not in RLX_SYMBOLS ({','.join(configured_symbols)}); "
            f"add them to RLX_SYMBOLS to materialize them"
        )


@dataclass
class PartitionSummary:
    partition: str
    rows: int | None  # unified_events rows, None when the run did not reach it
    checks_passed: int
    checks_failed: int
    seconds: float
    status: str
    peak_gib: float | None = None  # the process's peak RSS over the partition


def summary_table(rows: Sequence[PartitionSummary]) -> str:
    """A plain text table, narrow enough for an 80-column terminal."""
    header = ("partition", "events", "checks ok", "failed", "seconds", "peak GiB", "status")
    body = [
        (
            row.partition,
            "-" if row.rows is None else f"{row.rows:,}",
            str(row.checks_passed),
            str(row.checks_failed),
            f"{row.seconds:.1f}",
            "-" if row.peak_gib is None else f"{row.peak_gib:.2f}",
            row.status,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for line in [header, *body]:
        cells = [
            cell.ljust(width) if i in (0, len(header) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def load_settings():
    """The settings, or `UserError` naming the setting that does not validate."""
    from pydantic import ValidationError

    from rlx_assets.settings import get_settings

    try:
        return get_settings()
    except ValidationError as error:
        raise UserError(invalid_settings(error)) from error


def invalid_settings(error) -> str:
    """A pydantic `ValidationError` of the settings, in one line naming the variables."""
    problems = []
    for detail in error.errors():
        name = "_".join(str(part) for part in detail.get("loc", ()) if part)
        setting = name.upper() if name.upper().startswith("AWS_") else f"RLX_{name.upper()}"
        problems.append(f"{setting}: {detail.get('msg', 'invalid')}")
    return "invalid setting " + "; ".join(problems)
