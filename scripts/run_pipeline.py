"""Materialize every asset for a range of days, in day order, recorded in the local instance.

    poetry run python scripts/run_pipeline.py --start-date 2024-08-01 --end-date 2024-08-02
    poetry run python scripts/run_pipeline.py --start-date 2024-08-08 --end-date 2024-08-09 \
        --symbols BTC-USDT ETH-USDT

Settings come from RLX_ variables and .env (the lake, storage, thresholds). Runs appear in the
Dagster UI (`poetry run dagster dev`) because they use the project's instance (DAGSTER_HOME).
Exit status: 0 when every partition succeeded, 1 at the first failed partition (one-line reason).
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import days, iso_date, use_project_instance


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=iso_date, required=True)
    parser.add_argument("--end-date", type=iso_date, required=True)
    parser.add_argument("--symbols", nargs="+", help="default: RLX_SYMBOLS")
    arguments = parser.parse_args(argv)
    if arguments.end_date < arguments.start_date:
        parser.error("--end-date is before --start-date")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    use_project_instance()

    # Imported after the arguments are read: `--help` and bad dates answer at once.
    from dagster import DagsterInstance
    from tqdm import tqdm

    from rlx_assets.pipeline import failed_checks, failure_reason, run_partition
    from rlx_assets.settings import get_settings

    settings = get_settings()
    symbols = [s.upper() for s in arguments.symbols] if arguments.symbols else settings.symbols
    settings = settings.model_copy(
        update={"symbols": symbols, "start_date": min(settings.start_date, arguments.start_date)}
    )
    instance = DagsterInstance.get()
    keys = [
        (day, symbol)
        for day in days(arguments.start_date, arguments.end_date)
        for symbol in symbols
    ]
    started = time.monotonic()
    warnings = []
    with tqdm(keys, unit="partition", file=sys.stderr) as progress:
        for day, symbol in progress:
            progress.set_postfix_str(f"{day}|{symbol}")
            result = run_partition(settings, instance, day, symbol)
            if not result.success:
                progress.close()
                print(
                    f"run_pipeline: {day}|{symbol} failed: {failure_reason(result)}"
                    f" (run {result.run_id}; details in the Dagster UI)",
                    file=sys.stderr,
                )
                return 1
            warnings += [f"{day}|{symbol}: {line}" for line in failed_checks(result)]
    for line in warnings:
        print(f"run_pipeline: check failed: {line}", file=sys.stderr)
    print(
        f"run_pipeline: {len(keys)} partition(s) materialized in {time.monotonic() - started:.1f} s"
        f" into {settings.storage_url}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
