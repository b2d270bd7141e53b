"""One partition of a raw table: rows of the day from the neighbouring `dt` files, cleaned.

Pure: takes the normalized source tables (float prices as the vendor ships them) and returns the
day's rows with exact decimals, plus an account of every row read: kept, filed under this `dt` but
stamped on another day, duplicate, or quarantined with a reason. Nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.days import NS_PER_DAY, day_bounds_ns
from rlx_assets.engine.decimals import (
    digits_fit,
    scale_floats,
    scaled_columns_to_decimal,
)
from rlx_assets.engine.duplicates import first_of_duplicates
from rlx_assets.engine.grid_tally import GridTally, present_values
from rlx_assets.engine.out_of_place import WithoutMessages, messages_out_of_place
from rlx_assets.engine.raw_account import RawAccount
from rlx_assets.engine.runs import (
    MemoryRuns,
    Run,
    RunStore,
    RunWriter,
    SortedRuns,
    groups_whole,
    key_at,
    sort_table,
)
from rlx_assets.schema import BOOK, BOOK_DELTAS, SCHEMAS, TRADES, book_level_columns, event_time_ns


@dataclass
class RawDay(RawAccount):
    """A partition cleaned in memory (`clean_day`): the account plus the tables."""

    table: pa.Table | None = None
    quarantine: pa.Table | None = None  # the quarantined rows as read, with a `reason` column


def _price_columns(table_name: str) -> tuple[list[str], list[str]]:
    if table_name == TRADES:
        return ["price"], ["quantity"]
    if table_name == BOOK_DELTAS:
        return ["price"], ["size"]
    levels = book_level_columns()
    return [c for c in levels if c.endswith("_price")], [c for c in levels if c.endswith("_size")]


def _quarantine_reasons(table_name: str, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """A reason code per row (0 keeps the row) and the reasons' names by code; the first
    reason found wins. (Codes, not names per row: most rows are kept, and an array of a million
    names, compared to '' row by row, cost more than the checks.)"""
    rows = table.num_rows
    codes = np.zeros(rows, dtype=np.int32)
    names = [""]

    def mark(mask: np.ndarray, reason: str) -> None:
        if mask.any():
            codes[(codes == 0) & mask] = len(names)
            names.append(reason)

    def invalid_time(name: str) -> np.ndarray:
        return ~pc.fill_null(pc.greater(table[name], 0), False).to_numpy(zero_copy_only=False)

    mark(invalid_time("origin_time") & invalid_time("received_time"), "no_valid_time")
    if FAR in table.column_names:
        mark(table[FAR].to_numpy(zero_copy_only=False), FAR_REASON)
    prices, sizes = _price_columns(table_name)
    floats: dict[str, np.ndarray] = {}  # each column converted once (a book level's twice used)

    def values_of(name: str) -> np.ndarray:
        if name not in floats:
            column = table[name].to_numpy(zero_copy_only=False)
            floats[name] = column.astype(np.float64, copy=False)
        return floats[name]

    for name in prices + sizes:
        values = values_of(name)
        is_size = name in sizes
        missing = np.isnan(values)
        if table_name == BOOK:
            # Empty vendor levels are null on purpose; a level is bad only when half present.
            partner = (
                name.replace("_price", "_size") if not is_size else name.replace("_size", "_price")
            )
            mark(missing != np.isnan(values_of(partner)), f"half_empty_level:{name}")
            missing = np.zeros(rows, dtype=bool)
        mark(missing, f"null:{name}")
        mark(np.isinf(values), f"not_finite:{name}")
        with np.errstate(invalid="ignore"):
            if is_size and table_name == BOOK_DELTAS:
                mark(values < 0, f"negative:{name}")
            else:
                mark(values <= 0, f"not_positive:{name}")
    if table_name == TRADES:
        known = pc.is_in(table["side"], value_set=pa.array(["buy", "sell"]))
        mark(~pc.fill_null(known, False).to_numpy(zero_copy_only=False), "side_not_buy_or_sell")
        mark(table["trade_id"].is_null().to_numpy(zero_copy_only=False), "null:trade_id")
    else:
        mark(
            table["sequence_number"].is_null().to_numpy(zero_copy_only=False),
            "null:sequence_number",
        )
    if table_name == BOOK_DELTAS:
        mark(table["side_is_bid"].is_null().to_numpy(zero_copy_only=False), "null:side_is_bid")
    return codes, np.asarray(names, dtype=object)


# Sort keys of a partition: int64 columns added while reading, compared left to right; `_order`
# (source index << 40 | row in source) makes every key unique and keeps arrival order in ties.
ORDER = "_order"
TIME = "_time"  # the time that places a row in a day
SEQUENCE_KEY = "_sequence"
TRADE_ID_KEY = "_trade_id"
FAR = "_far"  # stamped far from the day it was filed under: quarantined there
_SOURCE_SHIFT = 40
_HELPER_COLUMNS = (ORDER, TIME, SEQUENCE_KEY, TRADE_ID_KEY, FAR)
FAR_REASON = "time_far_from_filed_dt"
# A collector files a row under the day it received it, so its time lies within a day of that
# day; a row stamped further off (another year, or a time in ms or us read as ns) is wrong.
FAR_FROM_FILED_NS = NS_PER_DAY
# Rows of one delta message share a sequence number and a time; the same number in another
# file a day later is another message (a feed whose numbers start again), not the same one.
MESSAGE_SPAN_NS = 60 * 10**9


def sort_key(table_name: str) -> list[str]:
    """Trades by time then id; book rows and deltas by sequence number (a delta message's rows
    stay together), each then in arrival order."""
    if table_name == TRADES:
        return [TIME, TRADE_ID_KEY, ORDER]
    return [SEQUENCE_KEY, ORDER]


def _group_key(table_name: str) -> list[str]:
    """Rows that can duplicate each other, or form one message, share these key columns."""
    return sort_key(table_name)[:-1]


@dataclass(frozen=True)
class Source:
    """Rows filed under one `dt` folder (one file, or part of one), in batches as read."""

    filed_under: dt.date
    batches: Iterable[pa.Table]  # normalized (`schema.normalize_table`)


class _Partition:
    """The passes of `clean_partition` and the state they share."""

    def __init__(self, table_name: str, day: dt.date, store: RunStore) -> None:
        self.table_name = table_name
        self.day = day
        self.start, self.end = day_bounds_ns(day)
        self.account = RawAccount()
        self.store = store
        self.key = sort_key(table_name)
        self.columns = SCHEMAS[table_name].names
        self.sources: list[dt.date] = []  # per source: the dt it was filed under
        self.neighbour: list[bool] = []  # per source: filed under another dt than the day's
        self.grids = {"price": GridTally(), "size": GridTally()}
        # Per kept message (book tables, in sequence order): the time of its first row; one
        # int64 a message, for `messages_out_of_place`.
        self.message_times: list[np.ndarray] = []

    def with_keys(self, table: pa.Table, source: int, first_row: int) -> pa.Table:
        """The batch with its sort keys; a row with no valid time keeps the day it was filed
        under (it is quarantined, and must be so in one partition only)."""
        order = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
        order += source << _SOURCE_SHIFT
        time = event_time_ns(table)
        filed_start, filed_end = day_bounds_ns(self.sources[source])
        far = (time > 0) & (
            (time < filed_start - FAR_FROM_FILED_NS) | (time >= filed_end + FAR_FROM_FILED_NS)
        )
        time = np.where((time > 0) & ~far, time, filed_start)
        table = (
            table.append_column(ORDER, pa.array(order))
            .append_column(TIME, pa.array(time))
            .append_column(FAR, pa.array(far))
        )
        if self.table_name == TRADES:
            ids = pc.fill_null(table["trade_id"], -1)
            return table.append_column(TRADE_ID_KEY, ids)
        return table.append_column(SEQUENCE_KEY, pc.fill_null(table["sequence_number"], -1))

    def keyed_chunks(self, sources: Iterable[Source], chunk_rows: int) -> Iterator[pa.Table]:
        """Every row read, with its keys, in chunks of at most `chunk_rows` as read."""
        for index, source in enumerate(sources):
            self.sources.append(source.filed_under)
            self.neighbour.append(source.filed_under != self.day)
            row = 0
            for batch in source.batches:
                for offset in range(0, batch.num_rows, chunk_rows):
                    chunk = batch.slice(offset, chunk_rows)
                    yield self.with_keys(chunk, index, row)
                    row += chunk.num_rows
            self.account.rows_read += row

    def read(self, sources: Iterable[Source], chunk_rows: int) -> SortedRuns:
        """Pass 1: every row read, keyed and sorted in chunks into runs."""
        runs = SortedRuns(self.store, self.key)
        for chunk in self.keyed_chunks(sources, chunk_rows):
            runs.add(chunk)
        return runs

    def place(self, piece: pa.Table, quarantine: Callable[[pa.Table], None]) -> pa.Table:
        """Pass 2 on whole groups in key order: the day's rows kept, others counted, bad rows
        quarantined, duplicates dropped."""
        time = piece[TIME].to_numpy()
        if self.table_name == BOOK_DELTAS:
            time = _message_time(
                piece[SEQUENCE_KEY].to_numpy(), time, piece[ORDER].to_numpy() >> _SOURCE_SHIFT
            )
        in_day = (time >= self.start) & (time < self.end)
        codes, names = _quarantine_reasons(self.table_name, piece)
        bad = codes != 0
        self.account.rows_other_days += int((~in_day).sum())
        rejected = in_day & bad
        if rejected.any():
            reasons = names[codes[rejected]]
            self.account.quarantined.update(reasons.tolist())
            rows = piece.filter(pa.array(rejected)).select(self.columns)
            quarantine(rows.append_column("reason", pa.array(reasons, pa.string())))
        kept = _rows_where(piece, in_day & ~bad)
        unique = first_of_duplicates(kept, self.columns, _group_key(self.table_name))
        self.account.duplicates_dropped += int(kept.num_rows - unique.sum())
        kept = _rows_where(kept, unique)
        sources = kept[ORDER].to_numpy() >> _SOURCE_SHIFT
        self.account.rows_from_neighbour_dt += int(np.asarray(self.neighbour)[sources].sum())
        origin = pc.fill_null(pc.greater(kept["origin_time"], 0), False).to_numpy()
        self.account.origin_time_invalid += int((~origin).sum())
        if self.table_name != TRADES and kept.num_rows:
            # Pieces hold whole groups, so a message never continues from the previous piece.
            sequence = kept[SEQUENCE_KEY].to_numpy()
            first = np.ones(sequence.size, dtype=bool)
            first[1:] = sequence[1:] != sequence[:-1]
            times = kept.select(["origin_time", "received_time"])
            self.message_times.append(event_time_ns(times.filter(pa.array(first))))
        kept = kept.select(self.columns)
        prices, sizes = _price_columns(self.table_name)
        self.grids["price"].add(present_values(kept, prices))
        self.grids["size"].add(present_values(kept, sizes))
        self.account.rows_kept += kept.num_rows
        return kept


def _rows_where(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows where `keep` holds; the table itself when that is every row (the usual piece:
    a filter would copy every column)."""
    return table if keep.all() else table.filter(pa.array(keep))


