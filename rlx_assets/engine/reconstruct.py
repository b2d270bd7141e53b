"""A day of raw deltas and vendor snapshots in, the reconstructed book and end-of-day state out.

The `full_replay` strategy: every delta message is replayed (see `book.py`), starting from the
previous day's full-depth state when there is one (exact continuity across midnight), else from the
day's opening snapshot burst or its first vendor snapshot (`cold_start`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.book import LEVELS, BookSide, ReplayInput, message_starts, replay
from rlx_assets.engine.decimals import (
    decimal_digits_needed,
    decimal_to_scaled,
    scaled_columns_to_decimal,
    scaled_to_decimal,
)
from rlx_assets.engine.quality import filled_after, per_hour, sequence_id_gaps
from rlx_assets.engine.raw import DIGITS_KEYS
from rlx_assets.schema import book_level_columns

FULL_REPLAY = "full_replay"
SNAPSHOT_ANCHORED = "snapshot_anchored"
ORIGIN_TIME_SORT = "origin_time_sort"

SEED_PREVIOUS_STATE = "previous_book_state"
SEED_SNAPSHOT_BURST = "snapshot_burst"
SEED_VENDOR_SNAPSHOT = "vendor_snapshot"
SEED_EMPTY = "empty_book"

STATE_SCHEMA = pa.schema(
    [
        ("side", pa.string()),
        ("price", pa.decimal128(38, 18)),
        ("size", pa.decimal128(38, 18)),
        ("last_sequence_number", pa.int64()),
    ]
)


@dataclass
class Reconstruction:
    book: pa.Table
    state: pa.Table
    strategy: str = FULL_REPLAY
    seed: str = SEED_EMPTY
    messages: int = 0
    messages_before_seed: int = 0
    stats: dict[str, float | int | bool | str] = field(default_factory=dict)

    @property
    def cold_start(self) -> bool:
        return self.seed != SEED_PREVIOUS_STATE


def _level_names(side: str, kind: str) -> list[str]:
    return [f"{side}_{level}_{kind}" for level in range(LEVELS)]


def _matrix(table: pa.Table, names: list[str], digits: int) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, LEVELS), dtype=np.int64)
    return np.stack([decimal_to_scaled(table[name], digits) for name in names], axis=1)


def recorded_digits(metadata: Mapping[bytes, bytes] | None) -> tuple[int, int] | None:
    """(price, size) digits a raw table recorded in its metadata (a Parquet file's key-value
    metadata, or a table's schema metadata), if it did."""
    metadata = metadata or {}
    if DIGITS_KEYS["price"] in metadata and DIGITS_KEYS["size"] in metadata:
        return int(metadata[DIGITS_KEYS["price"]]), int(metadata[DIGITS_KEYS["size"]])
    return None


def _table_digits(table: pa.Table, kind: str, names: list[str]) -> int:
    """Fractional digits that hold the table's prices or sizes: as the raw asset recorded them,
    else found by trial casts (tables built elsewhere)."""
    recorded = (table.schema.metadata or {}).get(DIGITS_KEYS[kind])
    if recorded is not None:
        return int(recorded)
    return _digits([table[name] for name in names])


def _digits(arrays: list[pa.ChunkedArray | pa.Array]) -> int:
    chunks = []
    for array in arrays:
        chunks += array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    chunks = [chunk for chunk in chunks if len(chunk)]
    return decimal_digits_needed(pa.chunked_array(chunks)) if chunks else 0


def _state_sides(state: pa.Table, price_digits: int, size_digits: int) -> tuple[BookSide, BookSide]:
    sides = []
    for name in ("BID", "ASK"):
        part = state.filter(pc.equal(state["side"], name))
        prices = decimal_to_scaled(part["price"], price_digits)
        # Bids ascend and asks descend so the best level is last (the engine's layout).
        order = np.argsort(prices, kind="stable")
        if name == "ASK":
            order = order[::-1]
        sides.append(
            BookSide(
                prices[order],
                decimal_to_scaled(part["size"], size_digits)[order],
                part["last_sequence_number"].to_numpy()[order],
            )
        )
    return sides[0], sides[1]


def opening_burst(starts: np.ndarray, side_is_bid: np.ndarray) -> bool:
    """Does the first message carry a whole book (both sides, at least 20 levels each)?"""
    if starts.size < 2:
        return False
    first = side_is_bid[starts[0] : starts[1]]
    return int(first.sum()) >= LEVELS and int((~first).sum()) >= LEVELS


def choose_strategy(delta_rows: int, snapshot_rows: int) -> str:
    """What the data offers: deltas to replay, else vendor snapshots as the clock, else time."""
    if delta_rows:
        return FULL_REPLAY
    if snapshot_rows:
        return SNAPSHOT_ANCHORED
    return ORIGIN_TIME_SORT


def reconstruct_day(
    deltas: pa.Table,
    snapshots: pa.Table,
    previous_state: pa.Table | None,
    day: dt.date | None = None,
) -> Reconstruction:
    """One day's book by the strategy its data allows (raw assets, sorted by sequence_number)."""
    strategy = choose_strategy(deltas.num_rows, snapshots.num_rows)
    if strategy != FULL_REPLAY:
        return _without_deltas(strategy, snapshots, day)
    return _full_replay(deltas, snapshots, previous_state, day)


def _without_deltas(strategy: str, snapshots: pa.Table, day: dt.date | None) -> Reconstruction:
    """`snapshot_anchored`: the vendor snapshots are the book (crossing levels removed, counted);
    `origin_time_sort`: no book data at all, so no book rows and an empty end state (the next day
    starts cold rather than from a book nobody saw)."""
    price_digits = _table_digits(snapshots, "price", _price_names())
    size_digits = _table_digits(snapshots, "size", _size_names())
    matrices = {
        (side, kind): _matrix(
            snapshots, _level_names(side, kind), price_digits if kind == "price" else size_digits
        )
        for side in ("bid", "ask")
        for kind in ("price", "size")
    }
    rows = snapshots.num_rows
    repaired = np.zeros(rows, dtype=np.int32)
    bid_sizes, ask_sizes = matrices["bid", "size"], matrices["ask", "size"]
    bid_prices, ask_prices = matrices["bid", "price"], matrices["ask", "price"]
    for row in np.flatnonzero(
        (bid_sizes[:, 0] > 0) & (ask_sizes[:, 0] > 0) & (bid_prices[:, 0] >= ask_prices[:, 0])
    ):
        repaired[row] = _uncross_row(
            bid_prices[row], bid_sizes[row], ask_prices[row], ask_sizes[row]
        )
    levels = {"bid": (bid_prices, bid_sizes), "ask": (ask_prices, ask_sizes)}
    book = _book_table(
        snapshots["origin_time"],
        snapshots["received_time"],
        snapshots["sequence_number"].to_numpy() if rows else np.zeros(0, np.int64),
        levels,
        price_digits,
        size_digits,
        resynced=np.zeros(rows, dtype=bool),
        repaired=repaired,
        # Each row is the vendor's snapshot itself.
        vendor_match=pa.array(np.ones(rows, dtype=bool)),
        deviation=pa.array(np.zeros(rows)),
    )
    last = rows - 1
    state = (
        _state_table(
            BookSide(
                bid_prices[last][bid_sizes[last] > 0][::-1].copy(),
                bid_sizes[last][bid_sizes[last] > 0][::-1].copy(),
                np.full(int((bid_sizes[last] > 0).sum()), -1, dtype=np.int64),
            ),
            BookSide(
                ask_prices[last][ask_sizes[last] > 0][::-1].copy(),
                ask_sizes[last][ask_sizes[last] > 0][::-1].copy(),
                np.full(int((ask_sizes[last] > 0).sum()), -1, dtype=np.int64),
            ),
            price_digits,
            size_digits,
        )
        if rows
        else STATE_SCHEMA.empty_table()
    )
    result = Reconstruction(book=book, state=state, strategy=strategy, seed=strategy, messages=rows)
    result.stats = {
        "vendor_snapshots_compared": 0,
        "top20_matches": 0,
        "top20_match_share": 1.0,
        "gaps_detected": 0,
        "gaps_filled": 0,
        "sequence_id_gaps": 0,
        "gaps_detected_per_hour": [0] * 24 if day else [],
        "gaps_filled_per_hour": [0] * 24 if day else [],
        "stale_levels_repaired": int(repaired.sum()),
        "mid_deviation_max_bps": 0.0,
        "mid_deviation_p99_bps": 0.0,
        "crossed_books_published": crossed_rows(bid_prices, bid_sizes, ask_prices, ask_sizes),
        "end_depth_bids": int((bid_sizes[last] > 0).sum()) if rows else 0,
        "end_depth_asks": int((ask_sizes[last] > 0).sum()) if rows else 0,
    }
    return result


def _uncross_row(bid_prices, bid_sizes, ask_prices, ask_sizes) -> int:
    """Drop crossing best levels pairwise (a lone snapshot cannot tell which one is stale)."""
    removed = 0
    while bid_sizes[0] > 0 and ask_sizes[0] > 0 and bid_prices[0] >= ask_prices[0]:
        for prices, sizes in ((bid_prices, bid_sizes), (ask_prices, ask_sizes)):
            prices[:-1], sizes[:-1] = prices[1:].copy(), sizes[1:].copy()
            prices[-1], sizes[-1] = 0, 0
        removed += 2
    return removed


def _price_names() -> list[str]:
    return _level_names("bid", "price") + _level_names("ask", "price")


def _size_names() -> list[str]:
    return _level_names("bid", "size") + _level_names("ask", "size")


def _book_table(
    origin,
    received,
    sequence,
    levels,
    price_digits,
    size_digits,
    resynced,
    repaired,
    vendor_match,
    deviation,
) -> pa.Table:
    columns: dict[str, pa.Array] = {
        # Vendor times pass through as they are, nulls included.
        "origin_time": origin,
        "received_time": received,
        "sequence_number": pa.array(sequence, pa.int64()),
    }
    decimals = {}
    for side, (prices, sizes) in levels.items():
        present = sizes > 0
        for kind, values, digits in (("price", prices, price_digits), ("size", sizes, size_digits)):
            for level, array in enumerate(scaled_columns_to_decimal(values, digits, present)):
                decimals[f"{side}_{level}_{kind}"] = array
    for name in book_level_columns():
        columns[name] = decimals[name]
    columns["resynced"] = pa.array(resynced, pa.bool_())
    columns["repaired_levels"] = pa.array(repaired, pa.int32())
    columns["vendor_match"] = vendor_match
    columns["mid_deviation_bps"] = deviation
    return pa.table(columns)


@dataclass
class ChunkInput:
    """A chunk of whole messages as `DayReplay.replay_chunk` takes it."""

    data: ReplayInput
    origin_time: pa.ChunkedArray  # of each message's first row
    received_time: pa.ChunkedArray
    message_time: np.ndarray  # origin_time, else received_time, else 0: for gaps per hour


_ROW_ARRAYS = (
    "sequence",
    "resynced",
    "repaired",
    "vendor_match",
    "checked",
    "deviation",
    "message_time",
)


def message_figures(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-message figures from published rows' arrays (`PublishedRows` fields, or the arrays
    of `PublishedRows.to_arrays` as a checkpoint holds them)."""
    checked = rows["checked"]
    return {
        "checked": checked,
        "match": rows["vendor_match"] & checked,
        "resynced": rows["resynced"],
        "repaired": rows["repaired"],
        "deviation": rows["deviation"],
        "sequence": rows["sequence"],
        "time": rows["message_time"],
    }


@dataclass
class PublishedRows:
    """The book rows a chunk published, as the engine's arrays."""

    origin_time: pa.ChunkedArray
    received_time: pa.ChunkedArray
    sequence: np.ndarray
    levels: dict[str, tuple[np.ndarray, np.ndarray]]  # side -> (prices, sizes) [rows, 20]
    price_digits: int
    size_digits: int
    resynced: np.ndarray
    repaired: np.ndarray
    vendor_match: np.ndarray
    checked: np.ndarray
    deviation: np.ndarray
    message_time: np.ndarray  # for gaps per hour

    def figures(self) -> dict[str, np.ndarray]:
        """The per-message figures `DayReplay.finish` turns into the day's stats."""
        return message_figures(vars(self))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for a checkpoint); `from_arrays` gives the same rows back."""
        arrays = {name: getattr(self, name) for name in _ROW_ARRAYS}
        for name in ("origin_time", "received_time"):
            times = getattr(self, name)
            arrays[name] = pc.fill_null(times, 0).to_numpy()
            arrays[f"{name}_valid"] = times.is_valid().to_numpy()
        for side, (prices, sizes) in self.levels.items():
            arrays[f"{side}_prices"], arrays[f"{side}_sizes"] = prices, sizes
        arrays["digits"] = np.array([self.price_digits, self.size_digits])
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PublishedRows:
        times = {
            name: pa.chunked_array(
                [pa.array(arrays[name], pa.int64(), mask=~arrays[f"{name}_valid"])]
            )
            for name in ("origin_time", "received_time")
        }
        price_digits, size_digits = (int(value) for value in arrays["digits"])
        return cls(
            **times,
            levels={
                side: (arrays[f"{side}_prices"], arrays[f"{side}_sizes"]) for side in ("bid", "ask")
            },
            price_digits=price_digits,
            size_digits=size_digits,
            **{name: arrays[name] for name in _ROW_ARRAYS},
        )

    def table(self) -> pa.Table:
        """The rows in `reconstructed_book`'s layout (exact decimals, vendor-style columns)."""
        return _book_table(
            self.origin_time,
            self.received_time,
            self.sequence,
            self.levels,
            self.price_digits,
            self.size_digits,
            resynced=self.resynced,
            repaired=self.repaired,
            vendor_match=pa.array(self.vendor_match, mask=~self.checked),
            deviation=pa.array(self.deviation, mask=np.isnan(self.deviation)),
        )


