"""reconstructed_book, book_state and unified_events, with the checks computed alongside."""

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetsDefinition,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
    multi_asset,
)

from rlx_assets import check_names
from rlx_assets.background import WriteBehind, read_ahead
from rlx_assets.defs.book.streaming import (
    Checkpoints,
    StreamReport,
    delta_sequences_meet,
    file_identity,
    fingerprint,
    stream_day,
)
from rlx_assets.defs.checks import partitioned_check
from rlx_assets.defs.errors import user_errors
from rlx_assets.engine.book_tables import day_digits, recorded_digits
from rlx_assets.engine.book_types import message_starts
from rlx_assets.engine.day_replay import DayReplay
from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.engine.events import (
    EVENT_SCHEMA,
    BatchSource,
    EventTally,
    InputOutOfOrder,
    unified_event_batches,
)
from rlx_assets.engine.merge import SpillReport
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.engine.reconstruction import Reconstruction, opening_burst
from rlx_assets.partitions import day_and_symbol, previous_day
from rlx_assets.resources.checkpoint_store import CheckpointStore
from rlx_assets.resources.io_manager import ALLOW_MISSING, ParquetIOManager
from rlx_assets.resources.parquet_files import PartitionWriter
from rlx_assets.resources.partition_file import PartitionFile
from rlx_assets.resources.quality import QualityResource
from rlx_assets.resources.replay import ReplayResource
from rlx_assets.resources.telemetry import observed
from rlx_assets.threaded_executor import step_priority

RECONSTRUCTED_BOOK = "reconstructed_book"
BOOK_STATE = "book_state"
UNIFIED_EVENTS = "unified_events"


def _reconstruct(
    deltas: PartitionFile,
    snapshots: PartitionFile,
    previous_state: pa.Table | None,
    day: dt.date,
    writer: PartitionWriter,
    chunk_rows: int,
    checkpoint_store: CheckpointStore | None,
) -> tuple[Reconstruction, StreamReport]:
    """full_replay streamed in chunks when the day has deltas; otherwise the strategies without
    deltas, in memory (vendor snapshots only: a small table)."""
    if deltas.metadata.num_rows == 0:
        result = reconstruct_day(deltas.read(), snapshots.read(), previous_state, day=day)
        writer.write(result.book)
        return result, StreamReport()
    recorded = (
        recorded_digits(deltas.metadata.metadata),
        recorded_digits(snapshots.metadata.metadata),
    )
    if None in recorded:  # written before digits were recorded: read the columns once
        price_digits, size_digits = day_digits(deltas.read(), snapshots.read(), previous_state)
    else:
        price_digits, size_digits = day_digits(
            deltas.schema_arrow.empty_table(), snapshots.schema_arrow.empty_table(), previous_state
        )
        price_digits = max(price_digits, *(r[0] for r in recorded))
        size_digits = max(size_digits, *(r[1] for r in recorded))
    has_state = previous_state is not None and previous_state.num_rows > 0
    # Whether a vendor snapshot can seed a cold day takes a pass over every sequence number;
    # a day that opens with a whole book (the usual cold start) does not need to know.
    seed_from_vendor = (
        not has_state
        and not _opens_with_a_burst(deltas)
        and delta_sequences_meet(
            deltas, snapshots.read(columns=["sequence_number"]).column(0).to_numpy()
        )
    )
    day_replay = DayReplay(previous_state, price_digits, size_digits, day, seed_from_vendor)
    checkpoints = None
    if checkpoint_store is not None:
        inputs = fingerprint(
            file_identity(deltas),
            file_identity(snapshots),
            None if previous_state is None else previous_state.to_pydict(),
            chunk_rows,
        )
        checkpoints = Checkpoints(checkpoint_store, inputs)
    return stream_day(deltas, snapshots, day_replay, writer, chunk_rows, checkpoints)