def clean_partition(
    table_name: str,
    day: dt.date,
    sources: Callable[[], Iterable[Source]],
    store: RunStore,
    write: Callable[[pa.Table], None],
    quarantine: Callable[[pa.Table], None],
    price_exponent: int | None = None,
    size_exponent: int | None = None,
    chunk_rows: int = 1_000_000,
    inspect_kept: Callable[[Run], None] | None = None,
    rewrite: Callable[[], None] | None = None,
) -> RawAccount:
    """The rows of `day` from the `dt` folders around it, cleaned in bounded memory.

    Rows belong to the day of their origin_time (received_time when origin_time is missing); a
    delta message goes whole to the day of its first row as read. Exact duplicate rows are
    dropped. Grids come from settings (exponents) or are inferred from the day's values.

    Three passes, none holding the day: the rows read are sorted in chunks into runs of
    `store`; their merge, whole groups at a time, is placed (kept, another day's, quarantined,
    duplicate) into one more run, in order; that run is converted to exact decimals and handed
    to `write` in batches. Quarantined rows go to `quarantine` as read, with a `reason`.
    `inspect_kept` is given that run (the day's rows in table order, before the decimals), for
    figures that need more passes over them; it runs on a thread beside the conversion.

    Deltas, whose key is the sequence number, usually come in order (a collector files rows as
    it receives them, the neighbour days' rows before and after the day's own): their rows are
    placed as read, without runs. A chunk that goes back in the order ends that
    attempt: `sources()` (a fresh reading of the same sources) is then read again, and sorted.

    Given `rewrite` (which discards what was handed to `write`), the kept rows are also
    converted and written as they are placed, on the grids the first of them show, instead of
    in a pass of their own once the day's grids are known: on a busy day that pass is the
    longest after the placing, and the writer idles until then. The day's figures must then
    prove that guess (`_Speculation.holds`); where they do not, `rewrite` is called and the
    rows are written again as without it. The output is the same either way.
    """
    partition = _Partition(table_name, day, store)
    held = store.create()  # the quarantined rows, handed on once the placing is final
    given = {"price": price_exponent, "size": size_exponent}
    speculation = _Speculation(partition, given, write, rewrite) if rewrite is not None else None
    kept: RunWriter | None
    if table_name != BOOK_DELTAS:
        # Trades are keyed by time, which a collector's files interleave near midnight; the
        # wide snapshots gained no time placed as read, and held more memory.
        kept = _place_sorted(partition, sources(), chunk_rows, held, speculation)
    else:
        try:
            kept = _place_in_order(partition, sources(), chunk_rows, held, speculation)
        except _OutOfOrder:
            kept = None  # (outside this block, the first reading's iterators are closed)
        if kept is None:
            partition = _Partition(table_name, day, store)
            held = store.create()
            if speculation is not None:
                speculation.discard()
                speculation = _Speculation(partition, given, write, speculation.rewrite)
            kept = _place_sorted(partition, sources(), chunk_rows, held, speculation)
    for rows in held.finish().batches():
        quarantine(rows)
    account = partition.account
    inferred = {name: tally.exponent() for name, tally in partition.grids.items()}
    exponents = {name: given[name] if given[name] is not None else inferred[name] for name in given}
    account.price_step_exponent, account.size_step_exponent = exponents["price"], exponents["size"]
    account.inferred_price_step_exponent = inferred["price"]
    account.inferred_size_step_exponent = inferred["size"]
    largest = {name: tally.largest for name, tally in partition.grids.items()}
    account.digits = {name: max(0, -exponent) for name, exponent in exponents.items()}
    written = False
    kept_run: Run = kept.finish()
    out_of_place = (
        messages_out_of_place(partition.message_times)
        if table_name != TRADES
        else np.zeros(0, dtype=np.int64)
    )
    if speculation is not None:
        if speculation.holds(exponents, largest, out_of_place):
            speculation.settle(account)
            account.written_while_placing = True
            if not speculation.started:  # the file still says what the table holds
                table, _ = _to_decimals(
                    table_name, SCHEMAS[table_name].empty_table(), account, exponents, largest
                )
                write(table)
            if inspect_kept is not None:
                inspect_kept(kept_run)
            return account
        speculation.discard()
    if out_of_place.size:
        kept_run = WithoutMessages(kept_run, out_of_place, account, quarantine)
    # The figures' own passes over the kept rows run beside the conversion and the writing.
    with ThreadPoolExecutor(1, thread_name_prefix="rlx-inspect-kept") as beside:
        inspected = beside.submit(inspect_kept, kept_run) if inspect_kept is not None else None
        for batch in kept_run.batches():
            table, digits = _to_decimals(table_name, batch, account, exponents, largest)
            account.digits = {name: max(account.digits[name], digits[name]) for name in digits}
            write(table)
            written = True
        if not written:  # the file still says what the table holds
            table, _ = _to_decimals(
                table_name, SCHEMAS[table_name].empty_table(), account, exponents, largest
            )
            write(table)
        if inspected is not None:
            inspected.result()
    return account


