"""The metrics of DESIGN section 5: names, units, instruments, and how one step's figures
become measurements.

Every figure is one the asset already computed (its materialization metadata, its check
results, the table it returned); nothing is read or computed again here. Each point carries
`exchange`, `symbol`, `date` and `asset`; per-step figures add `component` (the Dagster step),
per-table ones `table`, per-level ones `side` and `level`, per-hour ones `hour`.

The two histograms are built as points of the SDK's data model rather than recorded value by
value: the raw assets count the clock skew of every row into fixed buckets while they compute
its quantiles (`engine.quality.SkewHistogram`: tens of millions of rows a day), and the depth's
1,440 minutes a side are counted with numpy (the SDK's `record` costs ~0.1 ms a value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
)

from rlx_assets.schema import BOOK, BOOK_DELTAS, TRADES
from rlx_assets.telemetry.steps import OutputRecord, StepRecord

EVENTS_THROUGHPUT = "rlx.events.throughput"
MEMORY_PEAK = "rlx.memory.peak"
CHECKPOINT_COUNT = "rlx.checkpoint.count"
CHECKPOINT_RECOVERY_TIME = "rlx.checkpoint.recovery_time"
STREAMING_ACTIVATIONS = "rlx.streaming.activations"
GAPS_DETECTED = "rlx.gaps.detected"
GAPS_FILLED = "rlx.gaps.filled"
MID_DEVIATION_MAX = "rlx.book.mid_deviation.max"
CLOCK_SKEW = "rlx.clock_skew"
PRECISION_LOSS_WARNINGS = "rlx.precision_loss.warnings"
BOOK_DEPTH = "rlx.book.depth"
LEVEL_UPDATES = "rlx.book.level_updates"
TRADE_TO_BOOK_RATIO = "rlx.trade_to_book.ratio"
CHECK_RESULT = "rlx.check.result"
# Telemetry's own figures: exports that failed or were skipped, and its time per step.
PUSH_FAILURES = "rlx.telemetry.push_failures"
ALERT_FAILURES = "rlx.telemetry.alert_failures"
TELEMETRY_DURATION = "rlx.telemetry.duration"

DESIGN_METRICS = (
    EVENTS_THROUGHPUT,
    MEMORY_PEAK,
    CHECKPOINT_COUNT,
    CHECKPOINT_RECOVERY_TIME,
    STREAMING_ACTIVATIONS,
    GAPS_DETECTED,
    GAPS_FILLED,
    MID_DEVIATION_MAX,
    CLOCK_SKEW,
    PRECISION_LOSS_WARNINGS,
    BOOK_DEPTH,
    LEVEL_UPDATES,
    TRADE_TO_BOOK_RATIO,
    CHECK_RESULT,
)

RECONSTRUCTED_BOOK = "reconstructed_book"
UNIFIED_EVENTS = "unified_events"
MICROSTRUCTURE = "microstructure_metrics"
RAW_TABLES = {"raw_trades": TRADES, "raw_book_snapshots": BOOK, "raw_book_deltas": BOOK_DELTAS}

# The metadata entry microstructure_metrics lists its per-level update counts in.
LEVEL_ROWS = "update_frequency_by_level_rows"
SKEW_HISTOGRAM = "clock_skew_histogram_ms"

# rlx.book.depth buckets: the sum of a side's top-20 sizes in the base asset, 1-2-5 steps over
# twelve decades, so one set of buckets fits any instrument.
DEPTH_BOUNDS = tuple(m * 10.0**e for e in range(-3, 9) for m in (1, 2, 5))


class Instruments:
    """The step's instruments on one meter (a meter provider lives for one step)."""

    def __init__(self, meter: Meter) -> None:
        self.throughput = meter.create_gauge(
            EVENTS_THROUGHPUT, "{event}/s", "Rows an asset's step processed per second."
        )
        self.memory_peak = meter.create_gauge(
            MEMORY_PEAK, "By", "Peak resident memory of the process during the step."
        )
        self.checkpoints = meter.create_counter(
            CHECKPOINT_COUNT, "{checkpoint}", "Checkpoints the book replay wrote."
        )
        self.recovery_time = meter.create_gauge(
            CHECKPOINT_RECOVERY_TIME, "s", "Time to resume from a checkpoint (0: not resumed)."
        )
        self.streaming = meter.create_counter(
            STREAMING_ACTIVATIONS,
            "{activation}",
            "1 when the step ran out of core (several replay chunks, spilled runs), else 0.",
        )
        self.gaps_detected = meter.create_counter(
            GAPS_DETECTED, "{gap}", "Sequence gaps detected, per hour of the day."
        )
        self.gaps_filled = meter.create_counter(
            GAPS_FILLED, "{gap}", "Sequence gaps resynced from a vendor snapshot, per hour."
        )
        self.mid_deviation_max = meter.create_gauge(
            MID_DEVIATION_MAX, "bps", "Max rebuilt-vs-vendor mid deviation before resync."
        )
        self.precision_loss = meter.create_counter(
            PRECISION_LOSS_WARNINGS, "{warning}", "Values off the instrument grid (kept exact)."
        )
        self.level_updates = meter.create_counter(
            LEVEL_UPDATES, "{update}", "Changes of a book level between consecutive book rows."
        )
        self.trade_to_book = meter.create_gauge(
            TRADE_TO_BOOK_RATIO, "1", "Trades per book delta message."
        )
        self.check_result = meter.create_gauge(
            CHECK_RESULT, "1", "An asset check's result: 1 passed, 0 failed."
        )
        self.push_failures = meter.create_counter(
            PUSH_FAILURES, "{push}", "Pushgateway pushes that failed or were skipped."
        )
        self.alert_failures = meter.create_counter(
            ALERT_FAILURES, "{alert}", "Alerts the webhook did not accept in time."
        )
        self.telemetry_duration = meter.create_gauge(
            TELEMETRY_DURATION, "s", "Time telemetry spent on the step, pushes included."
        )


