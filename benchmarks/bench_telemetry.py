"""Telemetry's cost on one partition: the whole graph with telemetry on and off, in turn.

    poetry run python benchmarks/bench_telemetry.py --scale 0.1 --repeat 3

One synthetic day (2024-08-08, BTC-USDT) is materialized in-process, every asset, as
`scripts/run_pipeline.py` does, `--repeat` times with telemetry on (OTLP-JSON lines; no
gateway, no webhook) and as many times with `RLX_TELEMETRY_ENABLED=false`, alternating, after
one untimed warm-up run. It reports:

- the median wall time of a partition either way and their difference (at small scales mostly
  the machine's noise: the partition takes seconds and telemetry milliseconds);
- telemetry's own time as it measures it (`TelemetryResource.seconds_spent`: figures to
  instruments, collection, encoding, the file append), from the run's log;
- the clock-skew histogram the raw assets count for `rlx.clock_skew` (the only figure computed
  for telemetry inside an asset), timed alone over the published raw tables;

and a PASS/FAIL line: telemetry's time plus the histogram's within 2% of the partition's wall
time. Figures go to `<work>/telemetry-scale-<scale>.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import DagsterInstance

from rlx_assets.engine.clock_skew import SkewHistogram
from rlx_assets.pipeline import run_partition
from rlx_assets.resources.io_manager import partition_path
from rlx_assets.settings import RlxSettings

DAY = dt.date(2024, 8, 8)
SYMBOL = "BTC-USDT"
RAW = ("raw_trades", "raw_book_snapshots", "raw_book_deltas")
SPENT = re.compile(r"telemetry: (\d+) lines in .*, ([0-9.]+) s spent")
LIMIT = 0.02


def settings(work: Path, scale: float, enabled: bool) -> RlxSettings:
    return RlxSettings(
        _env_file=None,
        lake_url="synthetic://",
        synthetic_scale=scale,
        storage_url=str(work / "storage"),
        metrics_dir=str(work / "metrics"),
        golden_dir=str(work / "golden"),
        start_date=dt.date(2024, 8, 1),
        telemetry_enabled=enabled,
    )


def one_run(work: Path, scale: float, enabled: bool) -> dict[str, Any]:
    instance = DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = run_partition(settings(work, scale, enabled), instance, DAY, SYMBOL)
    seconds = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"the partition failed (telemetry {'on' if enabled else 'off'})")
    spent = lines = None
    for entry in instance.all_logs(result.run_id):
        found = SPENT.search(entry.user_message or "")
        if found:
            lines, spent = int(found[1]), float(found[2])
    if enabled and spent is None:
        raise SystemExit("telemetry was on but its closing log line is missing")
    return {"enabled": enabled, "seconds": seconds, "telemetry_seconds": spent, "lines": lines}


def histogram_seconds(work: Path) -> dict[str, float]:
    """SkewHistogram.update over each published raw table's skews, as the raw asset feeds it
    (batches of valid received - origin, ns); reading the columns is not timed."""
    timings = {}
    for asset in RAW:
        path = partition_path(str(work / "storage"), asset, "BINANCE", SYMBOL, DAY)
        batches = []
        table = pq.ParquetFile(path)
        for batch in table.iter_batches(1 << 20, columns=["origin_time", "received_time"]):
            origin, received = (pc.fill_null(c, -1).to_numpy() for c in batch.columns)
            valid = (origin > 0) & (received > 0)
            batches.append(received[valid] - origin[valid])
        histogram = SkewHistogram()
        started = time.perf_counter()
        for skew in batches:
            histogram.update(skew)
        timings[asset] = time.perf_counter() - started
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="synthetic volume (1 = busy)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs each way")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rlx-bench-telemetry"))
    args = parser.parse_args(argv)
    work = args.work / f"scale-{args.scale:g}"
    shutil.rmtree(work, ignore_errors=True)

    print(f"scale {args.scale:g}: warm-up run (untimed)", flush=True)
    one_run(work, args.scale, enabled=True)
    runs = []
    for index in range(args.repeat):
        # Alternate which goes first, so a drift of the machine falls on both alike.
        for enabled in (True, False) if index % 2 == 0 else (False, True):
            run = one_run(work, args.scale, enabled)
            runs.append(run)
            print(
                f"  telemetry {'on ' if enabled else 'off'}: {run['seconds']:.2f} s"
                + (f" (telemetry {run['telemetry_seconds'] * 1e3:.1f} ms)" if enabled else ""),
                flush=True,
            )
    on = [r for r in runs if r["enabled"]]
    off = [r for r in runs if not r["enabled"]]
    wall_on = statistics.median(r["seconds"] for r in on)
    wall_off = statistics.median(r["seconds"] for r in off)
    spent = statistics.median(r["telemetry_seconds"] for r in on)
    histogram = histogram_seconds(work)
    cost = spent + sum(histogram.values())
    figures = {
        "scale": args.scale,
        "repeat": args.repeat,
        "wall_on_s": wall_on,
        "wall_off_s": wall_off,
        "wall_difference": (wall_on - wall_off) / wall_off,
        "telemetry_s": spent,
        "skew_histogram_s": histogram,
        "overhead_s": cost,
        "overhead_share": cost / wall_on,
        "runs": runs,
    }
    print(f"median partition: {wall_on:.2f} s with telemetry, {wall_off:.2f} s without")
    print(f"  difference {figures['wall_difference']:+.1%} (mostly the machine's noise)")
    print(f"telemetry's own time: {spent * 1e3:.1f} ms over {on[0]['lines']} lines")
    print(
        "clock-skew histogram in the raw assets: "
        + ", ".join(f"{asset} {s * 1e3:.1f} ms" for asset, s in histogram.items())
    )
    passed = figures["overhead_share"] <= LIMIT
    print(
        f"{'PASS' if passed else 'FAIL'}: telemetry costs {cost * 1e3:.1f} ms, "
        f"{figures['overhead_share']:.2%} of the partition's {wall_on:.2f} s (limit {LIMIT:.0%})"
    )
    out = args.work / f"telemetry-scale-{args.scale:g}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"figures: {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
