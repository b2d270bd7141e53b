"""raw_trades, raw_book_snapshots, raw_book_deltas: one day of one table, normalized and exact.

Each partition reads the `dt` folders of the day and its two neighbours, because a collector files
rows by receive time: rows stamped inside the day but filed under a neighbouring `dt` belong here,
and each row read is accounted for (kept, another day's, duplicate, or quarantined with a reason).
"""

import datetime as dt
from collections.abc import Callable, Iterator

import numpy as np
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

from rlx_assets import check_names
from rlx_assets.background import WriteBehind, read_ahead
from rlx_assets.defs.checks import at_most, partitioned_check
from rlx_assets.defs.errors import user_errors
from rlx_assets.defs.metadata import markdown_table, recorded_metadata
from rlx_assets.engine.clock_skew import clock_skew_ms_batches, skew_excess_ms
from rlx_assets.engine.quality import OriginTimeCompleteness
from rlx_assets.engine.raw import Source, clean_partition
from rlx_assets.engine.raw_account import RawAccount
from rlx_assets.engine.row_groups import row_groups_for_day
from rlx_assets.engine.runs import Run
from rlx_assets.lake.consistency import foreign_prices, schema_drift
from rlx_assets.lake.source import Lake, SourceFile, SourceReader
from rlx_assets.partitions import day_and_symbol, partition_key
from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets.resources.lake import LakeResource
from rlx_assets.resources.quality import QualityResource
from rlx_assets.resources.spill import DiskRuns
from rlx_assets.resources.telemetry import observed
from rlx_assets.schema import BOOK, BOOK_DELTAS, SCHEMAS, TABLES, TRADES, SourceSchemaError
from rlx_assets.threaded_executor import step_priority

ONE_DAY = dt.timedelta(days=1)
READ_BATCH_ROWS = 500_000  # rows decoded at a time, from the lake and from storage
# The raw steps run side by side (rlx_threads): the longest, the deltas, starts first.
STEP_PRIORITY = {BOOK_DELTAS: 3, BOOK: 2, TRADES: 1}
# A wide table (the 80-column book) is read in fewer rows at a time. Every stage of a step holds
# a batch or two (read-ahead, cleaning, decimals, write-behind), and two steps run at once: the
# three raw tables of a full-scale day peaked at 1.43-1.49 GB with 32 MB batches against
# 1.84-1.88 GB with 64 MB (and 1M rows), in 16.0-17.5 s against 16.7-21.6 s.
READ_BATCH_BYTES = 32 << 20