def _opens_with_a_burst(deltas: PartitionFile) -> bool:
    """Does the first delta message carry a whole book (as `DayReplay` decides on its first
    chunk)? Read from the first rows only; unsure (one message fills them) counts as no."""
    batch = next(deltas.iter_batches(100_000, columns=["sequence_number", "side_is_bid"]), None)
    if batch is None:
        return False
    starts = message_starts(batch.column(0).to_numpy())
    return starts.size > 2 and opening_burst(starts, batch.column(1).to_numpy(False))


def _batches(table: PartitionFile) -> BatchSource:
    """Batches decoded on a thread of their own while the merge runs."""
    return lambda columns, rows: read_ahead(table.iter_batches(rows, columns=columns))


def _write_events(batches: Iterator[pa.Table], writer: PartitionWriter) -> None:
    """Each merged table written on a background thread while the next one is merged."""
    behind = WriteBehind()
    try:
        for events in batches:
            behind.submit(writer.write, events)
    except BaseException:
        behind.close(raise_errors=False)
        raise
    behind.close()
    if writer.rows == 0:
        writer.write(EVENT_SCHEMA.empty_table())


def _write_unified_events(
    io_manager: ParquetIOManager,
    symbol: str,
    day: dt.date,
    spill_parent: str | None,
    sort: frozenset[str],
    spill: SpillReport,
    tally: EventTally,
) -> PartitionWriter:
    with (
        io_manager.read_partition("raw_trades", symbol, day) as trades,
        io_manager.read_partition("raw_book_deltas", symbol, day) as deltas,
        io_manager.read_partition(RECONSTRUCTED_BOOK, symbol, day) as book,
        io_manager.partition_writer(UNIFIED_EVENTS, symbol, day) as writer,
        tempfile.TemporaryDirectory(prefix="rlx-events-", dir=spill_parent) as spill_folder,
        contextlib.closing(
            unified_event_batches(
                _batches(trades),
                _batches(deltas),
                _batches(book),
                Path(spill_folder),
                spill,
                tally,
                sort=sort,
            )
        ) as batches,
    ):
        _write_events(batches, writer)
    return writer


