"""Which level each delta message changed (or `new_price`, `deeper`, `no_prior_book`), found against
the book before it: the update-frequency table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.book_rows import PublishedBook
from rlx_assets.engine.decimals import to_float
from rlx_assets.schema import BOOK_LEVELS

SIDES = ("BID", "ASK")
# Buckets of the delta-row table beyond levels 0..19.
NEW_PRICE = "new_price"  # a price not in the top 20 before the message, within their range
DEEPER = "deeper"  # worse than level 19 of a full top 20
NO_PRIOR_BOOK = "no_prior_book"  # the first published message, or one before the seed
LEVEL = "level"
_NEW_CODE, _DEEPER_CODE, _NO_PRIOR_CODE = BOOK_LEVELS, BOOK_LEVELS + 1, BOOK_LEVELS + 2
_CODES = BOOK_LEVELS + 3
UPDATE_FREQUENCY_SCHEMA = pa.schema(
    [
        ("side", pa.string()),
        ("level", pa.int32()),
        ("bucket", pa.string()),
        ("changes", pa.int64()),
        ("change_share", pa.float64()),
        ("delta_rows", pa.int64()),
        ("delta_row_share", pa.float64()),
    ]
)


def changed_levels(state: PublishedBook) -> dict[str, np.ndarray]:
    """Per side and level: consecutive row pairs where the level's price or size differs."""
    changes = {}
    for side, prices, sizes in (
        ("BID", state.bid_prices, state.bid_sizes),
        ("ASK", state.ask_prices, state.ask_sizes),
    ):
        if state.rows < 2:
            changes[side] = np.zeros(BOOK_LEVELS, dtype=np.int64)
            continue
        before, after = prices[:-1], prices[1:]
        same_price = (before == after) | (np.isnan(before) & np.isnan(after))
        changed = ~same_price | (sizes[:-1] != sizes[1:])
        changes[side] = changed.sum(axis=0).astype(np.int64)
    return changes


@numba.njit(cache=True, nogil=True)
def _count_levels(row_prior, bid, price, bid_prices, ask_prices, counts):
    """counts[side, code] += 1 per delta row: the level of its book row (the one before its
    message) at its price, or `new_price` / `deeper` / `no_prior_book`. A lower-bound binary
    search over the 20 sorted levels: how many are better than the price; absent levels (NaN)
    compare as worst on either side."""
    last = BOOK_LEVELS - 1
    for i in range(price.size):
        side = 0 if bid[i] else 1
        row = row_prior[i]
        if row < 0:
            counts[side, _NO_PRIOR_CODE] += 1
            continue
        levels = bid_prices[row] if side == 0 else ask_prices[row]
        value = price[i]
        count = 0
        for step in (16, 8, 4, 2, 1):
            # Probe level count + step - 1; past level 19 the probe stays at 19, and a level 19
            # better than the price then moves the count past 20: that is "deeper".
            level = levels[min(count + step - 1, last)]
            if (level > value) if side == 0 else (level < value):
                count += step
        if count >= BOOK_LEVELS:
            counts[side, _DEEPER_CODE] += 1
        elif levels[count] == value:
            counts[side, count] += 1
        else:
            counts[side, _NEW_CODE] += 1


