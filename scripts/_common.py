"""What the command-line scripts share: the project root as DAGSTER_HOME, dates."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_project_instance() -> None:
    """Runs go to the project's own Dagster instance (dagster.yaml at the root) unless told."""
    os.environ.setdefault("DAGSTER_HOME", str(ROOT))


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2024-08-08") from None


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]
