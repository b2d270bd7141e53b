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
    AssetIn,
    AssetKey,
    AssetOut,
    AssetRecordsFilter,
    AssetsDefinition,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from rlx_assets.defs import check_names
from rlx_assets.defs.metadata import markdown_table
from rlx_assets.engine.fidelity import FidelityReport, FidelityThresholds, compare_day
from rlx_assets.engine.golden import concat_samples, parse_golden
from rlx_assets.engine.microstructure import microstructure_metrics
from rlx_assets.engine.quality import validation_row
from rlx_assets.partitions import day_and_symbol
from rlx_assets.plots import (
    distribution_plot_png,
    png_markdown,
    qq_plot_png,
    timeseries_plot_png,
)
from rlx_assets.resources.golden import GoldenResource
from rlx_assets.resources.io_manager import COLUMNS
from rlx_assets.resources.quality import QualityResource

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
FIDELITY_BOOK_COLUMNS = [
    "origin_time",
    "received_time",
    "sequence_number",
    "bid_0_price",
    "bid_0_size",
    "ask_0_price",
    "ask_0_size",
]
RAW_COUNTS = ["precision_loss_warnings", "duplicates_dropped", "rows_quarantined"]


def recorded_metadata(context: AssetExecutionContext, asset_name: str) -> dict[str, object]:
    """The latest materialization metadata of an asset's partition (this run's, when it ran)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=AssetKey(asset_name), asset_partitions=[context.partition_key]
        ),
        limit=1,
    ).records
    if not records:
        return {}
    materialization = records[0].asset_materialization
    return {key: value.value for key, value in materialization.metadata.items()}


def _timeseries(times: pa.ChunkedArray, values: pa.ChunkedArray, title: str) -> MetadataValue:
    """A small PNG of values over the day, as markdown metadata."""
    png = timeseries_plot_png(times.to_numpy(), pc.fill_null(values, np.nan).to_numpy(), title)
    return MetadataValue.md(png_markdown(png, title))


def _times(table: pa.Table, order: str) -> tuple[np.ndarray, np.ndarray]:
    table = table.take(pc.sort_indices(table, sort_keys=[(order, "ascending")]))
    return tuple(pc.fill_null(table[name], -1).to_numpy() for name in TIMES)


def build_quality_assets(partitions_def) -> list[AssetsDefinition]:
    @asset(
        name="validation_report",
        partitions_def=partitions_def,
        group_name="quality",
        description=(
            "The partition's data-quality figures (DESIGN section 4) as one row: gaps, repairs, "
            "crossed books, mid deviation, clock skew per table, origin_time completeness, "
            "precision loss, duplicates, quarantine, trade-to-book ratio, strategy, cold start."
        ),
        kinds={"parquet"},
        code_version="1",
        ins={
            "raw_trades": AssetIn(metadata={COLUMNS: [*TIMES, "trade_id"]}),
            "raw_book_snapshots": AssetIn(metadata={COLUMNS: [*TIMES, "sequence_number"]}),
            "raw_book_deltas": AssetIn(metadata={COLUMNS: [*TIMES, "sequence_number"]}),
            "reconstructed_book": AssetIn(
                metadata={COLUMNS: ["origin_time", "sequence_number", "mid_deviation_bps"]}
            ),
        },
    )
    def validation_report(
        context: AssetExecutionContext,
        raw_trades: pa.Table,
        raw_book_snapshots: pa.Table,
        raw_book_deltas: pa.Table,
        reconstructed_book: pa.Table,
    ) -> Output[pa.Table]:
        day, _ = day_and_symbol(context.partition_key)
        times = {
            "trades": _times(raw_trades, "trade_id"),
            "book": _times(raw_book_snapshots, "sequence_number"),
            "book_delta_v2": _times(raw_book_deltas, "sequence_number"),
        }
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
            trades=raw_trades.num_rows,
            delta_messages=reconstructed_book.num_rows,
        )
        table = pa.Table.from_pylist([row])
        shown = [{"figure": k, "value": v} for k, v in row.items() if not isinstance(v, list)]
        return Output(
            table,
            metadata={
                "dagster/row_count": 1,
                "report": markdown_table(shown, limit=len(shown)),
                "mid_deviation_over_time": _timeseries(
                    reconstructed_book["origin_time"],
                    reconstructed_book["mid_deviation_bps"],
                    "mid deviation vs vendor (bps, before resync)",
                ),
                # The DESIGN columns one by one (plottable in the UI); the rest is in `report`.
                **{k: row[k] for k in REPORT_COLUMNS if row[k] is not None},
                "gaps_per_hour": MetadataValue.json(
                    {
                        "detected": row["gaps_detected_per_hour"],
                        "filled": row["gaps_filled_per_hour"],
                    }
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
                    "inter-arrival time and spread, and a PASS/FAIL verdict. Days without a "
                    "golden sample say so; their checks are skipped."
                ),
                kinds={"parquet"},
                code_version="1",
            )
        },
        ins={
            "reconstructed_book": AssetIn(metadata={COLUMNS: FIDELITY_BOOK_COLUMNS}),
            "raw_trades": AssetIn(),
        },
        check_specs=[
            check_names.partitioned_check(
                check_names.TOP_OF_BOOK_MATCHES_GOLDEN,
                partitions_def=partitions_def,
                asset="fidelity_report",
                description="Share of the exchange's bookTicker updates the rebuilt book equals.",
            ),
            check_names.partitioned_check(
                check_names.DISTRIBUTIONS_MATCH_GOLDEN,
                partitions_def=partitions_def,
                asset="fidelity_report",
                description="KS/AD p-values on trade size, inter-arrival and spread vs the golden.",
            ),
        ],
        # Checks not yielded (no golden sample) are skipped, not failed.
        can_subset=True,
    )
    def fidelity(
        context: AssetExecutionContext,
        golden: GoldenResource,
        quality: QualityResource,
        reconstructed_book: pa.Table,
        raw_trades: pa.Table,
    ):
        day, symbol = day_and_symbol(context.partition_key)
        # The previous day's capture covers the first seconds of this day (collectors cut files
        # by local receive time).
        files = [golden.read(symbol, d) for d in (day - dt.timedelta(days=1), day)]
        if files[1] is None:
            context.log.info(f"no golden sample at {golden.path(symbol, day)}: checks skipped")
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
        report = compare_day(reconstructed_book, raw_trades, sample, thresholds)
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
        code_version="1",
        ins={
            "reconstructed_book": AssetIn(),
            "raw_book_deltas": AssetIn(
                metadata={
                    COLUMNS: [*TIMES, "sequence_number", "side_is_bid", "price"],
                }
            ),
            "raw_trades": AssetIn(metadata={COLUMNS: [*TIMES, "trade_id"]}),
        },
    )
    def microstructure(
        reconstructed_book: pa.Table, raw_book_deltas: pa.Table, raw_trades: pa.Table
    ) -> Output[pa.Table]:
        result = microstructure_metrics(reconstructed_book, raw_book_deltas, raw_trades)
        levels = result.update_frequency_by_level.to_pylist()
        per_minute = result.per_minute
        return Output(
            per_minute,
            metadata={
                "dagster/row_count": per_minute.num_rows,
                **{k: v for k, v in result.summary.items() if isinstance(v, (int, float))},
                "update_frequency_by_level": markdown_table(levels, limit=len(levels)),
                "spread_over_time": _timeseries(
                    per_minute["minute_start"],
                    per_minute["spread_bps_mean"],
                    "spread (bps of mid), minute means",
                ),
            },
        )

    return [microstructure]
