"""What the command-line scripts share: the project root as DAGSTER_HOME, dates, settings."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
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


def load_project(script: str):
    """Import `rlx_assets.cli` (the package loads the settings on import): an invalid setting is
    told in one line, exit status 2, as any other usage error."""
    from pydantic import ValidationError

    try:
        import rlx_assets.cli as cli
    except ValidationError as error:
        # rlx_assets could not load; the message is built without it.
        problems = [
            f"RLX_{'_'.join(str(p) for p in d.get('loc', ())).upper()}: {d.get('msg')}"
            for d in error.errors()
        ]
        print(f"{script}: invalid setting {'; '.join(problems)}", file=sys.stderr)
        raise SystemExit(2) from None
    return cli
