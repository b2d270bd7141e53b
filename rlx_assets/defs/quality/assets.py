"""validation_report: one row of the partition's data-quality figures, assembled once.

The figures each asset computed with its data (raw accounting, replay statistics) are read from the
materialization metadata the instance recorded; what spans tables (clock skew over all tables,
origin_time completeness) is computed here from the time columns only.
"""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    ResourceParam,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    multi_asset,
)

from rlx_assets import check_names
from rlx_assets.defs.checks import partitioned_check
from rlx_assets.defs.errors import user_errors
from rlx_assets.defs.metadata import markdown_table, recorded_metadata
from rlx_assets.defs.skipped_checks import skip_checks
from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.engine.fidelity import compare_day_batches
from rlx_assets.engine.fidelity_report import FidelityReport, FidelityThresholds
from rlx_assets.engine.golden import concat_samples, parse_golden
from rlx_assets.engine.microstructure import BOOK_BATCH_ROWS, microstructure_metrics_batches
from rlx_assets.engine.quality import TimeBatches, time_figures, validation_row
from rlx_assets.partitions import day_and_symbol
from rlx_assets.plots import (
    distribution_plot_png,
    png_markdown,
    qq_plot_png,
    timeseries_plot_png,
)
from rlx_assets.resources.golden import GoldenResource
from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets.resources.partition_file import PartitionFile
from rlx_assets.resources.quality import QualityResource
from rlx_assets.resources.telemetry import observed
from rlx_assets.sparkline import day_sparkline

TIMES = ["origin_time", "received_time"]
BOOK_FIGURES = [
    "gaps_detected",
    "gaps_filled",
    "stale_levels_repaired",
    "crossed_books_published",
    "mid_deviation_max_bps",
    "mid_deviation_p99_bps",
    "top20_match_share",
    "strategy",
    "cold_start",
    "seed",
    "sequence_id_gaps",
    "gaps_detected_per_hour",
    "gaps_filled_per_hour",
]
REPORT_COLUMNS = [
    "gaps_detected",
    "gaps_filled",
    "stale_levels_repaired",
    "crossed_books_published",
    "mid_deviation_max_bps",
    "mid_deviation_p99_bps",
    "top20_match_share",
    "clock_skew_p50_ms",
    "clock_skew_p99_ms",
    "clock_skew_min_ms",
    "clock_skew_max_ms",
    "origin_time_invalid_share",
    "precision_loss_warnings",
    "duplicates_dropped",
    "rows_quarantined",
    "trade_to_book_ratio",
    "strategy",
    "cold_start",
]
NO_GOLDEN_SAMPLE = "NO_GOLDEN_SAMPLE"
RAW_COUNTS = ["precision_loss_warnings", "duplicates_dropped", "rows_quarantined"]


def _timeseries(times, values, title: str) -> MetadataValue:
    """A small PNG of values over the day, as markdown metadata."""
    if isinstance(values, pa.ChunkedArray):
        times, values = times.to_numpy(), pc.fill_null(values, np.nan).to_numpy()
    png = timeseries_plot_png(times, values, title)
    return MetadataValue.md(png_markdown(png, title))


def gaps_per_hour(detected: list[int], filled: list[int]) -> MetadataValue:
    """The hours with a gap, as a small table (a day without gaps says so in one line)."""
    hours = [
        {"hour_utc": f"{hour:02d}:00", "detected": int(found), "filled": int(done)}
        for hour, (found, done) in enumerate(zip(detected, filled, strict=True))
        if found or done
    ]
    if not hours:
        return MetadataValue.text("no gaps in any hour")
    return MetadataValue.table(
        records=[TableRecord(hour) for hour in hours],
        schema=TableSchema(
            columns=[
                TableColumn("hour_utc", "string"),
                TableColumn("detected", "int"),
                TableColumn("filled", "int"),
            ]
        ),
    )