class _OutOfOrder(Exception):
    """A chunk's first key is below the last key placed."""


def _place_in_order(
    partition: _Partition,
    sources: Iterable[Source],
    chunk_rows: int,
    held: RunWriter,
    speculation: _Speculation | None = None,
) -> RunWriter:
    """Passes 1 and 2 in one, for input in key order: each chunk, sorted, is placed as it comes
    (whole groups at a time); raises _OutOfOrder at the first chunk that is not."""
    last: tuple[int, ...] | None = None

    def in_order() -> Iterator[pa.Table]:
        nonlocal last
        for chunk in partition.keyed_chunks(sources, chunk_rows):
            if chunk.num_rows == 0:
                continue
            chunk = sort_table(chunk, partition.key)
            first = key_at(chunk, partition.key, 0)
            if last is not None and first < last:
                raise _OutOfOrder
            last = key_at(chunk, partition.key, chunk.num_rows - 1)
            yield chunk

    kept = _placed(partition, in_order(), held, speculation)
    partition.account.sorted_runs = 1 if last is not None else 0
    return kept


def _place_sorted(
    partition: _Partition,
    sources: Iterable[Source],
    chunk_rows: int,
    held: RunWriter,
    speculation: _Speculation | None = None,
) -> RunWriter:
    """Pass 1, the rows sorted into runs; pass 2, their merge placed whole groups at a time."""
    runs = partition.read(sources, chunk_rows)
    merged = runs.merged()
    partition.account.sorted_runs = len(runs.runs)
    return _placed(partition, merged, held, speculation)