def vendor_seed_exists(delta_sequences: np.ndarray, snapshot_sequences: np.ndarray) -> bool:
    """Does any vendor snapshot carry the sequence number of a delta message?"""
    return bool(np.isin(snapshot_sequences, delta_sequences).any())


class DayReplay:
    """One day's `full_replay`, fed in chunks of whole messages (or all at once).

    The book, the cold-start seed and the per-message figures carry over from chunk to chunk, so
    any split of a day into chunks publishes the same rows as one feed of the whole day.
    """

    def __init__(
        self,
        previous_state: pa.Table | None,
        price_digits: int,
        size_digits: int,
        day: dt.date | None,
        seed_from_vendor: bool,
    ) -> None:
        state = previous_state if previous_state is not None and previous_state.num_rows else None
        self.price_digits, self.size_digits, self.day = price_digits, size_digits, day
        self.seed_from_vendor = seed_from_vendor
        if state is not None:
            self.bids, self.asks = _state_sides(state, price_digits, size_digits)
            self.seed: str | None = SEED_PREVIOUS_STATE
        else:
            self.bids, self.asks = BookSide.empty(), BookSide.empty()
            self.seed = None
        self.messages = 0
        self.messages_before_seed = 0
        self.chunks = 0
        self.crossed = 0
        self._figures: dict[str, list[np.ndarray]] = {
            name: []
            for name in (
                "checked",
                "match",
                "resynced",
                "repaired",
                "deviation",
                "sequence",
                "time",
            )
        }

    def feed(self, deltas: pa.Table, snapshots: pa.Table) -> pa.Table:
        """Replay whole messages (raw_book_deltas rows, sorted); `snapshots` are the vendor rows
        of these messages (others are ignored). Returns the book rows published."""
        return self.replay_chunk(self.prepare(deltas, snapshots)).table()

    def prepare(self, deltas: pa.Table, snapshots: pa.Table) -> ChunkInput:
        """The engine's input for a chunk: independent of the replay's state, so a reader
        thread can prepare the next chunk while this one replays."""
        sequence = deltas["sequence_number"].to_numpy()
        starts = message_starts(sequence)
        message_sequence = sequence[starts[:-1]]
        snapshots, snapshot_of_message = _align_snapshots(snapshots, message_sequence)
        prices, sizes = self.price_digits, self.size_digits
        data = ReplayInput(
            message_starts=starts,
            sequence_numbers=message_sequence,
            side_is_bid=deltas["side_is_bid"].to_numpy(zero_copy_only=False),
            prices=decimal_to_scaled(deltas["price"], prices),
            sizes=decimal_to_scaled(deltas["size"], sizes),
            snapshot_of_message=snapshot_of_message,
            snapshot_bid_prices=_matrix(snapshots, _level_names("bid", "price"), prices),
            snapshot_bid_sizes=_matrix(snapshots, _level_names("bid", "size"), sizes),
            snapshot_ask_prices=_matrix(snapshots, _level_names("ask", "price"), prices),
            snapshot_ask_sizes=_matrix(snapshots, _level_names("ask", "size"), sizes),
        )
        first_rows = starts[:-1]
        # Hours of gaps: by origin_time, received_time where the vendor left it empty.
        times = pc.coalesce(deltas["origin_time"], deltas["received_time"], 0).to_numpy()
        return ChunkInput(
            data=data,
            origin_time=deltas["origin_time"].take(first_rows),
            received_time=deltas["received_time"].take(first_rows),
            message_time=times[first_rows],
        )

    def replay_chunk(self, chunk: ChunkInput) -> PublishedRows:
        """Replay a prepared chunk from the current book; returns the rows published, as arrays
        (their table can be built on another thread)."""
        data = chunk.data
        starts, message_sequence = data.message_starts, data.sequence_numbers
        first_published = 0
        if self.seed is None:
            matched = data.snapshot_of_message >= 0
            if self.chunks == 0 and opening_burst(starts, data.side_is_bid):
                self.seed = SEED_SNAPSHOT_BURST
            elif not self.seed_from_vendor:
                self.seed = SEED_EMPTY
            elif matched.any():
                first_published = int(np.argmax(matched))
                data.force_resync_message = first_published
                self.seed = SEED_VENDOR_SNAPSHOT
            else:
                first_published = message_sequence.size  # still waiting for the seed
            self.messages_before_seed += first_published
        self.chunks += 1
        self.messages += int(message_sequence.size)

        out = replay(data, self.bids, self.asks)
        self.bids, self.asks = out.bids, out.asks

        published = slice(first_published, None)
        levels = {
            "bid": (out.bid_prices[published], out.bid_sizes[published]),
            "ask": (out.ask_prices[published], out.ask_sizes[published]),
        }
        self.crossed += crossed_rows(*levels["bid"], *levels["ask"])
        rows = PublishedRows(
            origin_time=chunk.origin_time.slice(first_published),
            received_time=chunk.received_time.slice(first_published),
            sequence=message_sequence[published],
            levels=levels,
            price_digits=self.price_digits,
            size_digits=self.size_digits,
            resynced=out.resynced[published],
            repaired=out.repaired_levels[published],
            vendor_match=out.vendor_match[published],
            checked=out.vendor_checked[published],
            deviation=out.mid_deviation_bps[published],
            message_time=chunk.message_time[published],
        )
        for name, values in rows.figures().items():
            self._figures[name].append(values)
        return rows

    def checkpoint(self) -> dict[str, np.ndarray]:
        """What `replay_chunk` carries to the next chunk besides the per-message figures (those
        of each chunk are its rows' `figures`), as plain arrays for `restore`."""
        arrays = {
            f"{side}_{part}": getattr(book, part)
            for side, book in (("bids", self.bids), ("asks", self.asks))
            for part in ("prices", "sizes", "stamps")
        }
        arrays["counters"] = np.array(
            [self.messages, self.messages_before_seed, self.chunks, self.crossed], dtype=np.int64
        )
        arrays["seed"] = np.array([self.seed or ""])
        return arrays

    def restore(self, arrays: dict[str, np.ndarray], figures: list[dict[str, np.ndarray]]) -> None:
        """Continue from a `checkpoint` of the same day and settings, with the figures of every
        chunk it covers, in order."""
        self.bids, self.asks = (
            BookSide(*(arrays[f"{side}_{part}"] for part in ("prices", "sizes", "stamps")))
            for side in ("bids", "asks")
        )
        counters = [int(value) for value in arrays["counters"]]
        self.messages, self.messages_before_seed, self.chunks, self.crossed = counters
        self.seed = str(arrays["seed"][0]) or None
        self._figures = {name: [chunk[name] for chunk in figures] for name in self._figures}

    def finish(self) -> Reconstruction:
        """The end-of-day state and the day's figures (the book rows were returned by `feed`)."""
        result = Reconstruction(
            book=pa.table({}),
            state=_state_table(self.bids, self.asks, self.price_digits, self.size_digits),
            seed=self.seed or SEED_EMPTY,
            messages=self.messages,
            messages_before_seed=self.messages_before_seed,
        )
        figures = {
            name: np.concatenate(parts) if parts else np.zeros(0)
            for name, parts in self._figures.items()
        }
        result.stats = _replay_stats(figures, self.crossed, self.bids, self.asks, self.day)
        result.stats["chunks"] = self.chunks
        return result


