#!/usr/bin/env python3
"""Backfill a date range x symbols through the Dagster webserver and report progress until done.

    poetry run dagster dev                      # or the shared deployment's webserver + daemon
    poetry run python scripts/backfill.py --start-date 2024-08-01 --end-date 2024-08-03 \
        --symbols BTC-USDT ETH-USDT [--url http://127.0.0.1:3000]

It launches an asset backfill of every partitioned asset (as the UI does) with the GraphQL API,
then prints a line whenever the runs' states change. The runs execute where the instance says
(the queue of dagster.yaml: one run per symbol at a time; in-process or on celery workers). The
webserver's daemon must be running (`dagster dev` starts one). Exit status: 0 when every run
succeeded, 1 otherwise (one-line reason).
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import days, iso_date

from rlx_assets.distributed.backfill import (
    BackfillClient,
    BackfillError,
    BackfillProgress,
    backfill_partitions,
    follow,
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=iso_date, required=True)
    parser.add_argument("--end-date", type=iso_date, required=True)
    parser.add_argument("--symbols", nargs="+", help="default: every symbol of the webserver")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    parser.add_argument("--timeout", type=float, default=None, help="give up after seconds")
    arguments = parser.parse_args(argv)
    if arguments.end_date < arguments.start_date:
        parser.error("--end-date is before --start-date")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    client = BackfillClient(arguments.url)
    started = time.monotonic()
    try:
        assets, dimensions = client.partitioned_assets()
        symbols = arguments.symbols or dimensions.get("symbol", [])
        dates = days(arguments.start_date, arguments.end_date)
        partitions = backfill_partitions(dates, symbols, dimensions)
        title = f"{arguments.start_date}..{arguments.end_date} x {','.join(symbols)}"
        backfill_id = client.launch(dates, symbols, assets, title)
        print(f"backfill {backfill_id}: {len(partitions)} partitions x {len(assets)} assets")

        def report(progress: BackfillProgress) -> None:
            print(f"[{time.monotonic() - started:6.1f} s] {progress.summary()}", flush=True)

        progress = follow(client, backfill_id, report, arguments.poll, arguments.timeout)
    except BackfillError as error:
        print(f"backfill: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for run in progress.runs:
        print(f"  {run.partition:<22} {run.status:<8} {run.run_id}  {len(run.assets)} assets")
    print(f"{progress.summary()} in {time.monotonic() - started:.1f} s")
    return 0 if progress.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
