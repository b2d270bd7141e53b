"""Materialize every asset for a range of days, in day order, recorded in the local instance.

    poetry run python scripts/run_pipeline.py --start-date 2024-08-01 --end-date 2024-08-02
    poetry run python scripts/run_pipeline.py --start-date 2024-08-08 --end-date 2024-08-09 \
        --symbols BTC-USDT ETH-USDT

Settings come from RLX_ variables and .env (the lake, storage, thresholds). Runs appear in the
Dagster UI (`poetry run dagster dev`) because they use the project's instance (DAGSTER_HOME).
Exit status: 0 when every partition succeeded, 1 at the first failed partition (one-line reason).

After each partition one line goes to stderr: `partition <date>|<SYMBOL>: <s> s, peak RSS <GiB>
GiB (<how>)`. On Linux the peak is that partition's own (VmHWM, reset before it through
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
    memory = PeakMemory()
    with tqdm(keys, unit="partition", file=sys.stderr) as progress:
        for day, symbol in progress:
            progress.set_postfix_str(f"{day}|{symbol}")
            memory.start()
            partition_started = time.monotonic()
            result = run_partition(settings, instance, day, symbol)
            if not result.success:
                progress.close()
                print(
                    f"run_pipeline: {day}|{symbol} failed: {failure_reason(result)}"
                    f" (run {result.run_id}; details in the Dagster UI)",
                    file=sys.stderr,
                )
                return 1
            tqdm.write(
                f"partition {day}|{symbol}: {time.monotonic() - partition_started:.1f} s,"
                f" peak RSS {memory.peak_bytes() / GIB:.3f} GiB ({memory.how})",
                file=sys.stderr,
            )
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