def _number(metadata: Mapping[str, object], key: str) -> float | None:
    value = metadata.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else value


def events_processed(output: OutputRecord) -> float | None:
    """The rows an asset's step went through: read from the lake (raw), delta messages
    replayed (book), events merged, book rows + deltas + trades measured (microstructure)."""
    metadata = output.metadata
    if output.asset in RAW_TABLES:
        return _number(metadata, "rows_read")
    if output.asset == RECONSTRUCTED_BOOK:
        return _number(metadata, "messages")
    if output.asset == UNIFIED_EVENTS:
        return _number(metadata, "dagster/row_count")
    if output.asset == MICROSTRUCTURE:
        parts = [_number(metadata, key) for key in ("messages", "delta_rows", "trades")]
        return None if None in parts else sum(parts)
    return None


def streaming_activated(output: OutputRecord) -> bool | None:
    """Did the step leave its in-memory path: replayed in several chunks (book), sorted
    out of core (events), merged several sorted runs (raw)?"""
    metadata = output.metadata
    if output.asset == RECONSTRUCTED_BOOK and "streaming" in metadata:
        return bool(metadata["streaming"])
    if output.asset == UNIFIED_EVENTS and "spilled" in metadata:
        return bool(metadata["spilled"])
    if output.asset in RAW_TABLES and _number(metadata, "sorted_runs") is not None:
        return metadata["sorted_runs"] > 1
    return None


def record_step(instruments: Instruments, step: StepRecord) -> None:
    """Every figure of the step into the instruments."""
    for output in step.outputs:
        _record_output(instruments, step, output)
    for check in step.checks:
        instruments.check_result.set(
            int(check.passed),
            step.attributes(check.asset, check=check.check, severity=check.severity),
        )


def _record_output(instruments: Instruments, step: StepRecord, output: OutputRecord) -> None:
    asset, metadata = output.asset, output.metadata
    per_step = step.attributes(asset, component=step.step)
    if step.peak_memory_bytes is not None:
        instruments.memory_peak.set(step.peak_memory_bytes, per_step)
    events = events_processed(output)
    if events is not None and step.seconds > 0:
        instruments.throughput.set(events / step.seconds, per_step)
    streaming = streaming_activated(output)
    if streaming is not None:
        instruments.streaming.add(int(streaming), per_step)

    if asset in RAW_TABLES:
        warnings = _number(metadata, "precision_loss_warnings")
        if warnings is not None:
            instruments.precision_loss.add(
                int(warnings), step.attributes(asset, table=RAW_TABLES[asset])
            )
    if asset == RECONSTRUCTED_BOOK:
        _record_book(instruments, step, output)
    if asset == MICROSTRUCTURE:
        _record_microstructure(instruments, step, output)