def _align_snapshots(snapshots: pa.Table, message_sequence: np.ndarray):
    """Vendor snapshots by sequence number (the last wins if repeated) and, per message, the row
    of its snapshot or -1."""
    snapshot_sequence = snapshots["sequence_number"].to_numpy()
    keep_last = np.ones(snapshot_sequence.size, dtype=bool)
    keep_last[:-1] = snapshot_sequence[1:] != snapshot_sequence[:-1]
    snapshots = snapshots.filter(pa.array(keep_last))
    snapshot_sequence = snapshot_sequence[keep_last]
    position = np.searchsorted(snapshot_sequence, message_sequence)
    clipped = np.minimum(position, max(snapshot_sequence.size - 1, 0))
    matched = (position < snapshot_sequence.size) & (
        snapshot_sequence[clipped] == message_sequence if snapshot_sequence.size else False
    )
    return snapshots, np.where(matched, position, -1).astype(np.int64)


def day_digits(
    deltas: pa.Table, snapshots: pa.Table, previous_state: pa.Table | None
) -> tuple[int, int]:
    """Price and size digits that hold every value of the day (and of yesterday's state)."""
    state = previous_state if previous_state is not None and previous_state.num_rows else None
    return (
        max(
            _table_digits(deltas, "price", ["price"]),
            _table_digits(snapshots, "price", _price_names()),
            _digits([state["price"]]) if state is not None else 0,
        ),
        max(
            _table_digits(deltas, "size", ["size"]),
            _table_digits(snapshots, "size", _size_names()),
            _digits([state["size"]]) if state is not None else 0,
        ),
    )