def _placed(
    partition: _Partition,
    rows: Iterator[pa.Table],
    held: RunWriter,
    speculation: _Speculation | None = None,
) -> RunWriter:
    """Pass 2: rows in key order placed whole groups at a time into a new run (the kept rows,
    also written as placed when `speculation`); quarantined rows go to `held`."""
    kept = partition.store.create()
    for piece in groups_whole(rows, _group_key(partition.table_name)):
        placed = partition.place(piece, held.write)
        kept.write(placed)
        if speculation is not None:
            speculation.write(placed)
    return kept


class _Speculation:
    """Kept rows converted and written as they are placed, before the day's grids are known:
    on the grids of the first rows kept (or those given), each chunk's digits bounded by the
    largest value seen so far. `holds` says whether the whole day proves that right."""

    def __init__(
        self,
        partition: _Partition,
        given: dict[str, int | None],
        write: Callable[[pa.Table], None],
        rewrite: Callable[[], None],
    ) -> None:
        self._partition = partition
        self._given = given
        self._write = write
        self.rewrite = rewrite
        self._exponents: dict[str, int] | None = None
        self._digits: dict[str, int] = {}  # the most any chunk needed
        self._figures = RawAccount()  # what the conversion counts, kept apart until it holds

    @property
    def started(self) -> bool:
        return self._exponents is not None

    def write(self, kept: pa.Table) -> None:
        if not kept.num_rows:
            return
        grids = self._partition.grids
        if self._exponents is None:
            self._exponents = {
                name: exponent if exponent is not None else grids[name].exponent()
                for name, exponent in self._given.items()
            }
        largest = {name: tally.largest for name, tally in grids.items()}
        table, digits = _to_decimals(
            self._partition.table_name, kept, self._figures, self._exponents, largest
        )
        for name, needed in digits.items():
            self._digits[name] = max(self._digits.get(name, needed), needed)
        self._write(table)

    def holds(
        self, exponents: dict[str, int], largest: dict[str, float], out_of_place: np.ndarray
    ) -> bool:
        """What was written is what the day's pass would write: the same grids, digits the
        day's largest values leave as they were, and no message to take out. (Where nothing
        was written, it holds.)"""
        if self._exponents is None:
            return not out_of_place.size
        return (
            not out_of_place.size
            and self._exponents == exponents
            and all(
                digits_fit(digits, exponents[name], largest[name])
                for name, digits in self._digits.items()
            )
        )

    def discard(self) -> None:
        """Whatever was written goes (`rewrite`)."""
        if self.started:
            self.rewrite()

    def settle(self, account: RawAccount) -> None:
        """The conversion's figures into the day's `account`, once `holds`."""
        account.precision_loss_warnings += self._figures.precision_loss_warnings
        account.values_on_grid_checked += self._figures.values_on_grid_checked
        for name, digits in self._digits.items():
            account.digits[name] = max(account.digits[name], digits)