def _record_book(instruments: Instruments, step: StepRecord, output: OutputRecord) -> None:
    asset, metadata = output.asset, output.metadata
    attributes = step.attributes(asset)
    checkpoints = _number(metadata, "checkpoints_written")
    if checkpoints is not None:
        instruments.checkpoints.add(int(checkpoints), attributes)
    recovery = _number(metadata, "recovery_seconds")
    if recovery is not None:
        instruments.recovery_time.set(recovery, attributes)
    deviation = _number(metadata, "mid_deviation_max_bps")
    if deviation is not None:
        instruments.mid_deviation_max.set(deviation, attributes)
    for counter, name in (
        (instruments.gaps_detected, "gaps_detected"),
        (instruments.gaps_filled, "gaps_filled"),
    ):
        per_hour = metadata.get(f"{name}_per_hour")
        if isinstance(per_hour, list) and per_hour:
            for hour, count in enumerate(per_hour):
                counter.add(int(count), step.attributes(asset, hour=hour))
        elif (total := _number(metadata, name)) is not None:
            counter.add(int(total), attributes)


def _record_microstructure(
    instruments: Instruments, step: StepRecord, output: OutputRecord
) -> None:
    asset, metadata = output.asset, output.metadata
    ratio = _number(metadata, "trade_to_book_ratio")
    if ratio is not None:
        instruments.trade_to_book.set(ratio, step.attributes(asset))
    for row in metadata.get(LEVEL_ROWS) or []:
        if row.get("bucket") == "level":
            instruments.level_updates.add(
                int(row["changes"]),
                step.attributes(asset, side=row["side"], level=int(row["level"])),
            )


def histogram_metrics(step: StepRecord, time_ns: int) -> list[Metric]:
    """The step's histograms (rlx.clock_skew, rlx.book.depth), as cumulative points."""
    metrics = [_clock_skew(step, time_ns), _depth(step, time_ns)]
    return [metric for metric in metrics if metric is not None]


def _histogram(name: str, unit: str, description: str, points: list) -> Metric | None:
    if not points:
        return None
    return Metric(
        name=name,
        description=description,
        unit=unit,
        data=Histogram(
            data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE
        ),
    )


def _depth(step: StepRecord, time_ns: int) -> Metric | None:
    """rlx.book.depth: the per-minute mean depth of each side that microstructure_metrics
    returned, in DEPTH_BOUNDS buckets (minutes without a book have no depth)."""
    points = []
    for output in step.outputs:
        per_minute = output.value
        if output.asset != MICROSTRUCTURE or not isinstance(per_minute, pa.Table):
            continue
        for side in ("bid", "ask"):
            column = f"depth_{side}_mean"
            if column not in per_minute.column_names:
                continue
            depth = pc.fill_null(per_minute.column(column), np.nan).to_numpy()
            depth = depth[np.isfinite(depth)]
            if depth.size == 0:
                continue
            # A bucket holds (previous bound, bound], as searchsorted's left side gives.
            buckets = np.searchsorted(np.asarray(DEPTH_BOUNDS), depth, side="left")
            points.append(
                HistogramDataPoint(
                    attributes=step.attributes(output.asset, side=side.upper()),
                    start_time_unix_nano=step.start_time_ns,
                    time_unix_nano=time_ns,
                    count=int(depth.size),
                    sum=float(depth.sum()),
                    bucket_counts=np.bincount(buckets, minlength=len(DEPTH_BOUNDS) + 1).tolist(),
                    explicit_bounds=list(DEPTH_BOUNDS),
                    min=float(depth.min()),
                    max=float(depth.max()),
                )
            )
    return _histogram(
        BOOK_DEPTH,
        "{base_unit}",
        "Per-minute mean depth of a side (sum of its top-20 sizes).",
        points,
    )


def _clock_skew(step: StepRecord, time_ns: int) -> Metric | None:
    """rlx.clock_skew of the step's raw tables: one point per table, from the bucket counts the
    raw asset recorded (a table without valid times has no point)."""
    points = []
    for output in step.outputs:
        histogram = output.metadata.get(SKEW_HISTOGRAM)
        if output.asset not in RAW_TABLES or not isinstance(histogram, Mapping):
            continue
        counts = [int(count) for count in histogram["counts"]]
        if sum(counts) == 0:
            continue
        points.append(
            HistogramDataPoint(
                attributes=step.attributes(output.asset, table=RAW_TABLES[output.asset]),
                start_time_unix_nano=step.start_time_ns,
                time_unix_nano=time_ns,
                count=sum(counts),
                sum=float(histogram["sum_ms"]),
                bucket_counts=counts,
                explicit_bounds=[float(bound) for bound in histogram["bounds_ms"]],
                min=float(output.metadata["clock_skew_min_ms"]),
                max=float(output.metadata["clock_skew_max_ms"]),
            )
        )
    return _histogram(
        CLOCK_SKEW,
        "ms",
        "received_time - origin_time of every row with both times, per table.",
        points,
    )