def read_batch_rows(table_name: str) -> int:
    """Rows of about READ_BATCH_BYTES of the table's float and int64 columns, at most
    READ_BATCH_ROWS: the batch every pass of the cleaning works on."""
    width = 8 * len(SCHEMAS[table_name].names)
    return max(10_000, min(READ_BATCH_ROWS, READ_BATCH_BYTES // width))


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


def _metadata(
    account: RawAccount,
    sources: list[SourceFile],
    bytes_read: dict[str, int],
    missing_dts: list[str],
    quarantine_preview: list[dict],
) -> dict[str, object]:
    return {
        "dagster/row_count": account.rows_kept,
        "rows_read": account.rows_read,
        "rows_other_days": account.rows_other_days,
        "rows_from_neighbour_dt": account.rows_from_neighbour_dt,
        "duplicates_dropped": account.duplicates_dropped,
        "rows_quarantined": account.rows_quarantined,
        "quarantine_reasons": MetadataValue.json(dict(sorted(account.quarantined.items()))),
        "quarantined_rows_preview": markdown_table(quarantine_preview, limit=10),
        "origin_time_invalid": account.origin_time_invalid,
        "precision_loss_warnings": account.precision_loss_warnings,
        "price_step": f"1e{account.price_step_exponent}",
        "size_step": f"1e{account.size_step_exponent}",
        "source_files": MetadataValue.json(
            [{"uri": f.uri, "size": f.size, "etag": f.etag, "sha256": f.sha256} for f in sources]
        ),
        "source_bytes": sum(f.size for f in sources),
        "bytes_read": sum(bytes_read.values()),
        "bytes_read_by_dt": MetadataValue.json(bytes_read),
        "sorted_runs": account.sorted_runs,
        "written_while_placing": account.written_while_placing,
        "dt_folders_missing": MetadataValue.json(missing_dts),
    }


def build_raw_asset(
    name: str, table_name: str, description: str, partitions_def
) -> AssetsDefinition:
    @asset(
        name=name,
        group_name="raw",
        partitions_def=partitions_def,
        op_tags=step_priority(STEP_PRIORITY[table_name]),
        description=description,
        kinds={"parquet"},
        check_specs=[
            partitioned_check(
                check_names.ORIGIN_TIME_COMPLETE,
                partitions_def=partitions_def,
                asset=name,
                description="Share of rows with a null, zero, out-of-day or backwards origin_time.",
            ),
            partitioned_check(
                check_names.CLOCK_SKEW_WITHIN_LIMIT,
                partitions_def=partitions_def,
                asset=name,
                description="received_time - origin_time: max(|p1|, |p99|) in ms.",
            ),
            partitioned_check(
                check_names.ROWS_QUARANTINED_WITHIN_LIMIT,
                partitions_def=partitions_def,
                asset=name,
                description="Share of the day's rows quarantined (bad values, times far from "
                "their dt, ...): a day that loses more of its rows fails.",
            ),
            partitioned_check(
                check_names.GRID_STABLE,
                partitions_def=partitions_def,
                asset=name,
                description="The day's values need no finer price or size grid than the one "
                "used (from settings, else the previous day's): a tick change is reported, "
                "not absorbed.",
            ),
            partitioned_check(
                check_names.DAY_HAS_ROWS,
                partitions_def=partitions_def,
                asset=name,
                description="The day's dt folder holds files of this table and the day keeps "
                "rows (ERROR; WARN for deltas, whose absence degrades the book's strategy).",
            ),
            partitioned_check(
                check_names.NO_PRECISION_LOSS,
                partitions_def=partitions_def,
                asset=name,
                description="Share of prices and sizes off the instrument grid (kept exactly).",
            ),
        ],
    )
    @observed
    @user_errors
    def _raw(
        context: AssetExecutionContext,
        lake: LakeResource,
        quality: QualityResource,
        io_manager: ResourceParam[ParquetIOManager],
    ):
        day, symbol = day_and_symbol(context.partition_key)
        grids, grid_source = _grids(context, lake, name, day, symbol)
        lake_source = lake.open()
        readers: dict[dt.date, list[SourceReader]] = {}
        try:
            for filed_under in (day - ONE_DAY, day, day + ONE_DAY):
                readers[filed_under] = lake_source.open_day(
                    table_name, lake.exchange, symbol, filed_under, whole=filed_under == day
                )
            _refuse_inconsistent_day(
                lake_source, table_name, lake.exchange, symbol, day, readers[day]
            )
            with (
                DiskRuns(io_manager.spill_parent()) as store,
                io_manager.partition_writer(name, symbol, day) as writer,
                WriteBehind() as behind,  # encodes and writes while the next batch is cleaned
            ):
                quarantined = store.create()
                figures: dict[str, object] = {}

                def rewrite() -> None:
                    """The rows written while placing are void: the file starts again."""
                    behind.drain()
                    writer.restart()

                account = clean_partition(
                    table_name,
                    day,
                    lambda: [
                        Source(
                            filed_under,
                            read_ahead(
                                reader.batches(
                                    row_groups_for_day(
                                        table_name, reader.row_groups, filed_under, day
                                    ),
                                    read_batch_rows(table_name),
                                )
                            ),
                        )
                        for filed_under, found in readers.items()
                        for reader in found
                    ],
                    store,
                    lambda table: behind.submit(writer.write, table),
                    quarantined.write,
                    *grids,
                    chunk_rows=read_batch_rows(table_name),
                    inspect_kept=lambda run: figures.update(_time_figures(table_name, run, day)),
                    rewrite=rewrite,
                )
                if not account.accounted():
                    raise RuntimeError(
                        f"{name} {context.partition_key}: row accounting does not add up"
                    )
                writer.metadata.update(account.digits_metadata())
                quarantine_path, preview = _publish_quarantine(
                    io_manager, name, symbol, day, quarantined.finish()
                )
        finally:
            for found in readers.values():
                for reader in found:
                    reader.close()
        files = [reader.provenance() for reader in readers.get(day, [])]
        bytes_read = {
            str(filed_under): sum(reader.bytes_read for reader in found)
            for filed_under, found in readers.items()
        }
        missing = [str(filed_under) for filed_under, found in readers.items() if not found]
        if str(day) in missing:
            context.log.warning(f"{name}: no {table_name} files filed under dt={day}")
        if quarantine_path:
            context.log.warning(
                f"{name}: {account.rows_quarantined} rows quarantined to {quarantine_path}: "
                f"{dict(account.quarantined)}"
            )
        figures["precision_loss_share"] = account.precision_loss_warnings / max(
            1, account.values_on_grid_checked
        )
        figures["quarantined_share"] = account.rows_quarantined / max(
            1, account.rows_kept + account.rows_quarantined
        )
        metadata = {
            **_metadata(account, files, bytes_read, missing, preview),
            "grid_source": grid_source,
            "price_step_inferred": f"1e{account.inferred_price_step_exponent}",
            "size_step_inferred": f"1e{account.inferred_size_step_exponent}",
            "content_sha256": writer.sha256,
            "path": MetadataValue.path(writer.location),
            "bytes": writer.size,
            **figures,
        }
        if quarantine_path:
            metadata["quarantine_path"] = MetadataValue.path(quarantine_path)
        yield Output(None, metadata=metadata)
        yield from _checks(figures, account, quality)
        yield _day_has_rows(
            table_name, day, len(readers[day]), account, lake.url, lake.exchange, symbol
        )

    return _raw


def _grids(
    context: AssetExecutionContext, lake: LakeResource, name: str, day: dt.date, symbol: str
) -> tuple[tuple[int | None, int | None], str]:
    """The price and size step exponents to use, and where they come from: settings, else the
    previous day's (a symbol's grid stays put from day to day; a change shows in the
    `grid_stable` check), else (None, None): inferred from the day's values."""
    grids = lake.grid_exponents(symbol)
    if grids != (None, None):
        return grids, "settings"
    previous = recorded_metadata(context, name, partition_key(day - ONE_DAY, symbol))
    steps = [previous.get("price_step"), previous.get("size_step")]
    if all(isinstance(step, str) and step.startswith("1e") for step in steps):
        return (int(steps[0][2:]), int(steps[1][2:])), "previous_day"
    return (None, None), "inferred"


def _refuse_inconsistent_day(
    lake_source: Lake,
    table_name: str,
    exchange: str,
    symbol: str,
    day: dt.date,
    files: list[SourceReader],
) -> None:
    """Raise, naming the file and the column, when the day's files disagree with each other
    (`lake.consistency`): before anything is read or written."""
    if not files:
        return
    problem = schema_drift(table_name, [(file.uri, file.columns) for file in files])
    if problem is None:
        others: dict[str, float | None] = {}
        for other in TABLES:
            if other != table_name:
                prices = lake_source.typical_prices(other, exchange, symbol, day)
                others[other] = float(np.median(prices)) if prices else None
        if any(price is not None for price in others.values()):
            problem = foreign_prices(
                table_name, [(file.uri, file.typical_price()) for file in files], others
            )
    if problem is not None:
        raise SourceSchemaError(problem)


def _day_has_rows(
    table_name: str,
    day: dt.date,
    files: int,
    account: RawAccount,
    lake_url: str,
    exchange: str,
    symbol: str,
) -> AssetCheckResult:
    """A day without this table's files (or rows) is visible, not an empty table that passes.
    Without deltas the day still has a book (a degraded strategy): a warning; without trades or
    snapshots it is an error."""
    return AssetCheckResult(
        check_name=check_names.DAY_HAS_ROWS,
        passed=files > 0 and account.rows_kept > 0,
        severity=AssetCheckSeverity.WARN if table_name == BOOK_DELTAS else AssetCheckSeverity.ERROR,
        metadata={
            "files_under_dt": files,
            "rows_kept": account.rows_kept,
            "rows_read": account.rows_read,
            "folder": f"{lake_url.rstrip('/')}/{table_name}/exchange={exchange}/symbol={symbol}"
            f"/dt={day}",
        },
    )


def _publish_quarantine(
    io_manager: ParquetIOManager, name: str, symbol: str, day: dt.date, rows: Run
) -> tuple[str | None, list[dict]]:
    """Quarantined rows, kept as read (plus a reason) beside the assets: nothing the vendor sent
    is lost. A run with nothing to quarantine removes an earlier run's file."""
    folder = f"{QUARANTINE}/{name}"
    if not rows.rows:
        io_manager.remove_partition(folder, symbol, day)
        return None, []
    preview: list[dict] = []
    with io_manager.partition_writer(folder, symbol, day) as writer:
        for batch in rows.batches():
            if len(preview) < 10:
                preview += batch.slice(0, 10 - len(preview)).to_pylist()
            writer.write(batch)
    return writer.location, preview


def _time_batches(kept: Run, columns: list[str]) -> Callable[[], Iterator[tuple[np.ndarray, ...]]]:
    def batches() -> Iterator[tuple[np.ndarray, ...]]:
        for batch in kept.batches(columns):
            yield tuple(pc.fill_null(batch[name], -1).to_numpy() for name in columns)

    return batches


def _time_figures(table_name: str, kept: Run, day: dt.date) -> dict[str, object]:
    """Clock skew and origin_time completeness of the day's rows as published (the run the
    cleaning kept, in table order; two or three passes over it, none over the Parquet file)."""
    skew = clock_skew_ms_batches(_time_batches(kept, ["origin_time", "received_time"]))
    completeness = OriginTimeCompleteness(day)
    if table_name == TRADES:
        # A trade's place is its id: origin_time must not go backwards along the ids. The table
        # is stored in time order, so (id, origin) pairs are sorted by id; trades are the
        # smallest table (16 bytes a trade).
        ids, origins = [], []
        for trade_id, origin in _time_batches(kept, ["trade_id", "origin_time"])():
            ids.append(trade_id)
            origins.append(origin)
        if ids:
            by_id = np.argsort(np.concatenate(ids), kind="stable")
            completeness.update(np.concatenate(origins)[by_id])
    else:
        for (origin,) in _time_batches(kept, ["origin_time"])():
            completeness.update(origin)
    return {
        **{f"clock_skew_{name}_ms": value for name, value in skew.items() if name != "rows"},
        **{f"origin_time_{name}": value for name, value in completeness.figures().items()},
    }


def _checks(figures: dict[str, object], account: RawAccount, quality: QualityResource):
    yield at_most(
        check_names.ORIGIN_TIME_COMPLETE,
        AssetCheckSeverity.ERROR,
        "origin_time_invalid_share",
        float(figures["origin_time_invalid_share"]),
        quality.max_origin_time_invalid_share,
        **{k: v for k, v in figures.items() if k.startswith("origin_time_")},
    )
    skew = {
        k.removeprefix("clock_skew_").removesuffix("_ms"): v
        for k, v in figures.items()
        if k.startswith("clock_skew_")
    }
    yield at_most(
        check_names.CLOCK_SKEW_WITHIN_LIMIT,
        AssetCheckSeverity.WARN,
        "clock_skew_excess_ms",
        skew_excess_ms(skew),
        quality.max_clock_skew_ms,
        threshold_key="threshold_ms",
        **{k: v for k, v in figures.items() if k.startswith("clock_skew_") and v is not None},
    )
    yield at_most(
        check_names.ROWS_QUARANTINED_WITHIN_LIMIT,
        AssetCheckSeverity.ERROR,
        "quarantined_share",
        float(figures["quarantined_share"]),
        quality.max_quarantined_share,
        rows_quarantined=account.rows_quarantined,
        rows_kept=account.rows_kept,
        quarantine_reasons=MetadataValue.json(dict(sorted(account.quarantined.items()))),
    )
    finer = {
        grid: (inferred, used)
        for grid, inferred, used in (
            ("price", account.inferred_price_step_exponent, account.price_step_exponent),
            ("size", account.inferred_size_step_exponent, account.size_step_exponent),
        )
        if inferred < used
    }
    yield AssetCheckResult(
        check_name=check_names.GRID_STABLE,
        passed=not finer,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "price_step": f"1e{account.price_step_exponent}",
            "price_step_inferred": f"1e{account.inferred_price_step_exponent}",
            "size_step": f"1e{account.size_step_exponent}",
            "size_step_inferred": f"1e{account.inferred_size_step_exponent}",
            "grids_needing_finer_step": MetadataValue.json(sorted(finer)),
        },
    )
    yield at_most(
        check_names.NO_PRECISION_LOSS,
        AssetCheckSeverity.WARN,
        "precision_loss_share",
        float(figures["precision_loss_share"]),
        quality.max_precision_loss_share,
    )


def build_raw_assets(partitions_def) -> list[AssetsDefinition]:
    return [
        build_raw_asset(name, table_name, description, partitions_def)
        for name, (table_name, description) in RAW_ASSETS.items()
    ]