def clean_day(
    table_name: str,
    day: dt.date,
    sources: list[tuple[dt.date, pa.Table]],
    price_exponent: int | None = None,
    size_exponent: int | None = None,
    chunk_rows: int = 1_000_000,
) -> RawDay:
    """`clean_partition` in memory, for tables that fit: the day's rows as one table."""
    written: list[pa.Table] = []
    quarantined: list[pa.Table] = []
    account = clean_partition(
        table_name,
        day,
        lambda: [Source(filed_under, [table]) for filed_under, table in sources],
        MemoryRuns(),
        written.append,
        quarantined.append,
        price_exponent,
        size_exponent,
        chunk_rows,
        rewrite=written.clear,
    )
    table = pa.concat_tables(written).combine_chunks()
    return RawDay(
        **vars(account),
        table=table.replace_schema_metadata(account.digits_metadata()),
        quarantine=pa.concat_tables(quarantined) if quarantined else None,
    )


def _message_time(sequence: np.ndarray, time: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Every row of a delta message (rows sorted by sequence, then arrival) takes the time of
    the message's first row as read. Rows of one sequence number from two files, more than
    MESSAGE_SPAN_NS apart, are two messages: a feed that numbers from 1 again each day must not
    send a day's messages to the day before. (Within a file, an odd stamp stays with its
    message.)"""
    first_of_run = np.ones(sequence.size, dtype=bool)
    first_of_run[1:] = (sequence[1:] != sequence[:-1]) | (
        (source[1:] != source[:-1]) & (np.abs(time[1:] - time[:-1]) > MESSAGE_SPAN_NS)
    )
    return time[first_of_run][np.cumsum(first_of_run) - 1]


def _to_decimals(
    table_name: str,
    table: pa.Table,
    account: RawAccount,
    exponents: dict[str, int],
    largest: dict[str, float],
) -> tuple[pa.Table, dict[str, int]]:
    """Prices and sizes as exact decimals on the day's grids, an `off_grid` flag per row, and
    the digits this batch needs."""
    price_names, size_names = _price_columns(table_name)
    off_grid = np.zeros(table.num_rows, dtype=bool)
    digits = {}
    for names, key in ((price_names, "price"), (size_names, "size")):
        matrix = (
            np.stack(
                [table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in names],
                axis=1,
            )
            if table.num_rows
            else np.zeros((0, len(names)))
        )
        present = ~np.isnan(matrix)
        scaled = scale_floats(np.where(present, matrix, 0.0).ravel(), exponents[key], largest[key])
        flags = scaled.off_grid.reshape(matrix.shape) & present
        off_grid |= flags.any(axis=1)
        account.precision_loss_warnings += int(flags.sum())
        account.values_on_grid_checked += int(present.sum())
        digits[key] = scaled.digits
        columns = scaled_columns_to_decimal(
            scaled.ints.reshape(matrix.shape), scaled.digits, present
        )
        for name, column in zip(names, columns, strict=True):
            table = table.set_column(table.schema.get_field_index(name), name, column)
    return table.append_column("off_grid", pa.array(off_grid)), digits