def _microstructure_sparklines(per_minute: pa.Table, day: dt.date) -> dict[str, MetadataValue]:
    """Spread and depth over the day, drawn inline (half-hour means of the minute figures)."""
    start = day_bounds_ns(day)[0]
    minutes = per_minute["minute_start"].to_numpy()

    def column(name: str) -> np.ndarray:
        return pc.fill_null(per_minute[name], np.nan).to_numpy(zero_copy_only=False)

    depth = column("depth_bid_mean") + column("depth_ask_mean")
    return {
        "spread_sparkline": MetadataValue.text(
            day_sparkline(minutes, column("spread_bps_mean"), start, "bps", how="mean")
        ),
        "depth_sparkline": MetadataValue.text(
            day_sparkline(minutes, depth, start, "size, bid+ask", how="mean")
        ),
    }


BATCH_ROWS = 1 << 20  # rows per batch read from a partition: a few MB of the time columns


def _time_batches(parquet: PartitionFile) -> TimeBatches:
    """(origin, received) ns batches in the stored order, -1 where null. The raw book tables
    are stored sorted by sequence_number (nulls quarantined), their completeness order."""

    def batches():
        for batch in parquet.iter_batches(BATCH_ROWS, columns=TIMES):
            yield tuple(pc.fill_null(column, -1).to_numpy() for column in batch.columns)

    return batches


def _trade_times_by_id(parquet: PartitionFile) -> TimeBatches:
    """Trades are stored by (time, trade_id), but their order for completeness is the id: the
    smallest table (2.7M rows at full scale), so its three int64 columns are held and sorted."""
    table = parquet.read(columns=[*TIMES, "trade_id"])
    table = table.take(pc.sort_indices(table, sort_keys=[("trade_id", "ascending")]))
    origin, received = (pc.fill_null(table[name], -1).to_numpy() for name in TIMES)
    del table

    def batches():
        for begin in range(0, origin.size, BATCH_ROWS):
            yield origin[begin : begin + BATCH_ROWS], received[begin : begin + BATCH_ROWS]

    return batches


def _source(parquet: PartitionFile, batch_rows: int = BATCH_ROWS):
    """The engine's batch source over a stored partition: the named columns, in batches."""

    def batches(columns: list[str]):
        return parquet.iter_batches(batch_rows, columns=columns)

    return batches


def _mid_deviation_points(book: PartitionFile) -> tuple[np.ndarray, np.ndarray]:
    """(origin_time, mid_deviation_bps) where a deviation was measured (vendor snapshots): the
    only points the plot draws."""
    times, values = [np.zeros(0, np.int64)], [np.zeros(0)]
    for batch in book.iter_batches(BATCH_ROWS, columns=["origin_time", "mid_deviation_bps"]):
        deviation = pc.fill_null(batch.column(1), np.nan).to_numpy(zero_copy_only=False)
        measured = np.isfinite(deviation)
        times.append(batch.column(0).to_numpy(zero_copy_only=False)[measured])
        values.append(deviation[measured])
    return np.concatenate(times), np.concatenate(values)


