"""Compile the engine's numba kernels once, into numba's cache beside their sources.

A kernel is compiled the first time a process calls it (about a minute for a whole partition's
kernels on a 2-core machine) and cached on disk; a process started later loads it in
milliseconds. Processes started at the same moment on a fresh checkout (the tests' workers and
the servers and runs they start) would each compile the same kernels. This runs every asset of
one tiny synthetic day in a temporary folder first (no settings, files or instance of the
project are touched), so that they all find the cache. `.ci/run` and the GitHub workflow call
it before the tests.

    poetry run python scripts/warm_kernels.py
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance

from rlx_assets.pipeline import run_partition
from rlx_assets.settings import RlxSettings

DAY = dt.date(2024, 8, 1)
SYMBOL = "BTC-USDT"
SCALE = 0.0005  # a few thousand rows a table: every kernel runs, none for long


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rlx-warm-kernels-") as folder:
        root = Path(folder)
        settings = RlxSettings(
            _env_file=None,
            lake_url="synthetic://",
            symbols=[SYMBOL],
            start_date=DAY,
            storage_url=str(root / "assets"),
            golden_dir=str(root / "golden"),
            metrics_dir=str(root / "metrics"),
            lake_cache_dir=str(root / "lake-cache"),
            synthetic_scale=SCALE,
        )
        with DagsterInstance.ephemeral() as instance:
            result = run_partition(settings, instance, DAY, SYMBOL)
    seconds = time.monotonic() - started
    if not result.success:
        print(f"warm_kernels: the warm-up run failed after {seconds:.1f} s", file=sys.stderr)
        return 1
    print(f"warm_kernels: numba's cache filled by one tiny synthetic day in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