def build_book_assets(partitions_def) -> list[AssetsDefinition]:
    @multi_asset(
        partitions_def=partitions_def,
        group_name="book",
        outs={
            RECONSTRUCTED_BOOK: AssetOut(
                description=(
                    "The top 20 levels after every delta message (one row per sequence_number), "
                    "in the vendor book's wide layout, with resynced/repaired_levels flags and, "
                    "where a vendor snapshot has the same sequence number, whether the rebuilt "
                    "book matched it before any resync."
                ),
                kinds={"parquet"},
            ),
            BOOK_STATE: AssetOut(
                description="The full-depth book at the end of the day; the next day starts there.",
                kinds={"parquet"},
            ),
        },
        # The raw tables are streamed from storage in chunks, not loaded as inputs.
        deps=["raw_book_deltas", "raw_book_snapshots"],
        ins={
            "previous_book_state": AssetIn(
                BOOK_STATE, partition_mapping=previous_day, metadata={ALLOW_MISSING: True}
            ),
        },
        check_specs=[
            partitioned_check(
                check_names.BOOK_NEVER_CROSSED,
                partitions_def=partitions_def,
                asset=RECONSTRUCTED_BOOK,
                blocking=True,
                description="No published row has best bid >= best ask (blocks unified_events).",
            ),
            partitioned_check(
                check_names.GAPS_FILLED,
                partitions_def=partitions_def,
                asset=RECONSTRUCTED_BOOK,
                blocking=True,
                description="Every detected gap was resynced or confirmed by a later vendor "
                "snapshot (blocks unified_events).",
            ),
            partitioned_check(
                check_names.MID_DEVIATION_WITHIN_LIMIT,
                partitions_def=partitions_def,
                asset=RECONSTRUCTED_BOOK,
                description="Rebuilt mid vs vendor snapshot mid (before resync), max in bps.",
            ),
            partitioned_check(
                check_names.TOP20_MATCHES_VENDOR,
                partitions_def=partitions_def,
                asset=RECONSTRUCTED_BOOK,
                description="Share of vendor snapshots whose 20 levels the rebuilt book equalled.",
            ),
            partitioned_check(
                check_names.BOOK_REPLAYED_FROM_DELTAS,
                partitions_def=partitions_def,
                asset=RECONSTRUCTED_BOOK,
                description="The book was replayed from the day's deltas (full_replay); a day "
                "without deltas is degraded to the vendor snapshots' 20 levels.",
            ),
        ],
    )
    @observed
    @user_errors
    def reconstruct(
        context: AssetExecutionContext,
        quality: QualityResource,
        replay: ReplayResource,
        io_manager: ResourceParam[ParquetIOManager],
        previous_book_state: pa.Table | None,
    ):
        day, symbol = day_and_symbol(context.partition_key)
        folder = io_manager.checkpoint_folder(RECONSTRUCTED_BOOK, symbol, day)
        with (
            io_manager.read_partition("raw_book_deltas", symbol, day) as deltas,
            io_manager.read_partition("raw_book_snapshots", symbol, day) as snapshots,
            io_manager.partition_writer(RECONSTRUCTED_BOOK, symbol, day) as writer,
        ):
            result, report = _reconstruct(
                deltas, snapshots, previous_book_state, day, writer, replay.chunk_rows, folder
            )
        folder.clear()  # published: the checkpoints are spent
        if report.resumed_from_chunk:
            context.log.info(
                f"resumed after chunk {report.resumed_from_chunk} "
                f"({report.recovery_seconds:.2f} s to recover)"
            )
        if result.strategy != "full_replay":
            context.log.warning(f"no book deltas: strategy {result.strategy}")
        stats = result.stats
        if result.cold_start:
            context.log.info(f"cold start: seeded from {result.seed}")
        # book_state first: Dagster orders a multi-asset's outputs by dependency.
        yield Output(
            result.state,
            output_name=BOOK_STATE,
            metadata={
                "dagster/row_count": result.state.num_rows,
                "bid_levels": stats["end_depth_bids"],
                "ask_levels": stats["end_depth_asks"],
            },
        )
        yield Output(
            None,  # written chunk by chunk above
            output_name=RECONSTRUCTED_BOOK,
            metadata={
                "dagster/row_count": writer.rows,
                "path": MetadataValue.path(writer.location),
                "bytes": writer.size,
                "streaming": stats.get("chunks", 1) > 1,
                "checkpoints_written": report.checkpoints_written,
                "resumed_from_chunk": report.resumed_from_chunk,
                "recovery_seconds": report.recovery_seconds,
                "strategy": result.strategy,
                "cold_start": result.cold_start,
                "seed": result.seed,
                "messages": result.messages,
                "messages_before_seed": result.messages_before_seed,
                **{
                    name: MetadataValue.json(value) if isinstance(value, list) else value
                    for name, value in stats.items()
                    if not name.startswith("end_")
                },
            },
        )
        crossed = int(stats["crossed_books_published"])
        yield AssetCheckResult(
            check_name=check_names.BOOK_NEVER_CROSSED,
            asset_key=RECONSTRUCTED_BOOK,
            passed=crossed == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"crossed_books_published": crossed, "threshold": 0},
        )
        detected, filled = int(stats["gaps_detected"]), int(stats["gaps_filled"])
        yield AssetCheckResult(
            check_name=check_names.GAPS_FILLED,
            asset_key=RECONSTRUCTED_BOOK,
            passed=filled == detected,
            severity=AssetCheckSeverity.ERROR,
            metadata={
                "gaps_detected": detected,
                "gaps_filled": filled,
                "unfilled": detected - filled,
                "threshold_unfilled": 0,
                "sequence_id_gaps": int(stats["sequence_id_gaps"]),
            },
        )
        deviation = float(stats["mid_deviation_max_bps"])
        yield AssetCheckResult(
            check_name=check_names.MID_DEVIATION_WITHIN_LIMIT,
            asset_key=RECONSTRUCTED_BOOK,
            passed=deviation <= quality.max_mid_deviation_bps,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "mid_deviation_max_bps": deviation,
                "mid_deviation_p99_bps": float(stats["mid_deviation_p99_bps"]),
                "threshold_bps": quality.max_mid_deviation_bps,
                "vendor_snapshots_compared": int(stats["vendor_snapshots_compared"]),
            },
        )
        share = float(stats["top20_match_share"])
        yield AssetCheckResult(
            check_name=check_names.TOP20_MATCHES_VENDOR,
            asset_key=RECONSTRUCTED_BOOK,
            passed=share >= quality.min_top20_match_share,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "top20_match_share": share,
                "threshold": quality.min_top20_match_share,
                "gaps_detected": int(stats["gaps_detected"]),
                "gaps_filled": int(stats["gaps_filled"]),
            },
        )
        yield AssetCheckResult(
            check_name=check_names.BOOK_REPLAYED_FROM_DELTAS,
            asset_key=RECONSTRUCTED_BOOK,
            passed=result.strategy == "full_replay",
            severity=AssetCheckSeverity.WARN,
            metadata={
                "strategy": result.strategy,
                "expected": "full_replay",
                "delta_messages": result.messages,
            },
        )

    @asset(
        name=UNIFIED_EVENTS,
        partitions_def=partitions_def,
        # The longest step after the book: started before the quality assets beside it.
        op_tags=step_priority(1),
        group_name="book",
        # Streamed from storage, not loaded as inputs. reconstructed_book's blocking checks
        # still stop this asset when they fail.
        deps=["raw_trades", "raw_book_deltas", RECONSTRUCTED_BOOK],
        description=(
            "One chronological stream of TRADE, BOOK_DELTA and BOOK_SNAPSHOT events (snapshots "
            "from the validated reconstructed book), ordered by event_timestamp, type, id."
        ),
        kinds={"parquet"},
        check_specs=[
            partitioned_check(
                check_names.EVENTS_CHRONOLOGICAL,
                partitions_def=partitions_def,
                asset=UNIFIED_EVENTS,
                description="Events in (event_timestamp, type rank, id) order, all inside the day.",
            )
        ],
    )
    @observed
    @user_errors
    def unified_events_asset(
        context: AssetExecutionContext, io_manager: ResourceParam[ParquetIOManager]
    ):
        day, symbol = day_and_symbol(context.partition_key)
        spill_parent = io_manager.spill_parent()  # beside local storage, as the raw assets'
        if spill_parent is not None:
            os.makedirs(spill_parent, exist_ok=True)
        # The inputs are trusted to be in event order (a sound feed's are) and checked as they
        # stream, instead of by a pass of their own; one found out of order is sorted in a
        # fresh attempt, whose file replaces what the first one wrote.
        sort: set[str] = set()
        while True:
            tally, spill = EventTally(*day_bounds_ns(day)), SpillReport()
            try:
                writer = _write_unified_events(
                    io_manager, symbol, day, spill_parent, frozenset(sort), spill, tally
                )
                break
            except InputOutOfOrder as out_of_order:
                if out_of_order.event_type in sort:  # sorted inputs are not checked: never
                    raise
                context.log.info(f"{out_of_order}: sorting it first, in a fresh attempt")
                sort.add(out_of_order.event_type)
        by_type = tally.by_type
        yield Output(
            None,  # written batch by batch above
            metadata={
                "dagster/row_count": writer.rows,
                "path": MetadataValue.path(writer.location),
                "bytes": writer.size,
                "events_by_type": MetadataValue.json(by_type),
                "trade_to_book_ratio": by_type.get("TRADE", 0)
                / max(1, by_type.get("BOOK_DELTA", 0)),
                "spilled": spill.runs > 0,
                "spilled_runs": spill.runs,
                "spill_bytes": spill.bytes,
            },
        )
        disorder, outside = tally.out_of_order_pairs, tally.outside_day
        yield AssetCheckResult(
            check_name=check_names.EVENTS_CHRONOLOGICAL,
            passed=disorder == 0 and outside == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"out_of_order_pairs": disorder, "outside_day": outside, "threshold": 0},
        )

    return [reconstruct, unified_events_asset]
