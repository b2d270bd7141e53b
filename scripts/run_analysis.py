"""Per day and table: origin_time completeness, delta availability, and the strategy each day gets.

    poetry run python scripts/run_analysis.py --start-date 2024-08-08 --end-date 2024-08-09
    poetry run python scripts/run_analysis.py --start-date 2024-08-01 --end-date 2024-08-31 \
        --csv analysis.csv

Reads the lake of RLX_LAKE_URL directly (nothing is materialized). origin_* columns are shares of
the rows filed under that day's dt folder: null, zero, non-monotonic (earlier than a previous row in
file order), out of the day, and any of these (invalid).
"""

from __future__ import annotations

import argparse
import csv
import sys

from _common import days, iso_date


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=iso_date, required=True)
    parser.add_argument("--end-date", type=iso_date, required=True)
    parser.add_argument("--symbols", nargs="+", help="default: RLX_SYMBOLS")
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    arguments = parser.parse_args(argv)
    if arguments.end_date < arguments.start_date:
        parser.error("--end-date is before --start-date")

    from rlx_assets.analysis import analyse_day, report_rows
    from rlx_assets.lake.open import open_lake
    from rlx_assets.settings import get_settings

    settings = get_settings()
    symbols = [s.upper() for s in arguments.symbols] if arguments.symbols else settings.symbols
    lake = open_lake(settings)
    rows = []
    try:
        for day in days(arguments.start_date, arguments.end_date):
            for symbol in symbols:
                rows += report_rows(analyse_day(lake, settings.exchange, symbol, day))
    except (OSError, ValueError) as error:
        print(f"run_analysis: {error}", file=sys.stderr)
        return 1
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    if arguments.csv:
        with open(arguments.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
