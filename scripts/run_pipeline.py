#!/usr/bin/env python3
"""Materialize every asset for a range of days, in day order, recorded in the local instance.

    poetry run python scripts/run_pipeline.py --start-date 2024-08-01 --end-date 2024-08-02
    RLX_SYMBOLS=BTC-USDT,ETH-USDT poetry run python scripts/run_pipeline.py \
        --start-date 2024-08-08 --end-date 2024-08-09 --symbols ETH-USDT

Settings come from RLX_ variables and .env (the lake, storage, thresholds). Runs appear in the
Dagster UI (`poetry run dagster dev`) because they use the project's instance (DAGSTER_HOME).
Only partitions are accepted: dates from RLX_START_DATE to yesterday (UTC), symbols of
RLX_SYMBOLS. The console stays quiet (the instance's event log, shown in the UI, keeps every
event); at the end a table gives each partition's events, checks passed and failed, seconds and peak
RSS,
then one line per failed check. Exit status: 0 when every partition succeeded and no ERROR check
failed, 1 at the first failed partition (one-line reason, "interrupted" for a Ctrl-C during its
run) or when an ERROR check failed, 2 for a usage error (a key that is not a partition, an
invalid setting), 130 for a Ctrl-C between two partitions' runs. --verbose logs INFO, shows
tracebacks and, after each partition, `partition <date>|<SYMBOL>: <s> s, peak RSS <GiB> GiB
(<how>)`. On Linux the peak is that partition's own (VmHWM, reset before it through
/proc/self/clear_refs); elsewhere it is the process's peak so far (ru_maxrss), and says so.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

from _common import days, iso_date, use_project_instance


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start-date", type=iso_date, required=True)
    parser.add_argument("--end-date", type=iso_date, required=True)
    parser.add_argument("--symbols", nargs="+", help="default: RLX_SYMBOLS")
    parser.add_argument(
        "--verbose", action="store_true", help="log INFO, show tracebacks and per-partition memory"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    arguments = parser.parse_args(argv)
    if arguments.end_date < arguments.start_date:
        parser.error("--end-date is before --start-date")
    return arguments


GIB = 1024**3


class PeakMemory:
    """The peak RSS of this process over one partition.

    Linux resets the high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs; where
    that is not possible the only figure is ru_maxrss, the peak since the process started.
    """

    def __init__(self) -> None:
        self.per_partition = self._reset()

    def start(self) -> None:
        if self.per_partition:
            self._reset()

    def peak_bytes(self) -> int:
        if self.per_partition:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        # ru_maxrss: kilobytes on Linux, bytes on macOS.
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024

    @property
    def how(self) -> str:
        return "VmHWM" if self.per_partition else "ru_maxrss, peak since start"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        except OSError:
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    use_project_instance()
    import rlx_assets.cli as cli  # imports no settings: an invalid one is a UserError later

    if not arguments.verbose:
        cli.quiet_warnings()
    try:
        return _run(arguments)
    except cli.UserError as error:
        if arguments.verbose:
            raise
        print(f"run_pipeline: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Dagster turns a Ctrl-C during a run into that run's end (its running steps finish,
        # reported as the partition's failure); this is one that landed between two runs.
        if arguments.verbose:
            raise
        print(
            "run_pipeline: interrupted between two partitions; the partitions finished so far"
            " are kept (see the Dagster UI)",
            file=sys.stderr,
        )
        return 130


def _run(arguments: argparse.Namespace) -> int:
    # Imported after the arguments are read: `--help` and bad dates answer at once.
    from dagster import AssetCheckSeverity, DagsterInstance
    from tqdm import tqdm

    from rlx_assets.cli import PartitionSummary, check_partition_range, load_settings, summary_table

    settings = load_settings()  # an invalid setting: one line, not a traceback
    from rlx_assets.pipeline import failure_reason, run_partition

    symbols = [s.upper() for s in arguments.symbols] if arguments.symbols else settings.symbols
    # Only keys the UI shows as partitions: a run of another day or symbol would write files
    # and record runs that no partition view ever lists.
    check_partition_range(
        arguments.start_date, arguments.end_date, symbols, settings.start_date, settings.symbols
    )
    instance = DagsterInstance.get()
    keys = [
        (day, symbol)
        for day in days(arguments.start_date, arguments.end_date)
        for symbol in symbols
    ]
    started = time.monotonic()
    failed_lines: list[str] = []
    summaries: list[PartitionSummary] = []
    errors_failed = False
    memory = PeakMemory()
    console_level = "INFO" if arguments.verbose else "CRITICAL"
    with tqdm(keys, unit="partition", file=sys.stderr, disable=arguments.no_progress) as progress:
        for day, symbol in progress:
            progress.set_postfix_str(f"{day}|{symbol}")
            memory.start()
            partition_started = time.monotonic()
            result = run_partition(settings, instance, day, symbol, console_level)
            evaluations = result.get_asset_check_evaluations()
            failed = [e for e in evaluations if not e.passed]
            summaries.append(
                PartitionSummary(
                    partition=f"{day}|{symbol}",
                    rows=_event_rows(result),
                    checks_passed=len(evaluations) - len(failed),
                    checks_failed=len(failed),
                    seconds=time.monotonic() - partition_started,
                    peak_gib=memory.peak_bytes() / GIB,
                    status="ok" if result.success else "FAILED",
                )
            )
            if arguments.verbose:
                tqdm.write(
                    f"partition {day}|{symbol}: {summaries[-1].seconds:.1f} s,"
                    f" peak RSS {memory.peak_bytes() / GIB:.3f} GiB ({memory.how})",
                    file=sys.stderr,
                )
            for evaluation in failed:
                severity = "ERROR" if evaluation.severity == AssetCheckSeverity.ERROR else "WARN"
                errors_failed |= severity == "ERROR"
                failed_lines.append(
                    f"run_pipeline: check failed: {day}|{symbol} "
                    f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name} ({severity})"
                    f"{_observed(evaluation.metadata)}"
                )
            if not result.success:
                progress.close()
                print(summary_table(summaries))
                print(
                    f"run_pipeline: {day}|{symbol} failed: {failure_reason(result)}"
                    f" (run {result.run_id}; details in the Dagster UI)",
                    file=sys.stderr,
                )
                return 1
    print(summary_table(summaries))
    for line in failed_lines:
        print(line, file=sys.stderr)
    print(
        f"run_pipeline: {len(keys)} partition(s) materialized in {time.monotonic() - started:.1f} s"
        f" into {settings.storage_url}"
    )
    return 1 if errors_failed else 0


def _event_rows(result) -> int | None:
    """unified_events' row count in this run, if it was materialized."""
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key.to_user_string() == "unified_events":
            value = materialization.metadata.get("dagster/row_count")
            return None if value is None else int(value.value)
    return None


def _observed(metadata) -> str:
    """`: <figure> = <value>, threshold <t>` from a check's metadata, when it has both."""
    threshold = next((k for k in metadata if k.startswith("threshold")), None)
    figure = next((k for k in metadata if not k.startswith("threshold") and k != "alpha"), None)
    if threshold is None or figure is None:
        return ""
    return f": {figure} = {metadata[figure].value}, {threshold} {metadata[threshold].value}"


if __name__ == "__main__":
    sys.exit(main())