def _full_replay(
    deltas: pa.Table, snapshots: pa.Table, previous_state: pa.Table | None, day: dt.date | None
) -> Reconstruction:
    price_digits, size_digits = day_digits(deltas, snapshots, previous_state)
    seed_from_vendor = vendor_seed_exists(
        deltas["sequence_number"].to_numpy(), snapshots["sequence_number"].to_numpy()
    )
    day_replay = DayReplay(previous_state, price_digits, size_digits, day, seed_from_vendor)
    book = day_replay.feed(deltas, snapshots)
    result = day_replay.finish()
    result.book = book
    return result


def _state_table(bids: BookSide, asks: BookSide, price_digits: int, size_digits: int) -> pa.Table:
    # Best first on each side, bids then asks: a stable, readable order.
    bid_order = np.arange(bids.prices.size)[::-1]
    ask_order = np.arange(asks.prices.size)[::-1]
    prices = np.concatenate([bids.prices[bid_order], asks.prices[ask_order]])
    sizes = np.concatenate([bids.sizes[bid_order], asks.sizes[ask_order]])
    stamps = np.concatenate([bids.stamps[bid_order], asks.stamps[ask_order]])
    sides = ["BID"] * bids.prices.size + ["ASK"] * asks.prices.size
    return pa.table(
        [
            pa.array(sides, pa.string()),
            scaled_to_decimal(prices, price_digits),
            scaled_to_decimal(sizes, size_digits),
            pa.array(stamps, pa.int64()),
        ],
        schema=STATE_SCHEMA,
    )


