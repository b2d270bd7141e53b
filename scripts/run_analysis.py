#!/usr/bin/env python3
"""Per day and table: origin_time completeness, delta availability, and the strategy each day gets.

    poetry run python scripts/run_analysis.py --start-date 2024-08-08 --end-date 2024-08-09
    poetry run python scripts/run_analysis.py --start-date 2024-08-01 --end-date 2024-08-31 \
        --csv analysis.csv
    poetry run python scripts/run_analysis.py --start-date 2024-08-08 --end-date 2024-08-09 \
        --format json

--format table (default) prints one block per day and symbol, within 100 columns; csv and json
print every column of every row to stdout.

Reads the lake of RLX_LAKE_URL directly (nothing is materialized). origin_* columns are shares of
the rows filed under that day's dt folder: null, zero, non-monotonic (earlier than a previous row in
file order), out of the day, and any of these (invalid).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from _common import days, iso_date


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=iso_date, required=True)
    parser.add_argument("--end-date", type=iso_date, required=True)
    parser.add_argument("--symbols", nargs="+", help="default: RLX_SYMBOLS")
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--verbose", action="store_true", help="tracebacks on errors")
    arguments = parser.parse_args(argv)
    if arguments.end_date < arguments.start_date:
        parser.error("--end-date is before --start-date")

    import rlx_assets.cli as cli  # imports no settings: an invalid one is a UserError later
    from rlx_assets.analysis import analyse_day, report_rows
    from rlx_assets.lake.open import open_lake

    if not arguments.verbose:
        cli.quiet_warnings()
    rows = []
    try:
        settings = cli.load_settings()
        symbols = [s.upper() for s in arguments.symbols] if arguments.symbols else settings.symbols
        lake = open_lake(settings)
        for day in days(arguments.start_date, arguments.end_date):
            for symbol in symbols:
                rows += report_rows(analyse_day(lake, settings.exchange, symbol, day))
    except (OSError, ValueError, cli.UserError) as error:
        if arguments.verbose:
            raise
        print(f"run_analysis: {error}", file=sys.stderr)
        return 1
    columns = list(rows[0])
    if arguments.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
    elif arguments.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(_table(rows))
    if arguments.csv:
        with open(arguments.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return 0


# The table's columns: (row key, heading); shares shown in percent.
TABLE_COLUMNS = [
    ("table", "table"),
    ("files", "files"),
    ("rows_filed", "rows filed"),
    ("rows_in_day", "rows in day"),
    ("origin_null_share", "null %"),
    ("origin_zero_share", "zero %"),
    ("origin_non_monotonic_share", "back %"),
    ("origin_out_of_day_share", "other day %"),
    ("origin_invalid_share", "invalid %"),
]


def _table(rows: list[dict]) -> str:
    """A block per day and symbol (its strategy and delta messages), a line per table."""
    lines = []
    for index in range(0, len(rows), 3):
        block = rows[index : index + 3]
        first, deltas = block[0], block[-1]
        lines.append(
            f"{first['date']} {first['symbol']}: strategy {first['strategy']}, "
            f"{deltas['delta_messages'] or 0} delta messages"
        )
        cells = [
            [
                f"{row[key] * 100:.3f}" if key.endswith("_share") else str(row[key])
                for key, _ in TABLE_COLUMNS
            ]
            for row in block
        ]
        headings = [heading for _, heading in TABLE_COLUMNS]
        widths = [max(len(line[i]) for line in [headings, *cells]) for i in range(len(headings))]
        for line in [headings, *cells]:
            lines.append(
                "  "
                + "  ".join(
                    cell.ljust(width) if i == 0 else cell.rjust(width)
                    for i, (cell, width) in enumerate(zip(line, widths, strict=True))
                )
            )
        lines.append("")
    return "\n".join(lines).rstrip()


if __name__ == "__main__":
    sys.exit(main())