class DeltaLevels:
    """Counts (2 sides x _CODES): delta rows by the level of the book before their message.

    The deltas (sorted by sequence number) are read alongside the book (one row per message,
    in sequence order): a delta row is counted once the book batch holding its message's row
    is in hand, against the row before that one (the batch's carried row for its first)."""

    def __init__(self, deltas: Iterable[pa.RecordBatch]) -> None:
        self.counts = np.zeros((2, _CODES), dtype=np.int64)
        self._batches: Iterator[pa.RecordBatch] | None = iter(deltas)
        self._held: pa.RecordBatch | None = None  # delta rows past the book read so far
        self._last_sequence = np.iinfo(np.int64).min  # of the rows counted so far

    def _pending(self) -> Iterator[pa.RecordBatch]:
        if self._held is not None:
            held, self._held = self._held, None
            yield held
        while self._batches is not None:
            batch = next(self._batches, None)
            if batch is None:  # exhausted: not read again (a Parquet reader may not allow it)
                self._batches = None
                return
            yield batch

    def count_through(self, book: PublishedBook | None) -> None:
        """Count the delta rows up to the last message of `book` (every one left, if None)."""
        bound = np.iinfo(np.int64).max if book is None or book.rows == 0 else book.sequence[-1]
        for batch in self._pending():
            sequence = pc.fill_null(batch.column("sequence_number"), -1).to_numpy()
            if sequence.size == 0:
                continue
            if sequence[0] < self._last_sequence or np.any(sequence[1:] < sequence[:-1]):
                raise ValueError("raw_book_deltas must be sorted by sequence_number")
            take = int(np.searchsorted(sequence, bound, side="right"))
            if take:
                self._last_sequence = int(sequence[take - 1])
            if take < sequence.size:
                self._held = batch.slice(take)
            if take:
                self._count(batch.slice(0, take), sequence[:take], book)
            if take < sequence.size:
                return

    def _count(
        self, batch: pa.RecordBatch, sequence: np.ndarray, book: PublishedBook | None
    ) -> None:
        starts = np.concatenate([[0], np.flatnonzero(sequence[1:] != sequence[:-1]) + 1])
        prior = prior_rows(book, sequence[starts])
        row_prior = np.repeat(prior, np.diff(np.append(starts, sequence.size)))
        bid = pc.fill_null(batch.column("side_is_bid"), False).to_numpy(zero_copy_only=False)
        price = to_float(batch.column("price"))
        no_book = np.zeros((0, BOOK_LEVELS), dtype=np.float64)
        _count_levels(
            row_prior,
            bid,
            price,
            no_book if book is None else book.bid_prices,
            no_book if book is None else book.ask_prices,
            self.counts,
        )


def prior_rows(book: PublishedBook | None, message_sequence: np.ndarray) -> np.ndarray:
    """Per message: the row (of the batch, carried first) before the first row of the same
    sequence number among the batch's own rows (the book it was applied to), -1 if none (no
    such row, or the day's first row)."""
    if book is None or book.rows == book.carried:
        return np.full(message_sequence.size, -1, dtype=np.int64)
    own = book.sequence[book.carried :]
    position = np.minimum(np.searchsorted(own, message_sequence), own.size - 1)
    found = own[position] == message_sequence
    row = position + book.carried
    return np.where(found & (row > 0), row - 1, -1)


def frequency_table(changes: dict, delta_counts: np.ndarray, book_rows: int) -> pa.Table:
    pairs = book_rows - 1
    total_deltas = int(delta_counts.sum())
    sides, levels, buckets, change_counts, delta_rows = [], [], [], [], []
    extra = ((NEW_PRICE, _NEW_CODE), (DEEPER, _DEEPER_CODE), (NO_PRIOR_BOOK, _NO_PRIOR_CODE))
    for index, side in enumerate(SIDES):
        for level in range(BOOK_LEVELS):
            sides.append(side)
            levels.append(level)
            buckets.append(LEVEL)
            change_counts.append(int(changes[side][level]))
            delta_rows.append(int(delta_counts[index, level]))
        for bucket, code in extra:
            sides.append(side)
            levels.append(None)
            buckets.append(bucket)
            change_counts.append(None)
            delta_rows.append(int(delta_counts[index, code]))
    change_share = [
        None if count is None or pairs < 1 else count / pairs for count in change_counts
    ]
    delta_share = [count / total_deltas if total_deltas else None for count in delta_rows]
    return pa.Table.from_arrays(
        [
            pa.array(sides, pa.string()),
            pa.array(levels, pa.int32()),
            pa.array(buckets, pa.string()),
            pa.array(change_counts, pa.int64()),
            pa.array(change_share, pa.float64()),
            pa.array(delta_rows, pa.int64()),
            pa.array(delta_share, pa.float64()),
        ],
        schema=UPDATE_FREQUENCY_SCHEMA,
    )