def build_quality_assets(partitions_def) -> list[AssetsDefinition]:
    @asset(
        name="validation_report",
        partitions_def=partitions_def,
        group_name="quality",
        description=(
            "The partition's data-quality figures as one row: gaps, repairs, "
            "crossed books, mid deviation, clock skew per table, origin_time completeness, "
            "precision loss, duplicates, quarantine, trade-to-book ratio, strategy, cold start."
        ),
        kinds={"parquet"},
        # Streamed from storage in batches, not loaded as inputs.
        deps=["raw_trades", "raw_book_snapshots", "raw_book_deltas", "reconstructed_book"],
    )
    @observed
    @user_errors
    def validation_report(
        context: AssetExecutionContext, io_manager: ResourceParam[ParquetIOManager]
    ) -> Output[pa.Table]:
        day, symbol = day_and_symbol(context.partition_key)
        with io_manager.read_partitions(
            symbol, day, "raw_trades", "raw_book_snapshots", "raw_book_deltas", "reconstructed_book"
        ) as (raw_trades, raw_book_snapshots, raw_book_deltas, reconstructed_book):
            times = time_figures(
                day,
                {
                    "trades": _trade_times_by_id(raw_trades),
                    "book": _time_batches(raw_book_snapshots),
                    "book_delta_v2": _time_batches(raw_book_deltas),
                },
            )
            trades = raw_trades.metadata.num_rows
            delta_messages = reconstructed_book.metadata.num_rows
            deviation_times, deviations = _mid_deviation_points(reconstructed_book)
        raw_counts = {
            name: recorded_metadata(context, name)
            for name in ("raw_trades", "raw_book_snapshots", "raw_book_deltas")
        }
        book = recorded_metadata(context, "reconstructed_book")
        row = validation_row(
            day,
            times,
            {
                name: {k: v for k, v in m.items() if k in RAW_COUNTS}
                for name, m in raw_counts.items()
            },
            {k: v for k, v in book.items() if k in BOOK_FIGURES},
            trades=trades,
            delta_messages=delta_messages,
        )
        table = pa.Table.from_pylist([row])
        shown = [{"figure": k, "value": v} for k, v in row.items() if not isinstance(v, list)]
        return Output(
            table,
            metadata={
                "dagster/row_count": 1,
                # First, and as text and a table: the UI shows both inline ("is this day good?").
                "mid_deviation_sparkline": MetadataValue.text(
                    day_sparkline(deviation_times, deviations, day_bounds_ns(day)[0], "bps")
                ),
                "report": MetadataValue.table(
                    records=[
                        TableRecord({"figure": r["figure"], "value": str(r["value"])})
                        for r in shown
                    ],
                    schema=TableSchema(
                        columns=[TableColumn("figure", "string"), TableColumn("value", "string")]
                    ),
                ),
                "mid_deviation_over_time": _timeseries(
                    deviation_times,
                    deviations,
                    "mid deviation vs vendor (bps, before resync)",
                ),
                # The DESIGN columns one by one (plottable in the UI); the rest is in `report`.
                **{k: row[k] for k in REPORT_COLUMNS if row[k] is not None},
                "gaps_per_hour": gaps_per_hour(
                    row["gaps_detected_per_hour"], row["gaps_filled_per_hour"]
                ),
            },
        )

    return [validation_report]


def build_fidelity_assets(partitions_def) -> list[AssetsDefinition]:
    @multi_asset(
        name="fidelity",
        partitions_def=partitions_def,
        group_name="quality",
        outs={
            "fidelity_report": AssetOut(
                description=(
                    "The reconstructed book and trades against the golden sample of the same "
                    "window: top-of-book agreement with the exchange's own best bid/ask stream, "
                    "best bid/ask RMSE, KS and Anderson-Darling tests on trade size, "
                    "inter-arrival time and spread, and a PASS/FAIL verdict. Windows the "
                    "capture recorded as gaps are left out and reported. Days without a "
                    "golden sample say so; their checks are skipped."
                ),
                kinds={"parquet"},
            )
        },
        # Read in batches from storage (only with a golden sample), not loaded as inputs.
        deps=["reconstructed_book", "raw_trades"],
        check_specs=[
            partitioned_check(
                check_names.TOP_OF_BOOK_MATCHES_GOLDEN,
                partitions_def=partitions_def,
                asset="fidelity_report",
                description="Share of the exchange's bookTicker updates the rebuilt book equals.",
            ),
            partitioned_check(
                check_names.DISTRIBUTIONS_MATCH_GOLDEN,
                partitions_def=partitions_def,
                asset="fidelity_report",
                description="KS/AD p-values on trade size, inter-arrival and spread vs the golden.",
            ),
        ],
        # Checks not yielded (no golden sample) are skipped, not failed.
        can_subset=True,
    )
    @observed
    @user_errors
    def fidelity(
        context: AssetExecutionContext,
        golden: GoldenResource,
        quality: QualityResource,
        io_manager: ResourceParam[ParquetIOManager],
    ):
        day, symbol = day_and_symbol(context.partition_key)
        # The previous day's capture covers the first seconds of this day (collectors cut files
        # by local receive time).
        files = [golden.read(symbol, d) for d in (day - dt.timedelta(days=1), day)]
        if files[1] is None:
            skip_checks(
                context,
                "fidelity_report",
                [check_names.TOP_OF_BOOK_MATCHES_GOLDEN, check_names.DISTRIBUTIONS_MATCH_GOLDEN],
                f"no golden sample for this day ({golden.path(symbol, day)})",
            )
            yield Output(
                FidelityReport(verdict=NO_GOLDEN_SAMPLE).table(),
                output_name="fidelity_report",
                metadata={"verdict": NO_GOLDEN_SAMPLE, "golden_path": golden.path(symbol, day)},
            )
            return
        sample = concat_samples([parse_golden(f, golden.path(symbol, day)) for f in files if f])
        thresholds = FidelityThresholds(
            min_agreement=quality.min_top_of_book_agreement, alpha=quality.fidelity_alpha
        )
        with io_manager.read_partitions(symbol, day, "reconstructed_book", "raw_trades") as (
            book,
            trades,
        ):
            report = compare_day_batches(_source(book), _source(trades), sample, thresholds)
        row = report.row()
        plots = []
        for name, (mine, theirs) in report.samples.items():
            if mine.size and theirs.size:
                plots.append(f"**{name}**")
                plots.append(png_markdown(distribution_plot_png(mine, theirs, title=name), name))
                plots.append(png_markdown(qq_plot_png(mine, theirs, title=f"{name} Q-Q"), name))
        yield Output(
            report.table(),
            output_name="fidelity_report",
            metadata={
                "dagster/row_count": 1,
                **{k: v for k, v in row.items() if isinstance(v, (int, float, str, bool))},
                "golden_path": golden.path(symbol, day),
                "plots": MetadataValue.md("\n\n".join(plots) or "_no samples_"),
            },
        )
        agreement = report.top_of_book_agreement
        yield AssetCheckResult(
            check_name=check_names.TOP_OF_BOOK_MATCHES_GOLDEN,
            asset_key="fidelity_report",
            passed=agreement is not None and agreement >= quality.min_top_of_book_agreement,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "top_of_book_agreement": agreement if agreement is not None else -1.0,
                "threshold": quality.min_top_of_book_agreement,
                "book_ticker_compared": report.book_ticker_compared,
                "best_bid_rmse": report.best_bid_rmse or 0.0,
                "best_ask_rmse": report.best_ask_rmse or 0.0,
            },
        )
        p_values = {
            name: row[name]
            for name in ("ks_trade_size_p", "ks_inter_arrival_p", "ks_spread_p", "ad_trade_size_p")
            if row[name] is not None
        }
        yield AssetCheckResult(
            check_name=check_names.DISTRIBUTIONS_MATCH_GOLDEN,
            asset_key="fidelity_report",
            passed=all(p >= quality.fidelity_alpha for p in p_values.values()),
            severity=AssetCheckSeverity.WARN,
            metadata={
                **p_values,
                "alpha": quality.fidelity_alpha,
                "verdict": report.verdict,
                "reasons": "; ".join(report.verdict_reasons) or "none",
            },
        )

    return [fidelity]