def crossed_rows(bid_prices: np.ndarray, bid_sizes: np.ndarray, ask_prices, ask_sizes) -> int:
    """Published rows whose best bid is at or above the best ask."""
    both = (bid_sizes[:, 0] > 0) & (ask_sizes[:, 0] > 0)
    return int((both & (bid_prices[:, 0] >= ask_prices[:, 0])).sum())


def _replay_stats(
    figures: dict[str, np.ndarray], crossed: int, bids: BookSide, asks: BookSide, day
) -> dict[str, object]:
    checked = figures["checked"].astype(bool)
    matches = figures["match"].astype(bool)
    mismatched = checked & ~matches
    resynced = figures["resynced"].astype(bool)
    times = figures["time"].astype(np.int64)
    id_gaps = sequence_id_gaps(figures["sequence"].astype(np.int64))
    id_gaps_filled = filled_after(id_gaps, np.flatnonzero(checked))
    deviation = figures["deviation"].astype(np.float64)
    deviation = deviation[~np.isnan(deviation)]
    return {
        "vendor_snapshots_compared": int(checked.sum()),
        "top20_matches": int(matches.sum()),
        "top20_match_share": float(matches.sum() / checked.sum()) if checked.any() else 1.0,
        "gaps_detected": int(mismatched.sum() + id_gaps.size),
        "gaps_filled": int(resynced.sum() + id_gaps_filled.sum()),
        "sequence_id_gaps": int(id_gaps.size),
        "gaps_detected_per_hour": per_hour(np.concatenate([times[mismatched], times[id_gaps]]), day)
        if day
        else [],
        "gaps_filled_per_hour": per_hour(
            np.concatenate([times[resynced], times[id_gaps[id_gaps_filled]]]), day
        )
        if day
        else [],
        "stale_levels_repaired": int(figures["repaired"].sum()),
        "mid_deviation_max_bps": float(deviation.max()) if deviation.size else 0.0,
        "mid_deviation_p99_bps": float(np.quantile(deviation, 0.99)) if deviation.size else 0.0,
        "crossed_books_published": crossed,
        "end_depth_bids": int(bids.prices.size),
        "end_depth_asks": int(asks.prices.size),
    }
