"""raw_trades, raw_book_snapshots, raw_book_deltas: one day of one table, normalized and exact.

Each partition reads the `dt` folders of the day and its two neighbours, because a collector files
rows by receive time: rows stamped inside the day but filed under a neighbouring `dt` belong here,
and each row read is accounted for (kept, another day's, duplicate, or quarantined with a reason).
"""

import datetime as dt
import hashlib

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)

from rlx_assets.defs import check_names
from rlx_assets.defs.metadata import markdown_table
from rlx_assets.engine.quality import clock_skew_ms, origin_time_completeness, skew_excess_ms
from rlx_assets.engine.raw import RawDay, clean_day
from rlx_assets.lake.schema import BOOK, BOOK_DELTAS, TRADES
from rlx_assets.partitions import day_and_symbol
from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets.resources.lake import LakeResource
from rlx_assets.resources.quality import QualityResource

ONE_DAY = dt.timedelta(days=1)
QUARANTINE = "quarantine"  # <storage>/quarantine/<raw asset>/exchange=/symbol=/dt=/part-0.parquet

RAW_ASSETS = {
    "raw_trades": (TRADES, "Trades of the day: one row per trade, aggressor side, exact decimals."),
    "raw_book_snapshots": (
        BOOK,
        "Vendor 20-level book snapshots of the day (wide layout), exact decimals.",
    ),
    "raw_book_deltas": (
        BOOK_DELTAS,
        "Full-depth book deltas of the day (absolute size per price; rows sharing a "
        "sequence_number form one exchange message), exact decimals.",
    ),
}


