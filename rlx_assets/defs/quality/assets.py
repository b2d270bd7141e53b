"""validation_report: one row of the partition's data-quality figures, assembled once.

The figures each asset computed with its data (raw accounting, replay statistics) are read from the
materialization metadata the instance recorded; what spans tables (clock skew over all tables,
origin_time completeness) is computed here from the time columns only.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    MetadataValue,
    Output,
    asset,
)

from rlx_assets.defs.metadata import markdown_table
from rlx_assets.engine.quality import validation_row
from rlx_assets.partitions import day_and_symbol
from rlx_assets.resources.io_manager import COLUMNS

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
            "reconstructed_book": AssetIn(metadata={COLUMNS: ["sequence_number"]}),
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