def build_microstructure_assets(partitions_def) -> list[AssetsDefinition]:
    @asset(
        name="microstructure_metrics",
        partitions_def=partitions_def,
        group_name="quality",
        description=(
            "Per-minute spread, mid, order-book imbalance (level 1, top 5, top 20), depth and "
            "levels per side, update and trade rates; update frequency by price level and the "
            "day's trade-to-book event ratio in metadata."
        ),
        kinds={"parquet"},
        # Streamed from storage in batches, not loaded as inputs.
        deps=["reconstructed_book", "raw_book_deltas", "raw_trades"],
    )
    @observed
    @user_errors
    def microstructure(
        context: AssetExecutionContext, io_manager: ResourceParam[ParquetIOManager]
    ) -> Output[pa.Table]:
        day, symbol = day_and_symbol(context.partition_key)
        with io_manager.read_partitions(
            symbol, day, "reconstructed_book", "raw_book_deltas", "raw_trades"
        ) as (book, deltas, trades):
            result = microstructure_metrics_batches(
                _source(book, BOOK_BATCH_ROWS), _source(deltas), _source(trades)
            )
        levels = result.update_frequency_by_level.to_pylist()
        per_minute = result.per_minute
        return Output(
            per_minute,
            metadata={
                "dagster/row_count": per_minute.num_rows,
                **_microstructure_sparklines(per_minute, day),
                **{k: v for k, v in result.summary.items() if isinstance(v, (int, float))},
                "update_frequency_by_level": markdown_table(levels, limit=len(levels)),
                "update_frequency_by_level_rows": MetadataValue.json(levels),  # for telemetry
                "spread_over_time": _timeseries(
                    per_minute["minute_start"],
                    per_minute["spread_bps_mean"],
                    "spread (bps of mid), minute means",
                ),
            },
        )

    return [microstructure]