def _content_hash(table: pa.Table) -> str:
    """SHA-256 of the rows as an Arrow IPC stream: equal hashes mean equal data."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _metadata(day: RawDay, sources: list, missing_dts: list[str]) -> dict[str, object]:
    quarantine_preview = day.quarantine.slice(0, 10).to_pylist() if day.quarantine else []
    return {
        "dagster/row_count": day.table.num_rows,
        "rows_read": day.rows_read,
        "rows_other_days": day.rows_other_days,
        "rows_from_neighbour_dt": day.rows_from_neighbour_dt,
        "duplicates_dropped": day.duplicates_dropped,
        "rows_quarantined": day.rows_quarantined,
        "quarantine_reasons": MetadataValue.json(dict(sorted(day.quarantined.items()))),
        "quarantined_rows_preview": markdown_table(quarantine_preview, limit=10),
        "origin_time_invalid": day.origin_time_invalid,
        "precision_loss_warnings": day.precision_loss_warnings,
        "price_step": f"1e{day.price_step_exponent}",
        "size_step": f"1e{day.size_step_exponent}",
        "source_files": MetadataValue.json(
            [{"uri": f.uri, "size": f.size, "etag": f.etag, "sha256": f.sha256} for f in sources]
        ),
        "source_bytes": sum(f.size for f in sources),
        "dt_folders_missing": MetadataValue.json(missing_dts),
        "content_sha256": _content_hash(day.table),
    }


def build_raw_asset(
    name: str, table_name: str, description: str, partitions_def
) -> AssetsDefinition:
    @asset(
        name=name,
        group_name="raw",
        partitions_def=partitions_def,
        description=description,
        kinds={"parquet"},
        code_version="1",
        check_specs=[
            check_names.partitioned_check(
                check_names.ORIGIN_TIME_COMPLETE,
                partitions_def=partitions_def,
                asset=name,
                description="Share of rows with a null, zero, out-of-day or backwards origin_time.",
            ),
            check_names.partitioned_check(
                check_names.CLOCK_SKEW_WITHIN_LIMIT,
                partitions_def=partitions_def,
                asset=name,
                description="received_time - origin_time: max(|p1|, |p99|) in ms.",
            ),
            check_names.partitioned_check(
                check_names.NO_PRECISION_LOSS,
                partitions_def=partitions_def,
                asset=name,
                description="Share of prices and sizes off the instrument grid (kept exactly).",
            ),
        ],
    )
    def _raw(
        context: AssetExecutionContext,
        lake: LakeResource,
        quality: QualityResource,
        io_manager: ResourceParam[ParquetIOManager],
    ):
        day, symbol = day_and_symbol(context.partition_key)
        source = lake.open()
        pieces: list[tuple[dt.date, pa.Table]] = []
        files = []
        missing = []
        for filed_under in (day - ONE_DAY, day, day + ONE_DAY):
            found = source.read_day(table_name, lake.exchange, symbol, filed_under)
            if not found.files:
                missing.append(str(filed_under))
            files += found.files
            pieces += [(filed_under, table) for table in found.tables]
        price_exponent, size_exponent = lake.grid_exponents(symbol)
        cleaned = clean_day(table_name, day, pieces, price_exponent, size_exponent)
        if not cleaned.accounted():
            raise RuntimeError(f"{name} {context.partition_key}: row accounting does not add up")
        if str(day) in missing:
            context.log.warning(f"{name}: no {table_name} files filed under dt={day}")
        quarantine_path = None
        if not cleaned.rows_quarantined:
            io_manager.remove_partition(f"{QUARANTINE}/{name}", symbol, day)  # an earlier run's
        else:
            # Kept as read (plus a reason), beside the assets: nothing the vendor sent is lost.
            quarantine_path, _ = io_manager.write_partition(
                f"{QUARANTINE}/{name}", symbol, day, cleaned.quarantine
            )
            context.log.warning(
                f"{name}: {cleaned.rows_quarantined} rows quarantined to {quarantine_path}: "
                f"{dict(cleaned.quarantined)}"
            )
        figures = _quality_figures(table_name, cleaned, day)
        metadata = {**_metadata(cleaned, files, missing), **figures}
        if quarantine_path:
            metadata["quarantine_path"] = MetadataValue.path(quarantine_path)
        yield Output(cleaned.table, metadata=metadata)
        yield from _checks(figures, quality)

    return _raw


def _quality_figures(table_name: str, cleaned: RawDay, day: dt.date) -> dict[str, object]:
    table = cleaned.table
    if table_name == TRADES:
        # A trade's place is its id: origin_time must not go backwards along the ids.
        table = table.take(pc.sort_indices(table, sort_keys=[("trade_id", "ascending")]))
    origin = pc.fill_null(table["origin_time"], -1).to_numpy()
    received = pc.fill_null(table["received_time"], -1).to_numpy()
    skew = clock_skew_ms(origin, received)
    completeness = origin_time_completeness(origin, day)
    checked = max(1, cleaned.values_on_grid_checked)
    return {
        **{f"clock_skew_{name}_ms": value for name, value in skew.items() if name != "rows"},
        **{f"origin_time_{name}": value for name, value in completeness.items()},
        "precision_loss_share": cleaned.precision_loss_warnings / checked,
    }


def _checks(figures: dict[str, object], quality: QualityResource):
    invalid = float(figures["origin_time_invalid_share"])
    yield AssetCheckResult(
        check_name=check_names.ORIGIN_TIME_COMPLETE,
        passed=invalid <= quality.max_origin_time_invalid_share,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "origin_time_invalid_share": invalid,
            "threshold": quality.max_origin_time_invalid_share,
            **{k: v for k, v in figures.items() if k.startswith("origin_time_")},
        },
    )
    skew = {
        k.removeprefix("clock_skew_").removesuffix("_ms"): v
        for k, v in figures.items()
        if k.startswith("clock_skew_")
    }
    excess = skew_excess_ms(skew)
    yield AssetCheckResult(
        check_name=check_names.CLOCK_SKEW_WITHIN_LIMIT,
        passed=excess <= quality.max_clock_skew_ms,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "clock_skew_excess_ms": excess,
            "threshold_ms": quality.max_clock_skew_ms,
            **{k: v for k, v in figures.items() if k.startswith("clock_skew_") and v is not None},
        },
    )
    share = float(figures["precision_loss_share"])
    yield AssetCheckResult(
        check_name=check_names.NO_PRECISION_LOSS,
        passed=share <= quality.max_precision_loss_share,
        severity=AssetCheckSeverity.WARN,
        metadata={"precision_loss_share": share, "threshold": quality.max_precision_loss_share},
    )


def build_raw_assets(partitions_def) -> list[AssetsDefinition]:
    return [
        build_raw_asset(name, table_name, description, partitions_def)
        for name, (table_name, description) in RAW_ASSETS.items()
    ]
